package identity

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretsKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SecretsKeyFile)
	k1, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := pemType(t, path); got != secretsKeyType {
		t.Fatalf("new key file is %q", got)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Fatalf("key file has mode %o", m)
	}
	k2, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir})
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second start: %x, %v; want the same key %x", k2, err, k1)
	}

	// A passphrase set later encrypts the file; the key stays the same.
	k3, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir, Passphrase: "later"})
	if err != nil || !bytes.Equal(k1, k3) {
		t.Fatalf("with a passphrase: %x, %v", k3, err)
	}
	if got := pemType(t, path); got != sealedSecretsKeyType {
		t.Fatalf("after a passphrase was set the file is %q", got)
	}
	if raw, _ := os.ReadFile(path); bytes.Contains(raw, k1) {
		t.Fatal("the encrypted file holds the key in clear")
	}
	for _, pass := range []string{"", "wrong"} {
		if _, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir, Passphrase: pass}); !errors.Is(err, ErrPassphrase) {
			t.Errorf("passphrase %q: %v, want %v", pass, err, ErrPassphrase)
		}
	}
	if k4, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir, Passphrase: "later"}); err != nil || !bytes.Equal(k1, k4) {
		t.Fatalf("reopened: %x, %v", k4, err)
	}

	// Bad files are refused with the reason, and left as they are.
	bad := []struct{ name, data, want string }{
		{"not PEM", "garbage", "no PEM block"},
		{"a private key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})), "is not a secrets key"},
		{"short key", string(pem.EncodeToMemory(&pem.Block{Type: secretsKeyType, Bytes: make([]byte, 16)})), "16 bytes"},
	}
	for _, b := range bad {
		os.WriteFile(path, []byte(b.data), 0o600)
		if _, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir}); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: %v, want %q", b.name, err, b.want)
		}
		if got, _ := os.ReadFile(path); string(got) != b.data {
			t.Errorf("%s: the file was changed", b.name)
		}
	}
}
