package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func pemType(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	return block.Type
}

func TestCACreatedOnceWithPrivateKeys(t *testing.T) {
	for _, pass := range []string{"", "correct horse battery staple"} {
		name := "plain"
		if pass != "" {
			name = "encrypted"
		}
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			ca, err := LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: pass})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{RootKeyFile, CAKeyFile} {
				if m := fileMode(t, filepath.Join(dir, f)); m != 0o600 {
					t.Errorf("%s has mode %o, want 600", f, m)
				}
				want := "PRIVATE KEY"
				if pass != "" {
					want = encryptedKeyType
				}
				if got := pemType(t, filepath.Join(dir, f)); got != want {
					t.Errorf("%s is a %q block, want %q", f, got, want)
				}
			}
			if ca.Imported || len(ca.Chain) != 2 || !ca.Cert.IsCA || ca.Cert.MaxPathLen != 0 || !ca.Cert.MaxPathLenZero {
				t.Fatalf("issuing CA: imported %v, chain %d, CA %v, maxpath %d", ca.Imported, len(ca.Chain), ca.Cert.IsCA, ca.Cert.MaxPathLen)
			}
			if k, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
				t.Fatalf("issuing CA key %T, want ECDSA P-256", ca.Cert.PublicKey)
			}
			if err := ca.Cert.CheckSignatureFrom(ca.Anchor()); err != nil {
				t.Fatal(err)
			}
			// A second start loads the same CA.
			again, err := LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: pass})
			if err != nil {
				t.Fatal(err)
			}
			if !again.Cert.Equal(ca.Cert) || again.Fingerprint() != ca.Fingerprint() {
				t.Fatal("a second start made a new CA")
			}
			if pass != "" {
				_, err := LoadOrCreateCA(PKIConfig{Dir: dir})
				if !errors.Is(err, ErrPassphrase) || !strings.Contains(err.Error(), "STEWARD_PKI_PASSPHRASE") {
					t.Fatalf("no passphrase: %v", err)
				}
				_, err = LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: "wrong"})
				if !errors.Is(err, ErrPassphrase) {
					t.Fatalf("wrong passphrase: %v", err)
				}
			}
		})
	}
}

func TestPassphraseAddedLaterEncryptsKeys(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateCA(PKIConfig{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: "later"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{RootKeyFile, CAKeyFile} {
		if got := pemType(t, filepath.Join(dir, f)); got != encryptedKeyType {
			t.Errorf("%s is still %q", f, got)
		}
		if m := fileMode(t, filepath.Join(dir, f)); m != 0o600 {
			t.Errorf("%s has mode %o", f, m)
		}
	}
	if _, err := LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: "later"}); err != nil {
		t.Fatal(err)
	}

	// A crash between the two files left the root key in clear: the next
	// start encrypts it, although the issuing key already is.
	root := filepath.Join(dir, RootKeyFile)
	b, _ := os.ReadFile(root)
	k, _, err := decodeKey(b, "later")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKeyFile(root, k, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: "later"}); err != nil {
		t.Fatal(err)
	}
	if got := pemType(t, root); got != encryptedKeyType {
		t.Errorf("a root key left in clear stays %q", got)
	}
}

func TestTamperedEncryptedKeyRefused(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: "p"}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, CAKeyFile)
	b, _ := os.ReadFile(p)
	block, _ := pem.Decode(b)
	block.Bytes[3] ^= 1
	os.WriteFile(p, pem.EncodeToMemory(block), 0o600)
	if _, err := LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: "p"}); !errors.Is(err, ErrPassphrase) {
		t.Fatalf("a tampered key: %v", err)
	}
	block.Bytes[3] ^= 1
	block.Headers["KDF-Params"] = "t=3,m=4194304,p=4" // 4 GiB: refused before any work
	os.WriteFile(p, pem.EncodeToMemory(block), 0o600)
	if _, err := LoadOrCreateCA(PKIConfig{Dir: dir, Passphrase: "p"}); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("absurd KDF parameters: %v", err)
	}
}

// externalCA makes a root and an intermediate in files, as an operator's
// own PKI would.
func externalCA(t *testing.T, dir string, withRoot bool) (certPath, keyPath string, inter *x509.Certificate) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Corp Root"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(5, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rootDER, _ := x509.CreateCertificate(rand.Reader, root, root, rootKey.Public(), rootKey)
	rootCert, _ := x509.ParseCertificate(rootDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Corp Devices CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(2, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, _ := x509.CreateCertificate(rand.Reader, it, rootCert, key.Public(), rootKey)
	inter, _ = x509.ParseCertificate(der)
	var b bytes.Buffer
	b.Write(pemCert(der))
	if withRoot {
		b.Write(pemCert(rootDER))
	}
	certPath, keyPath = filepath.Join(dir, "inter.crt"), filepath.Join(dir, "inter.key")
	os.WriteFile(certPath, b.Bytes(), 0o644)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certPath, keyPath, inter
}

func TestImportExternalIntermediate(t *testing.T) {
	for _, withRoot := range []bool{true, false} {
		t.Run(map[bool]string{true: "with root", false: "intermediate only"}[withRoot], func(t *testing.T) {
			src := t.TempDir()
			certPath, keyPath, inter := externalCA(t, src, withRoot)
			dir := filepath.Join(t.TempDir(), "pki")
			ca, err := LoadOrCreateCA(PKIConfig{Dir: dir, ImportCert: certPath, ImportKey: keyPath, Passphrase: "x"})
			if err != nil {
				t.Fatal(err)
			}
			if !ca.Imported || !ca.Cert.Equal(inter) {
				t.Fatalf("imported CA: %v %s", ca.Imported, ca.Cert.Subject)
			}
			if _, err := os.Stat(filepath.Join(dir, RootKeyFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("an imported CA has no root key here")
			}
			if got := pemType(t, filepath.Join(dir, CAKeyFile)); got != encryptedKeyType {
				t.Fatalf("the imported key is stored as %q", got)
			}
			wantAnchor := "Corp Devices CA"
			if withRoot {
				wantAnchor = "Corp Root"
			}
			if ca.Anchor().Subject.CommonName != wantAnchor {
				t.Fatalf("anchor %s, want %s", ca.Anchor().Subject.CommonName, wantAnchor)
			}
			// It issues device certificates that verify to the anchor.
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			c, err := ca.IssueDevice(DeviceCertRequest{DeviceID: "dev_x", PublicKey: key.Public(), Validity: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Verify(ca.VerifyOptions(time.Now())); err != nil {
				t.Fatal(err)
			}
			// Restarting with the same import is fine; with another is refused.
			if _, err := LoadOrCreateCA(PKIConfig{Dir: dir, ImportCert: certPath, ImportKey: keyPath, Passphrase: "x"}); err != nil {
				t.Fatal(err)
			}
			other, otherKey, _ := externalCA(t, t.TempDir(), false)
			if _, err := LoadOrCreateCA(PKIConfig{Dir: dir, ImportCert: other, ImportKey: otherKey, Passphrase: "x"}); err == nil ||
				!strings.Contains(err.Error(), "already holds another issuing CA") {
				t.Fatalf("switching the imported CA: %v", err)
			}
		})
	}
}

func TestImportRefusesWrongKeyAndNonCA(t *testing.T) {
	src := t.TempDir()
	certPath, _, _ := externalCA(t, src, true)
	_, otherKey, _ := externalCA(t, t.TempDir(), true)
	_, err := LoadOrCreateCA(PKIConfig{Dir: t.TempDir(), ImportCert: certPath, ImportKey: otherKey})
	if err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("a key of another CA: %v", err)
	}
	// A leaf certificate cannot be the issuing CA.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	lc, lk := filepath.Join(src, "leaf.crt"), filepath.Join(src, "leaf.key")
	os.WriteFile(lc, pemCert(der), 0o644)
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(lk, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	if _, err := LoadOrCreateCA(PKIConfig{Dir: t.TempDir(), ImportCert: lc, ImportKey: lk}); err == nil ||
		!strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("a leaf as CA: %v", err)
	}
}

func TestDeviceCertificate(t *testing.T) {
	ca, err := LoadOrCreateCA(PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	now := time.Now()
	c, err := ca.IssueDevice(DeviceCertRequest{DeviceID: "dev_01abc", PublicKey: key.Public(), MUDURL: "https://vendor.example/mud.json",
		Validity: 90 * 24 * time.Hour, CRLURL: "https://steward.example/pki/crl", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "dev_01abc" || DeviceIDOf(c) != "dev_01abc" || c.URIs[0].String() != "urn:steward:device:dev_01abc" {
		t.Errorf("names: CN %q, URIs %v", c.Subject.CommonName, c.URIs)
	}
	if MUDURL(c) != "https://vendor.example/mud.json" {
		t.Errorf("MUD URL %q", MUDURL(c))
	}
	for _, e := range c.Extensions {
		if e.Id.Equal(OIDMUDURL) && (e.Critical || e.Value[0] != 0x16) { // 0x16: IA5String
			t.Errorf("MUD extension: critical %v, tag %#x", e.Critical, e.Value[0])
		}
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || c.KeyUsage != x509.KeyUsageDigitalSignature || c.IsCA {
		t.Errorf("usage: %v %v %v", c.ExtKeyUsage, c.KeyUsage, c.IsCA)
	}
	if len(c.CRLDistributionPoints) != 1 {
		t.Errorf("CRL distribution points %v", c.CRLDistributionPoints)
	}
	if c.NotAfter.Sub(now) > 90*24*time.Hour+time.Second || c.NotAfter.Sub(now) < 90*24*time.Hour-time.Second {
		t.Errorf("not after %s", c.NotAfter)
	}
	if len(SerialHex(c.SerialNumber)) != 32 {
		t.Errorf("serial %s is not 16 bytes", SerialHex(c.SerialNumber))
	}
	// Validity never outlives the issuing CA.
	long, err := ca.IssueDevice(DeviceCertRequest{DeviceID: "dev_long", PublicKey: key.Public(), Validity: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if long.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("device certificate outlives its CA")
	}
	// The CRL carries serials and reasons.
	at := now.UTC().Truncate(time.Second)
	der, err := ca.CRL([]model.Certificate{{Serial: SerialHex(c.SerialNumber), RevokedAt: &at, RevocationReason: model.ReasonKeyCompromise}},
		big.NewInt(7), now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(c.SerialNumber) != 0 ||
		crl.RevokedCertificateEntries[0].ReasonCode != 1 || crl.Number.Int64() != 7 {
		t.Fatalf("CRL: %+v", crl.RevokedCertificateEntries)
	}
}

func TestBindCA(t *testing.T) {
	ctx := t.Context()
	db, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "s.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ca, _ := LoadOrCreateCA(PKIConfig{Dir: t.TempDir()})
	other, _ := LoadOrCreateCA(PKIConfig{Dir: t.TempDir()})
	if err := BindCA(ctx, db, ca); err != nil {
		t.Fatal(err)
	}
	if err := BindCA(ctx, db, ca); err != nil {
		t.Fatalf("the same CA again: %v", err)
	}
	err = BindCA(ctx, db, other)
	if !errors.Is(err, ErrOtherCA) || !strings.Contains(err.Error(), "copy data_dir/pki") {
		t.Fatalf("another CA: %v", err)
	}
	recs, _ := db.ListAudit(ctx, "", 0, 10)
	if len(recs) != 1 || recs[0].Action != "pki.bind" {
		t.Fatalf("platform audit trail: %+v", recs)
	}
}
