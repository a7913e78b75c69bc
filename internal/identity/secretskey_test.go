package identity

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// TestSecretsKeyWrongPassphrase: with CA keys encrypted, a passphrase that
// does not open them writes no secrets key (neither a new one nor an
// encrypted copy of a plain one): a mistyped passphrase would otherwise
// lock the key away from the right one.
func TestSecretsKeyWrongPassphrase(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: "right"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SecretsKeyFile)
	for _, pass := range []string{"wrong", ""} {
		if _, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir, Passphrase: pass}); !errors.Is(err, ErrPassphrase) {
			t.Errorf("new key with passphrase %q: %v, want %v", pass, err, ErrPassphrase)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("passphrase %q: a secrets key was written (%v)", pass, err)
		}
	}

	// A plain secrets key (from before the passphrase) is not encrypted
	// with a wrong one.
	plain := pem.EncodeToMemory(&pem.Block{Type: secretsKeyType, Bytes: bytes.Repeat([]byte{3}, 32)})
	if err := os.WriteFile(path, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir, Passphrase: "wrong"}); !errors.Is(err, ErrPassphrase) {
		t.Errorf("encrypting with a wrong passphrase: %v, want %v", err, ErrPassphrase)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, plain) {
		t.Fatal("the plain secrets key was rewritten under a wrong passphrase")
	}
	if k, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir, Passphrase: "right"}); err != nil || !bytes.Equal(k, bytes.Repeat([]byte{3}, 32)) {
		t.Fatalf("with the right passphrase: %x, %v", k, err)
	}
	if got := pemType(t, path); got != sealedSecretsKeyType {
		t.Fatalf("with the right passphrase the file is %q", got)
	}
}

// TestSecretsKeyCreatedOnce: processes that start together on one folder
// all use the key that one of them made.
func TestSecretsKeyCreatedOnce(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateSecretsKey(PKIConfig{Dir: dir}) })
	}
	wg.Wait()
	onDisk, err := LoadOrCreateSecretsKey(PKIConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil || !bytes.Equal(keys[i], onDisk) {
			t.Errorf("start %d: %x, %v; the file holds %x", i, keys[i], errs[i], onDisk)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
