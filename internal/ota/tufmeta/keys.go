// Package tufmeta is the signed update metadata of Steward, in the TUF
// formats (go-tuf v2 metadata types) with the two roles of Uptane:
//
//   - the vendor (image repository): a root that names the vendor's root
//     and targets keys with their thresholds, and targets metadata, signed
//     by the targets keys, that says what each image is (length, SHA-256,
//     version, hardware IDs). The vendor signs offline (steward ota sign);
//     the server only stores what was signed.
//   - the director: a root of the platform's director key and, per device,
//     targets metadata naming the one image that device should install now.
//
// Verify is what a device runs before installing: both roles must be
// validly signed by their current keys (threshold included), unexpired,
// not older than what the device saw before, and agree on the image, which
// must fit the device's hardware and be newer than what it runs.
// This package has no server dependencies so the agent can use it alone.
package tufmeta

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Key is a private signing key and its TUF public key record.
type Key struct {
	Signer signature.Signer
	Public *metadata.Key
	// ID is the TUF key ID (SHA-256 of the canonical public key record).
	ID   string
	priv crypto.PrivateKey
}

// GenerateKey makes a new ed25519 key.
func GenerateKey() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return keyOf(priv)
}

func keyOf(priv crypto.PrivateKey) (*Key, error) {
	var s signature.Signer
	var pub crypto.PublicKey
	var err error
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		s, err = signature.LoadED25519Signer(k)
		pub = k.Public()
	default:
		return nil, fmt.Errorf("unsupported key type %T (want ed25519)", priv)
	}
	if err != nil {
		return nil, err
	}
	tk, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, err
	}
	id, err := tk.ID()
	if err != nil {
		return nil, err
	}
	return &Key{Signer: s, Public: tk, ID: id, priv: priv}, nil
}

// MarshalKey encodes the private key as PKCS #8 PEM.
func MarshalKey(k *Key) ([]byte, error) {
	if k.priv == nil {
		return nil, errors.New("no private key to write")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteKeyFile writes the private key to path with mode 0600; an existing
// file is not overwritten.
func WriteKeyFile(path string, k *Key) error {
	b, err := MarshalKey(k)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ParseKey reads a PKCS #8 PEM private key.
func ParseKey(b []byte) (*Key, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" (PKCS #8)")
	}
	priv, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	return keyOf(priv)
}

// LoadKeyFile reads a key written by WriteKeyFile; it refuses a file that
// others may read.
func LoadKeyFile(path string) (*Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %v: others may read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateKeyFile loads the key at path, creating it (0600) first when
// there is none.
func LoadOrCreateKeyFile(path string) (*Key, error) {
	k, err := LoadKeyFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, err
	}
	if k, err = GenerateKey(); err != nil {
		return nil, err
	}
	if err := WriteKeyFile(path, k); err != nil {
		if errors.Is(err, os.ErrExist) {
			return LoadKeyFile(path)
		}
		return nil, err
	}
	return k, nil
}

// MarshalPublicKey encodes the key's public half as PKIX PEM.
func MarshalPublicKey(k *Key) ([]byte, error) {
	pub, err := k.Public.ToPublicKey()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// LoadPublicKeyFile reads the TUF public key record from a PEM file holding
// either a public key (PKIX) or a private key (PKCS #8).
func LoadPublicKeyFile(path string) (*metadata.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	switch blk.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return metadata.KeyFromPublicKey(pub)
	case "PRIVATE KEY":
		k, err := LoadKeyFile(path)
		if err != nil {
			return nil, err
		}
		return k.Public, nil
	}
	return nil, fmt.Errorf("%s: a %q PEM block is not a key", path, blk.Type)
}

// KeyID is the TUF key ID of a public key record.
func KeyID(k *metadata.Key) string {
	id, _ := k.ID()
	return id
}
