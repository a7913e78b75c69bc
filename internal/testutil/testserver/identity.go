package testserver

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/est"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
)

// Device identity helpers: enrollment over the real EST listener, and
// ready-made PKI material for request bodies.

// EnrolledDevice is a device that holds an operational certificate.
type EnrolledDevice struct {
	DeviceID string
	Key      crypto.Signer
	Cert     *x509.Certificate
	// Serial is the certificate's hex serial number.
	Serial string
	// TLS presents the certificate as a TLS client certificate.
	TLS tls.Certificate
}

// ESTClient is an EST client that trusts the platform CA and presents
// client (when not nil) as its TLS client certificate.
func (s *Server) ESTClient(client *tls.Certificate) *est.Client {
	pool := x509.NewCertPool()
	pool.AddCert(s.Platform.Identity.CA().Anchor())
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	return &est.Client{BaseURL: s.Platform.ESTURL(), HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// NewKey is a fresh ECDSA P-256 key.
func NewKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// NewCSR is a DER PKCS#10 request for key naming serial (subject
// serialNumber; "" names nothing).
func NewCSR(key crypto.Signer, serial string) []byte {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{SerialNumber: serial, CommonName: serial}}, key)
	if err != nil {
		panic(err)
	}
	return der
}

// EnrollWithToken enrolls a device of productID with serial in tenantID
// through a fresh product-scoped bootstrap token (the device is registered
// if it does not exist; a manufactured one is claimed on the way).
func (s *Server) EnrollWithToken(t testing.TB, tenantID, productID, serial string) *EnrolledDevice {
	t.Helper()
	res := s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/bootstrap-tokens", Key: s.AdminKey,
		Tenant: tenantID, Body: map[string]any{"product_id": productID, "name": "test enrollment"}})
	key := NewKey()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, err := s.ESTClient(nil).SimpleEnroll(ctx, NewCSR(key, serial), "Bearer "+res.Str("token"))
	if err != nil {
		t.Fatalf("enrolling %s: %v", serial, err)
	}
	return Enrolled(cert, key)
}

// Enrolled wraps an issued certificate and its key.
func Enrolled(cert *x509.Certificate, key crypto.Signer) *EnrolledDevice {
	return &EnrolledDevice{DeviceID: identity.DeviceIDOf(cert), Key: key, Cert: cert, Serial: identity.SerialHex(cert.SerialNumber),
		TLS: tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}
}

// NewCAPEM is a fresh self-signed CA certificate (PEM), e.g. a
// manufacturer CA to register.
func NewCAPEM() string {
	c, _ := NewTestCA("Test Factory CA")
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// NewCAPEMOf is c as PEM.
func NewCAPEMOf(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// NewTestCA is a self-signed CA with its key, valid for a year.
func NewTestCA(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key := NewKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

// NewPublicKeyPEM is the PEM public key of a fresh ECDSA P-256 key.
func NewPublicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(NewKey().Public())
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// vendor is a vendor tenant per server whose devices hand out claim codes.
type vendor struct {
	mu              sync.Mutex
	tenant, product string
}

var vendors sync.Map // *Server → *vendor

// NewClaimCode registers a new manufactured device in a vendor tenant of
// this server and returns its claim code: any tenant can claim it.
func (s *Server) NewClaimCode(t testing.TB) string {
	t.Helper()
	v, _ := vendors.LoadOrStore(s, &vendor{})
	vd := v.(*vendor)
	vd.mu.Lock()
	if vd.tenant == "" {
		res := s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/tenants", Key: s.AdminKey,
			Body: map[string]any{"name": s.Unique("vendor"), "kind": "vendor"}})
		vd.tenant = res.Str("id")
		vd.product = s.CreateProduct(t, vd.tenant).ID
	}
	tenant, product := vd.tenant, vd.product
	vd.mu.Unlock()
	d := s.CreateDevice(t, tenant, product)
	res := s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/devices/" + d.ID + "/claim-code",
		Key: s.AdminKey, Tenant: tenant})
	return res.Str("code")
}

// IdentityFixture is one of each identity resource in a tenant.
type IdentityFixture struct {
	// CertSerial is a certificate of Enrolled's device.
	CertSerial string
	Enrolled   *EnrolledDevice
	// CAID is a manufacturer CA registered for the product given.
	CAID string
	// BootstrapTokenID is an unused bootstrap token.
	BootstrapTokenID string
	// ClaimCode is an unused claim code of another (vendor) tenant's device.
	ClaimCode string
}

// NewIdentityFixture makes, in tenantID: a manufacturer CA for caProduct,
// an unused bootstrap token, a device token for tokenDevice, a certificate
// for enrollDevice (enrolled with a bootstrap token, which moves it to
// provisioned), and a claim code of a vendor's device.
func (s *Server) NewIdentityFixture(t testing.TB, tenantID, caProduct string, tokenDevice, enrollDevice model.Device) IdentityFixture {
	t.Helper()
	var f IdentityFixture
	res := s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/products/" + caProduct + "/manufacturer-cas",
		Key: s.AdminKey, Tenant: tenantID, Body: map[string]any{"certificate": NewCAPEM(), "name": "fixture factory"}})
	f.CAID = res.Str("id")
	res = s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/bootstrap-tokens", Key: s.AdminKey,
		Tenant: tenantID, Body: map[string]any{"name": "fixture"}})
	f.BootstrapTokenID = res.Str("id")
	s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/devices/" + tokenDevice.ID + "/token",
		Key: s.AdminKey, Tenant: tenantID})
	f.Enrolled = s.EnrollWithToken(t, tenantID, enrollDevice.ProductID, enrollDevice.Serial)
	f.CertSerial = f.Enrolled.Serial
	f.ClaimCode = s.NewClaimCode(t)
	return f
}
