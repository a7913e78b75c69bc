// Package secretbox seals the few secrets the platform must keep in its
// database and still use in clear, such as webhook signing secrets (they
// are HMAC keys: a hash would not do). A sealed value is AES-256-GCM
// under the server's secrets key, bound to the row it belongs to, so a
// copy of the database (a backup, a replica, a dump handed to support)
// does not give the secrets away, and a sealed value moved to another row
// does not open.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of a secrets key (AES-256).
const KeySize = 32

// Prefix marks a sealed value; what follows is base64 (no padding) of the
// nonce and the ciphertext with its tag.
const Prefix = "sealed:v1:"

// ErrOpen is returned for a sealed value that does not open: another
// key, another row, or altered bytes.
var ErrOpen = errors.New("secretbox: sealed value does not open with this server's secrets key (another key, another row, or altered)")

// Box seals and opens values with one key. It is safe for concurrent use.
type Box struct{ aead cipher.AEAD }

// New returns a Box for a KeySize-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// NewKey returns a fresh random key.
func NewKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

// IsSealed reports whether s has the form of a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }

// Seal seals plain for the place named by binding (for example the table,
// tenant and row ID); Open must be given the same binding.
func (b *Box) Seal(plain, binding string) string {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plain)+b.aead.Overhead())
	rand.Read(nonce)
	out := b.aead.Seal(nonce, nonce, []byte(plain), []byte(binding))
	return Prefix + base64.RawStdEncoding.EncodeToString(out)
}

// Open returns the plain value of a value Seal made for binding.
func (b *Box) Open(sealed, binding string) (string, error) {
	if !IsSealed(sealed) {
		return "", errors.New("secretbox: value is not sealed")
	}
	raw, err := base64.RawStdEncoding.DecodeString(sealed[len(Prefix):])
	if err != nil {
		return "", fmt.Errorf("secretbox: sealed value is not valid base64: %w", err)
	}
	n := b.aead.NonceSize()
	if len(raw) < n+b.aead.Overhead() {
		return "", errors.New("secretbox: sealed value is too short")
	}
	plain, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(binding))
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}
