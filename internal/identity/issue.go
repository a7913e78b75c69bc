package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// OIDMUDURL is the id-pe-mud-url certificate extension (RFC 8520 §10):
// an IA5String holding the URL of the device's MUD file.
var OIDMUDURL = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 25}

// DeviceURIPrefix starts the URI SAN that names the device in its
// certificate: urn:steward:device:<device ID>.
const DeviceURIPrefix = "urn:steward:device:"

// clockSkew backdates certificates so devices with a slightly slow clock
// accept them at once.
const clockSkew = 5 * time.Minute

// DeviceCertRequest is what goes into a device certificate.
type DeviceCertRequest struct {
	DeviceID  string
	PublicKey crypto.PublicKey
	MUDURL    string
	Validity  time.Duration
	// CRLURL, when set, is written as the CRL distribution point.
	CRLURL string
	Now    time.Time
}

// IssueDevice signs a device certificate: Subject CN and URI SAN name the
// device, the key usage allows TLS client authentication only, and the
// product's MUD URL rides along as the RFC 8520 extension. The validity is
// cut to the issuing CA's own.
func (ca *CA) IssueDevice(r DeviceCertRequest) (*x509.Certificate, error) {
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	u, err := url.Parse(DeviceURIPrefix + r.DeviceID)
	if err != nil {
		return nil, fmt.Errorf("device ID %q: %w", r.DeviceID, err)
	}
	notAfter := r.Now.Add(r.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	ku := x509.KeyUsageDigitalSignature
	if _, ok := r.PublicKey.(*rsa.PublicKey); ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: r.DeviceID},
		URIs:         []*url.URL{u},
		NotBefore:    r.Now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     ku,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		// An explicit "not a CA" so no verifier mistakes it for one.
		BasicConstraintsValid: true,
	}
	if r.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{r.CRLURL}
	}
	if r.MUDURL != "" {
		v, err := asn1.MarshalWithParams(r.MUDURL, "ia5")
		if err != nil {
			return nil, fmt.Errorf("MUD URL %q is not an IA5String: %w", r.MUDURL, err)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: OIDMUDURL, Value: v})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, r.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// MUDURL returns the MUD URL extension of a certificate, if it has one.
func MUDURL(c *x509.Certificate) string {
	for _, e := range c.Extensions {
		if e.Id.Equal(OIDMUDURL) {
			var s string
			if _, err := asn1.UnmarshalWithParams(e.Value, &s, "ia5"); err == nil {
				return s
			}
		}
	}
	return ""
}

// DeviceIDOf returns the device ID a platform certificate names (its URI
// SAN, else its CN).
func DeviceIDOf(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if s := u.String(); len(s) > len(DeviceURIPrefix) && s[:len(DeviceURIPrefix)] == DeviceURIPrefix {
			return s[len(DeviceURIPrefix):]
		}
	}
	return c.Subject.CommonName
}

// CertRecord fills the store record of an issued certificate.
func CertRecord(c *x509.Certificate, tenantID, deviceID string, method model.EnrollMethod, issued time.Time) (*model.Certificate, error) {
	alg, err := KeyAlgorithm(c.PublicKey)
	if err != nil {
		return nil, err
	}
	kfp, err := KeyFingerprint(c.PublicKey)
	if err != nil {
		return nil, err
	}
	fp := sha256.Sum256(c.Raw)
	return &model.Certificate{
		Serial: SerialHex(c.SerialNumber), TenantID: tenantID, DeviceID: deviceID, Subject: c.Subject.String(),
		Fingerprint: hex.EncodeToString(fp[:]), KeyFingerprint: kfp, KeyAlgorithm: alg, Method: method,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), IssuedAt: issued, DER: c.Raw,
	}, nil
}

// ServerCertificate issues a TLS server certificate (ECDSA P-256, one year)
// for the given host names and IP addresses, with the chain attached.
func (ca *CA) ServerCertificate(hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "steward enrollment server"},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     minTime(now.AddDate(1, 0, 0), ca.Cert.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, _ := x509.ParseCertificate(der)
	chain := [][]byte{der}
	for _, c := range ca.Chain[:len(ca.Chain)-1] {
		chain = append(chain, c.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// CRL signs a certificate revocation list of the given revoked
// certificates, valid for validity.
func (ca *CA) CRL(revoked []model.Certificate, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, c := range revoked {
		if c.RevokedAt == nil {
			continue
		}
		n, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("stored serial %q is not hex", c.Serial)
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: c.RevokedAt.UTC(),
			ReasonCode: c.RevocationReason.CRLCode()})
	}
	tmpl := &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    number,
		ThisUpdate:                now.Add(-clockSkew),
		NextUpdate:                now.Add(validity),
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.key)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
