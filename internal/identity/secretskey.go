package identity

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/steward-iot/steward/internal/secretbox"
)

// SecretsKeyFile, inside PKIConfig.Dir, holds the key that seals the
// secrets the platform keeps in its database (webhook signing secrets).
// It lives with the CA keys because it goes where they go: every node of
// a cluster needs the same one, and a restored backup needs the one it was
// made with.
const SecretsKeyFile = "secrets.key"

const (
	secretsKeyType       = "STEWARD SECRETS KEY"
	sealedSecretsKeyType = "STEWARD ENCRYPTED SECRETS KEY"
)

// LoadOrCreateSecretsKey reads the secrets key of cfg.Dir, making one on
// first start. Like the CA keys it is written with mode 0600 and, when
// cfg.Passphrase is set, encrypted with it (a plain file is encrypted on
// the first start with a passphrase).
func LoadOrCreateSecretsKey(cfg PKIConfig) ([]byte, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: creating %s: %w", cfg.Dir, err)
	}
	path := filepath.Join(cfg.Dir, SecretsKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := checkPassphrase(cfg); err != nil {
			return nil, err
		}
		key := secretbox.NewKey()
		b, err := sealPEM(key, secretsKeyType, sealedSecretsKeyType, cfg.Passphrase)
		if err == nil {
			err = createFileAtomic(path, b, 0o600)
		}
		if errors.Is(err, errFileExists) {
			return LoadOrCreateSecretsKey(cfg) // another process made it first: use that one
		}
		if err != nil {
			return nil, fmt.Errorf("pki: writing %s: %w", path, err)
		}
		if cfg.Log != nil {
			cfg.Log.Info("created the secrets key", "file", path, "encrypted", cfg.Passphrase != "")
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	key, encrypted, err := decodeSecretsKey(data, cfg.Passphrase)
	if err != nil {
		return nil, keyFileError(path, err)
	}
	if cfg.Passphrase != "" && !encrypted {
		if err := checkPassphrase(cfg); err != nil {
			return nil, err
		}
		if err := writeSecretsKey(path, key, cfg.Passphrase); err != nil {
			return nil, fmt.Errorf("pki: encrypting %s: %w", path, err)
		}
		if cfg.Log != nil {
			cfg.Log.Info("encrypted the secrets key at rest with the configured passphrase", "file", path)
		}
	}
	return key, nil
}

func writeSecretsKey(path string, key []byte, passphrase string) error {
	b, err := sealPEM(key, secretsKeyType, sealedSecretsKeyType, passphrase)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o600)
}

func decodeSecretsKey(data []byte, passphrase string) (key []byte, encrypted bool, err error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, false, errors.New("no PEM block found")
	}
	switch block.Type {
	case secretsKeyType:
		key = block.Bytes
	case sealedSecretsKeyType:
		encrypted = true
		if key, err = openPEM(block, passphrase); err != nil {
			return nil, true, err
		}
	default:
		return nil, false, fmt.Errorf("PEM block %q is not a secrets key", block.Type)
	}
	if len(key) != secretbox.KeySize {
		return nil, encrypted, fmt.Errorf("secrets key is %d bytes, want %d", len(key), secretbox.KeySize)
	}
	return key, encrypted, nil
}
