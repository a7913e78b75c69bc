package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// PKIConfig says where the platform's CA lives and how it is protected.
type PKIConfig struct {
	// Dir holds root.crt, root.key, ca.crt and ca.key (keys 0600).
	Dir string
	// Passphrase encrypts the private keys at rest when set.
	Passphrase string
	// ImportCert (PEM: the issuing CA first, then its chain) and ImportKey
	// (PEM) make an external intermediate the issuing CA instead of a
	// built-in one. Used on first start; afterwards they must still match.
	ImportCert, ImportKey string
	Log                   *slog.Logger
}

// File names inside PKIConfig.Dir.
const (
	RootCertFile = "root.crt"
	RootKeyFile  = "root.key"
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
)

// CA is the platform's issuing CA with its chain up to the trust anchor.
type CA struct {
	// Cert is the issuing CA; Chain is Cert followed by its issuers up to
	// and including the trust anchor (the root, or the top of an imported
	// chain).
	Cert  *x509.Certificate
	Chain []*x509.Certificate
	// Imported is true when the issuing CA was imported, not made here.
	Imported bool

	key   crypto.Signer
	roots *x509.CertPool
	inter *x509.CertPool
}

// Anchor is the certificate devices and servers should trust.
func (ca *CA) Anchor() *x509.Certificate { return ca.Chain[len(ca.Chain)-1] }

// Fingerprint is the SHA-256 of the trust anchor, for printing and pinning.
func (ca *CA) Fingerprint() string {
	s := sha256.Sum256(ca.Anchor().Raw)
	return hex.EncodeToString(s[:])
}

// ChainPEM is the issuing CA and its chain as PEM.
func (ca *CA) ChainPEM() []byte {
	var b bytes.Buffer
	for _, c := range ca.Chain {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// VerifyOptions are the options to verify a device client certificate.
// The pools are shared: clone Intermediates before adding to it.
func (ca *CA) VerifyOptions(now time.Time) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: ca.roots, Intermediates: ca.inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

// LoadOrCreateCA opens the CA in cfg.Dir, or makes it on first start: a
// root and an issuing intermediate (ECDSA P-256), or the imported
// intermediate. A missing or wrong passphrase for encrypted keys, a key
// that does not match its certificate or an expired CA stop it with an
// error naming the file.
func LoadOrCreateCA(cfg PKIConfig) (*CA, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: creating %s: %w", cfg.Dir, err)
	}
	certPath := filepath.Join(cfg.Dir, CACertFile)
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		if cfg.ImportCert != "" {
			if err := importCA(cfg); err != nil {
				return nil, err
			}
		} else if err := createCA(cfg); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return loadCA(cfg)
}

func loadCA(cfg PKIConfig) (*CA, error) {
	certPath, keyPath := filepath.Join(cfg.Dir, CACertFile), filepath.Join(cfg.Dir, CAKeyFile)
	chain, err := readCerts(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", certPath, err)
	}
	rootPath := filepath.Join(cfg.Dir, RootCertFile)
	if roots, err := readCerts(rootPath); err == nil {
		if len(roots) != 1 {
			return nil, fmt.Errorf("pki: %s: want exactly one certificate, found %d", rootPath, len(roots))
		}
		if !chain[len(chain)-1].Equal(roots[0]) {
			chain = append(chain, roots[0])
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("pki: %s: %w", rootPath, err)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	key, _, err := decodeKey(kb, cfg.Passphrase)
	if err != nil {
		return nil, keyFileError(keyPath, err)
	}
	ca := &CA{Cert: chain[0], Chain: chain, key: key}
	if err := ca.check(time.Now()); err != nil {
		return nil, fmt.Errorf("pki: %s: %w", certPath, err)
	}
	// A passphrase configured after the keys were written: protect them now.
	// Each file is looked at on its own: a crash between the two leaves
	// one encrypted and the other not.
	if cfg.Passphrase != "" {
		files, err := caKeyFiles(cfg.Dir)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if blockType(f.data) == encryptedKeyType {
				continue
			}
			k, _, err := decodeKey(f.data, "")
			if err != nil {
				return nil, keyFileError(f.path, err)
			}
			if err := writeKeyFile(f.path, k, cfg.Passphrase); err != nil {
				return nil, fmt.Errorf("pki: encrypting %s: %w", f.path, err)
			}
			cfg.Log.Info("encrypted a private key at rest with the configured passphrase", "file", f.path)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, RootKeyFile)); errors.Is(err, os.ErrNotExist) {
		ca.Imported = true
	}
	if cfg.ImportCert != "" {
		imp, err := readCerts(cfg.ImportCert)
		if err != nil {
			return nil, fmt.Errorf("pki.import_cert: %w", err)
		}
		if !imp[0].Equal(ca.Cert) {
			return nil, fmt.Errorf("pki.import_cert: %s already holds another issuing CA (%s); remove that folder to switch CAs "+
				"(every device certificate issued so far stops working)", cfg.Dir, ca.Cert.Subject)
		}
	}
	ca.roots = x509.NewCertPool()
	ca.roots.AddCert(ca.Anchor())
	ca.inter = x509.NewCertPool()
	for _, c := range chain[:len(chain)-1] {
		ca.inter.AddCert(c)
	}
	if left := time.Until(ca.Cert.NotAfter); left < 30*24*time.Hour {
		cfg.Log.Warn("the issuing CA expires soon; import or create a new one", "not_after", ca.Cert.NotAfter)
	}
	return ca, nil
}

// check makes sure the issuing CA can sign and its key belongs to it.
func (ca *CA) check(now time.Time) error {
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid {
		return errors.New("the issuing certificate is not a CA (basic constraints)")
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("the issuing certificate may not sign certificates (key usage)")
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("the issuing CA expired at %s", c.NotAfter.Format(time.RFC3339))
	}
	if !publicKeysEqual(ca.key.Public(), c.PublicKey) {
		return errors.New("the private key does not belong to the issuing certificate")
	}
	for i := 0; i+1 < len(ca.Chain); i++ {
		if err := ca.Chain[i].CheckSignatureFrom(ca.Chain[i+1]); err != nil {
			return fmt.Errorf("certificate %d of the chain (%s) is not signed by the next (%s): %w", i,
				ca.Chain[i].Subject, ca.Chain[i+1].Subject, err)
		}
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func createCA(cfg PKIConfig) error {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	root := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "Steward Root CA", Organization: []string{"Steward"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(20, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		return err
	}
	rootCert, _ := x509.ParseCertificate(rootDER)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	inter := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "Steward Issuing CA", Organization: []string{"Steward"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: 0, MaxPathLenZero: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, inter, rootCert, &caKey.PublicKey, rootKey)
	if err != nil {
		return err
	}
	// Keys first, certificates last: ca.crt existing means the CA is complete.
	if err := writeKeyFile(filepath.Join(cfg.Dir, RootKeyFile), rootKey, cfg.Passphrase); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := writeKeyFile(filepath.Join(cfg.Dir, CAKeyFile), caKey, cfg.Passphrase); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(cfg.Dir, RootCertFile), pemCert(rootDER), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(cfg.Dir, CACertFile), pemCert(caDER), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	cfg.Log.Info("created the platform CA (root and issuing intermediate, ECDSA P-256)", "dir", cfg.Dir,
		"encrypted", cfg.Passphrase != "")
	return nil
}

// importCA copies an external intermediate (and its chain) into the PKI
// folder after checking that it can act as the issuing CA.
func importCA(cfg PKIConfig) error {
	if cfg.ImportKey == "" {
		return errors.New("pki.import_key: required with pki.import_cert")
	}
	chain, err := readCerts(cfg.ImportCert)
	if err != nil {
		return fmt.Errorf("pki.import_cert: %w", err)
	}
	kb, err := os.ReadFile(cfg.ImportKey)
	if err != nil {
		return fmt.Errorf("pki.import_key: %w", err)
	}
	key, _, err := decodeKey(kb, cfg.Passphrase)
	if err != nil {
		return fmt.Errorf("pki.import_key: %w", err)
	}
	ca := &CA{Cert: chain[0], Chain: chain, key: key}
	if err := ca.check(time.Now()); err != nil {
		return fmt.Errorf("pki.import_cert: %w", err)
	}
	if err := writeKeyFile(filepath.Join(cfg.Dir, CAKeyFile), key, cfg.Passphrase); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	top := chain[len(chain)-1]
	var certs []*x509.Certificate = chain
	if len(chain) > 1 && isSelfSigned(top) {
		if err := writeFileAtomic(filepath.Join(cfg.Dir, RootCertFile), pemCert(top.Raw), 0o644); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
		certs = chain[:len(chain)-1]
	}
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(pemCert(c.Raw))
	}
	if err := writeFileAtomic(filepath.Join(cfg.Dir, CACertFile), b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	cfg.Log.Info("imported an external issuing CA", "subject", chain[0].Subject.String(), "dir", cfg.Dir)
	return nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCertsPEM(b)
	if err != nil {
		return nil, err
	}
	return certs, nil
}

// ParseCertsPEM reads every CERTIFICATE block of a PEM file (a CA chain);
// at least one is required.
func ParseCertsPEM(b []byte) ([]*x509.Certificate, error) { return parseCertsPEM(b) }

func parseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// randomSerial is a positive 127-bit random serial number (RFC 5280 allows
// up to 20 octets; 16 random bytes with the top bit clear stay positive).
func randomSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	b[0] |= 0x40 // always 16 significant bytes: fixed-width hex serials
	return new(big.Int).SetBytes(b)
}

// SerialHex is how serial numbers are written everywhere (lowercase hex).
func SerialHex(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// ErrOtherCA: the database belongs to a platform with another CA.
var ErrOtherCA = errors.New("pki: the database belongs to a platform with another CA")

// BindCA records ca as the platform's CA on the first start against a
// database, and refuses a CA that differs from the recorded one (a node
// started without a copy of the platform's data_dir/pki would otherwise
// issue certificates the other nodes reject, and reject theirs).
func BindCA(ctx context.Context, st store.Store, ca *CA) error {
	issuing := sha256.Sum256(ca.Cert.Raw)
	rec, err := st.PlatformCA(ctx)
	switch {
	case err == nil:
		if rec.AnchorSHA256 != ca.Fingerprint() {
			return fmt.Errorf("%w (trust anchor sha256 %s, this node has %s): copy data_dir/pki from a node of this platform, "+
				"or import the same intermediate", ErrOtherCA, rec.AnchorSHA256, ca.Fingerprint())
		}
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	c := &model.PlatformCA{AnchorSHA256: ca.Fingerprint(), IssuingSHA256: hex.EncodeToString(issuing[:]),
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreatePlatformCA(ctx, c); err != nil {
			return err
		}
		_, err := tx.Audit(ctx, "", model.AuditEntry{Actor: "system", Action: "pki.bind", Target: c.AnchorSHA256,
			Summary: map[string]any{"anchor": ca.Anchor().Subject.String(), "issuing": ca.Cert.Subject.String(),
				"imported": ca.Imported, "issuing_sha256": c.IssuingSHA256}})
		return err
	})
	if errors.Is(err, store.ErrConflict) { // another node bound it meanwhile
		return BindCA(ctx, st, ca)
	}
	return err
}
