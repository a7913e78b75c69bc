package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/est"
	"github.com/steward-iot/steward/internal/identity"
)

// Files in the state folder.
const (
	// IdentityFile holds the device's private key and its certificate
	// (PEM, mode 0600). One file, replaced atomically on renewal, so key
	// and certificate never disagree.
	IdentityFile = "identity.pem"
	// CAFile is the platform CA chain the agent trusts (PEM).
	CAFile = "ca.crt"
)

// Enrollment is how the device proves itself the first time; exactly one
// of a bootstrap token, a claim code or a factory certificate.
type Enrollment struct {
	BootstrapToken string
	// ClaimSerial and ClaimCode: enrollment with the device's claim code.
	ClaimSerial, ClaimCode string
	// FactoryCert and FactoryKey are PEM files of a certificate from a
	// manufacturer CA registered for the product.
	FactoryCert, FactoryKey string
	// Serial is the device's serial number, named in the request (needed
	// with a bootstrap token; taken from the claim or the factory
	// certificate otherwise).
	Serial string
}

func (e Enrollment) methods() int {
	n := 0
	for _, set := range []bool{e.BootstrapToken != "", e.ClaimCode != "", e.FactoryCert != ""} {
		if set {
			n++
		}
	}
	return n
}

// Identity is the device's key and certificate, as kept in the state
// folder. It is safe for concurrent use; Renew replaces both.
type Identity struct {
	path string
	mu   sync.RWMutex
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

// DeviceID is the ID the platform gave the device (from the certificate).
func (id *Identity) DeviceID() string {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return identity.DeviceIDOf(id.cert)
}

// Certificate is the current certificate.
func (id *Identity) Certificate() *x509.Certificate {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.cert
}

// TLSCertificate is the current key and certificate for a TLS client.
func (id *Identity) TLSCertificate() *tls.Certificate {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return &tls.Certificate{Certificate: [][]byte{id.cert.Raw}, PrivateKey: id.key, Leaf: id.cert}
}

// RenewAt is when the certificate should be renewed: at 2/3 of its
// lifetime, so a device that is offline for a while still has a third of
// the validity to come back and renew.
func RenewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(life * 2 / 3)
}

// LoadIdentity reads the state folder's identity; os.ErrNotExist when the
// device has not enrolled yet.
func LoadIdentity(stateDir string) (*Identity, error) {
	p := filepath.Join(stateDir, IdentityFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	id := &Identity{path: p}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: the private key: %w", p, err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%s: the private key is not ECDSA", p)
			}
			id.key = ek
		case "CERTIFICATE":
			if id.cert == nil {
				if id.cert, err = x509.ParseCertificate(blk.Bytes); err != nil {
					return nil, fmt.Errorf("%s: the certificate: %w", p, err)
				}
			}
		}
	}
	if id.key == nil || id.cert == nil {
		return nil, fmt.Errorf("%s holds no key and certificate; remove it and enroll again", p)
	}
	if !id.key.PublicKey.Equal(id.cert.PublicKey) {
		return nil, fmt.Errorf("%s: the certificate is not for the key; remove it and enroll again", p)
	}
	return id, nil
}

func (id *Identity) save(key *ecdsa.PrivateKey, cert *x509.Certificate) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := writeFileAtomic(id.path, buf.Bytes(), 0o600); err != nil {
		return err
	}
	id.mu.Lock()
	id.key, id.cert = key, cert
	id.mu.Unlock()
	return nil
}

// writeFileAtomic writes through a temporary file, synced, then renamed.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newKeyAndCSR(serial string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{SerialNumber: serial, CommonName: serial}}, key)
	return key, csr, err
}

// Enroll generates the device key on the device and gets its first
// certificate with the enrollment credential, then writes both to the
// state folder (mode 0600).
func Enroll(ctx context.Context, server string, roots *x509.CertPool, stateDir string, e Enrollment) (*Identity, error) {
	switch e.methods() {
	case 0:
		return nil, errors.New("the device has not enrolled yet: pass one of --bootstrap-token, --claim SERIAL:CODE or --factory-cert/--factory-key")
	case 1:
	default:
		return nil, errors.New("pass only one of --bootstrap-token, --claim and --factory-cert")
	}
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	auth, serial := "", e.Serial
	switch {
	case e.BootstrapToken != "":
		auth = "Bearer " + e.BootstrapToken
		if serial == "" {
			return nil, errors.New("--serial is required with --bootstrap-token: the token registers or matches the device by its serial number")
		}
	case e.ClaimCode != "":
		auth = est.BasicClaim(e.ClaimSerial, e.ClaimCode)
		if serial == "" {
			serial = e.ClaimSerial
		}
	default:
		if e.FactoryKey == "" {
			return nil, errors.New("--factory-cert needs --factory-key (the factory certificate's private key)")
		}
		fc, err := tls.LoadX509KeyPair(e.FactoryCert, e.FactoryKey)
		if err != nil {
			return nil, fmt.Errorf("reading the factory certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{fc}
		if serial == "" {
			if leaf, err := x509.ParseCertificate(fc.Certificate[0]); err == nil {
				serial = leaf.Subject.SerialNumber
				if serial == "" {
					serial = leaf.Subject.CommonName
				}
			}
		}
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	key, csr, err := newKeyAndCSR(serial)
	if err != nil {
		return nil, err
	}
	c := &est.Client{BaseURL: strings.TrimSuffix(server, "/"), HTTP: &http.Client{Timeout: time.Minute,
		Transport: &http.Transport{TLSClientConfig: tc}}}
	cert, err := c.SimpleEnroll(ctx, csr, auth)
	if err != nil {
		return nil, fmt.Errorf("enrolling at %s: %w", server, err)
	}
	id := &Identity{path: filepath.Join(stateDir, IdentityFile)}
	if err := id.save(key, cert); err != nil {
		return nil, fmt.Errorf("saving the device identity: %w", err)
	}
	return id, nil
}

// Renew gets a successor certificate for a new key (EST simplereenroll,
// authenticated by the current certificate) and replaces the identity.
func (id *Identity) Renew(ctx context.Context, server string, roots *x509.CertPool) error {
	cur := id.Certificate()
	serial := cur.Subject.SerialNumber
	if serial == "" {
		serial = cur.Subject.CommonName
	}
	key, csr, err := newKeyAndCSR(serial)
	if err != nil {
		return err
	}
	c := &est.Client{BaseURL: strings.TrimSuffix(server, "/"), HTTP: id.HTTPClient(roots, time.Minute)}
	cert, err := c.SimpleReenroll(ctx, csr)
	if err != nil {
		return fmt.Errorf("renewing the certificate at %s: %w", server, err)
	}
	return id.save(key, cert)
}

// HTTPClient presents the current certificate (mutual TLS), also after a
// renewal.
func (id *Identity) HTTPClient(roots *x509.CertPool, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: id.TLSConfig(roots, ""),
		ResponseHeaderTimeout: time.Minute, IdleConnTimeout: time.Minute}}
}

// TLSConfig trusts roots and presents the current certificate.
func (id *Identity) TLSConfig(roots *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.TLSCertificate(), nil }}
}

// LoadCA returns the platform CA the agent trusts: from caFile when given
// (and kept in the state folder), else from the state folder, else fetched
// from the server's /pki/ca.crt on first run. A fetched CA is checked
// against fingerprint (SHA-256 of the root certificate, hex) when set;
// otherwise it is trusted on first use and its fingerprint is returned
// for the caller to show.
func LoadCA(ctx context.Context, stateDir, server, caFile, fingerprint string) (pool *x509.CertPool, fetched string, err error) {
	kept := filepath.Join(stateDir, CAFile)
	var pemBytes []byte
	switch {
	case caFile != "":
		if pemBytes, err = os.ReadFile(caFile); err != nil {
			return nil, "", fmt.Errorf("reading --ca: %w", err)
		}
	default:
		pemBytes, err = os.ReadFile(kept)
		if errors.Is(err, os.ErrNotExist) {
			if pemBytes, err = fetchCA(ctx, server); err != nil {
				return nil, "", err
			}
			fetched = "yes"
		} else if err != nil {
			return nil, "", err
		}
	}
	certs, err := identity.ParseCertsPEM(pemBytes)
	if err != nil {
		return nil, "", fmt.Errorf("the platform CA: %w", err)
	}
	fp := hex.EncodeToString(sumOf(anchorOf(certs).Raw))
	if fingerprint != "" {
		want := strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(fingerprint))
		if subtle.ConstantTimeCompare([]byte(want), []byte(fp)) != 1 {
			return nil, "", fmt.Errorf("the platform CA's SHA-256 fingerprint is %s, not the --ca-fingerprint %s: "+
				"check the server address, or compare with the fingerprint the server prints at start-up", fp, fingerprint)
		}
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, "", err
	}
	if caFile != "" || fetched != "" {
		if err := writeFileAtomic(kept, pemBytes, 0o644); err != nil {
			return nil, "", err
		}
	}
	pool = x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	if fetched != "" {
		fetched = fp
	}
	return pool, fetched, nil
}

func sumOf(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// anchorOf is the self-signed root of a chain (else its last certificate).
func anchorOf(certs []*x509.Certificate) *x509.Certificate {
	for _, c := range certs {
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return certs[len(certs)-1]
}

// fetchCA reads /pki/ca.crt without verifying the server (there is
// nothing to verify it with yet): the caller pins or shows the fingerprint.
func fetchCA(ctx context.Context, server string) ([]byte, error) {
	if server == "" {
		return nil, errors.New("no platform CA: pass --ca FILE, or --server so the agent can fetch it")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}} //nolint:gosec // pinned by fingerprint below
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+est.PathCACert, nil)
	if err != nil {
		return nil, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the platform CA from %s: %w (is --server the Enroll address the server prints? or pass --ca FILE)", server, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the platform CA from %s: %s", server, res.Status)
	}
	return b, nil
}
