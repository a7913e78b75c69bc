package identity

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Private keys are written as PEM. Without a passphrase the block is a
// plain PKCS#8 "PRIVATE KEY". With one, it is a "STEWARD ENCRYPTED PRIVATE
// KEY" block: the PKCS#8 DER sealed with AES-256-GCM under a key derived
// from the passphrase with Argon2id (RFC 9106); the parameters, salt and
// nonce travel in the PEM headers, and the block type and KDF parameters
// are authenticated as additional data. Either way the file is mode 0600.
const (
	encryptedKeyType = "STEWARD ENCRYPTED PRIVATE KEY"
	kdfName          = "argon2id"
	cipherName       = "AES-256-GCM"
)

// Argon2id parameters for new keys: 3 passes over 64 MiB with 4 lanes (the
// RFC 9106 second recommended option). Keys are decrypted once per start.
// Each file records its own parameters (tests use cheaper ones).
var (
	argonTime    uint32 = 3
	argonMemory  uint32 = 64 * 1024
	argonThreads uint8  = 4
)

// ErrPassphrase is returned when an encrypted key cannot be opened: no
// passphrase, or the wrong one.
var ErrPassphrase = errors.New("pki: wrong or missing passphrase for an encrypted private key")

// keyFileError names the key file an error came from, and says what to
// set when the file is encrypted and the passphrase missing or wrong.
func keyFileError(path string, err error) error {
	if errors.Is(err, ErrPassphrase) {
		return fmt.Errorf("pki: %s is encrypted: %w (set pki.passphrase or STEWARD_PKI_PASSPHRASE)", path, err)
	}
	return fmt.Errorf("pki: %s: %w", path, err)
}

// encodeKey returns the PEM form of key, encrypted when passphrase is set.
func encodeKey(key crypto.Signer, passphrase string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return sealPEM(der, "PRIVATE KEY", encryptedKeyType, passphrase)
}

// sealPEM returns payload as a PEM block of plainType without a
// passphrase, or sealed under it as a block of sealedType (the scheme
// described above; sealedType is part of the additional data).
func sealPEM(payload []byte, plainType, sealedType, passphrase string) ([]byte, error) {
	if passphrase == "" {
		return pem.EncodeToMemory(&pem.Block{Type: plainType, Bytes: payload}), nil
	}
	salt := make([]byte, 16)
	nonce := make([]byte, 12)
	rand.Read(salt)
	rand.Read(nonce)
	params := fmt.Sprintf("t=%d,m=%d,p=%d", argonTime, argonMemory, argonThreads)
	gcm, err := keyCipher(passphrase, salt, argonTime, argonMemory, argonThreads)
	if err != nil {
		return nil, err
	}
	sealed := gcm.Seal(nil, nonce, payload, aad(sealedType, params))
	return pem.EncodeToMemory(&pem.Block{Type: sealedType, Headers: map[string]string{
		"KDF": kdfName, "KDF-Params": params, "Salt": base64.StdEncoding.EncodeToString(salt),
		"Cipher": cipherName, "Nonce": base64.StdEncoding.EncodeToString(nonce),
	}, Bytes: sealed}), nil
}

// openPEM opens a block sealPEM sealed.
func openPEM(block *pem.Block, passphrase string) ([]byte, error) {
	if passphrase == "" {
		return nil, ErrPassphrase
	}
	h := block.Headers
	if h["KDF"] != kdfName || h["Cipher"] != cipherName {
		return nil, fmt.Errorf("unsupported key encryption %q/%q", h["KDF"], h["Cipher"])
	}
	t, m, p, err := parseArgonParams(h["KDF-Params"])
	if err != nil {
		return nil, err
	}
	salt, err1 := base64.StdEncoding.DecodeString(h["Salt"])
	nonce, err2 := base64.StdEncoding.DecodeString(h["Nonce"])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(nonce) != 12 {
		return nil, errors.New("encrypted key: bad salt or nonce header")
	}
	gcm, err := keyCipher(passphrase, salt, t, m, p)
	if err != nil {
		return nil, err
	}
	payload, err := gcm.Open(nil, nonce, block.Bytes, aad(block.Type, h["KDF-Params"]))
	if err != nil {
		return nil, ErrPassphrase
	}
	return payload, nil
}

func aad(blockType, params string) []byte { return []byte(blockType + "\n" + kdfName + "\n" + params) }

func keyCipher(passphrase string, salt []byte, t, m uint32, p uint8) (cipher.AEAD, error) {
	k := argon2.IDKey([]byte(passphrase), salt, t, m, p, 32)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// decodeKey parses a PEM private key (PKCS#8, SEC 1 EC or PKCS#1 RSA, or
// Steward's encrypted form). encrypted reports whether it was encrypted.
func decodeKey(data []byte, passphrase string) (key crypto.Signer, encrypted bool, err error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, false, errors.New("no PEM block found")
	}
	der := block.Bytes
	switch block.Type {
	case encryptedKeyType:
		if der, err = openPEM(block, passphrase); err != nil {
			return nil, true, err
		}
		key, err = parsePKCS8Signer(der)
		return key, true, err
	case "PRIVATE KEY":
		key, err = parsePKCS8Signer(der)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(der)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	case "ENCRYPTED PRIVATE KEY":
		return nil, true, errors.New("PKCS#8 encrypted keys are not supported: decrypt it (openssl pkey -in KEY -out PLAIN) and let pki.passphrase protect it at rest")
	default:
		return nil, false, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	return key, false, err
}

func parseArgonParams(s string) (t, m uint32, p uint8, err error) {
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if !ok || perr != nil {
			return 0, 0, 0, fmt.Errorf("encrypted key: bad KDF-Params %q", s)
		}
		switch k {
		case "t":
			t = uint32(n)
		case "m":
			m = uint32(n)
		case "p":
			if n > 255 {
				return 0, 0, 0, fmt.Errorf("encrypted key: bad KDF-Params %q", s)
			}
			p = uint8(n)
		}
	}
	// Refuse parameters that would make decryption absurdly expensive (a
	// tampered file must not exhaust memory) or trivially weak.
	if t < 1 || t > 16 || m < 8*1024 || m > 1024*1024 || p < 1 {
		return 0, 0, 0, fmt.Errorf("encrypted key: KDF-Params %q out of range", s)
	}
	return t, m, p, nil
}

func parsePKCS8Signer(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

// writeKeyFile writes a key with mode 0600 (also when the file existed).
func writeKeyFile(path string, key crypto.Signer, passphrase string) error {
	b, err := encodeKey(key, passphrase)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o600)
}

// writeFileAtomic writes through a temporary file and a rename, so a crash
// never leaves a half-written key or certificate behind.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return placeFile(path, data, mode, os.Rename)
}

// errFileExists: createFileAtomic found the file made meanwhile (by
// another process sharing the folder).
var errFileExists = errors.New("made meanwhile by another process")

// createFileAtomic is writeFileAtomic for a file that must not exist yet:
// of two processes creating it at once, one wins and the other gets
// errFileExists and reads the winner's.
func createFileAtomic(path string, data []byte, mode os.FileMode) error {
	return placeFile(path, data, mode, func(tmp, path string) error {
		err := os.Link(tmp, path)
		os.Remove(tmp)
		if errors.Is(err, os.ErrExist) {
			return errFileExists
		}
		return err
	})
}

// placeFile writes data to a new temporary file beside path (created
// exclusively, mode 0600 until the end), flushes it, and puts it in place
// with put; the folder is flushed too, where the file system allows it, so
// the new name survives a power loss.
func placeFile(path string, data []byte, mode os.FileMode, put func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := put(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	// Best effort: some file systems refuse to flush a folder, and the
	// file is in place either way.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// blockType is the type of the first PEM block of b ("" when there is none).
func blockType(b []byte) string {
	if block, _ := pem.Decode(b); block != nil {
		return block.Type
	}
	return ""
}

// checkPassphrase refuses a passphrase that does not open the CA keys
// already encrypted in cfg.Dir. It is called before another key file is
// written with the passphrase: a mistyped one must not seal a file that
// the right one then cannot open.
func checkPassphrase(cfg PKIConfig) error {
	files, err := caKeyFiles(cfg.Dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		if blockType(f.data) != encryptedKeyType {
			continue
		}
		if _, _, err := decodeKey(f.data, cfg.Passphrase); err != nil {
			return keyFileError(f.path, err)
		}
		return nil // the keys are encrypted together, with one passphrase
	}
	return nil
}

// keyFile is a key file read from disk.
type keyFile struct {
	path string
	data []byte
}

// caKeyFiles reads the CA's key files in dir, those that exist: the root
// key is missing with an imported intermediate, or when moved offline.
func caKeyFiles(dir string) ([]keyFile, error) {
	var out []keyFile
	for _, name := range []string{CAKeyFile, RootKeyFile} {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
		out = append(out, keyFile{p, b})
	}
	return out, nil
}
