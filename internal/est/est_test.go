package est_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/est"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

const api = testserver.APIPrefix

func eachBackend(t *testing.T, fn func(t *testing.T, srv *testserver.Server)) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			fn(t, testserver.Start(t, testserver.Options{Postgres: backend == "postgres"}))
		})
	}
}

// logBuffer collects an edge's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// edge is a second EST listener over the platform's identity service with
// its own log, on an ephemeral port with real TLS, so a test can read what
// was logged.
type edge struct {
	url  string
	logs *logBuffer
	ca   *x509.Certificate
}

func newEdge(t *testing.T, srv *testserver.Server) *edge {
	t.Helper()
	logs := &logBuffer{}
	id := srv.Platform.Identity
	cert, err := id.CA().ServerCertificate([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(est.New(id, slog.New(slog.NewTextHandler(logs, nil))).Handler())
	ts.TLS = est.TLSConfig(cert)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return &edge{url: ts.URL, logs: logs, ca: id.CA().Anchor()}
}

func (e *edge) client(cert *tls.Certificate) *est.Client {
	pool := x509.NewCertPool()
	pool.AddCert(e.ca)
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &est.Client{BaseURL: e.url, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}}
}

// leaf signs a client certificate for key with ca (a factory certificate).
func leaf(ca *x509.Certificate, caKey crypto.Signer, key crypto.Signer, serial string, notBefore, notAfter time.Time) tls.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(notBefore.UnixNano()), Subject: pkix.Name{SerialNumber: serial, CommonName: serial},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	parent, signer := ca, caKey
	if ca == nil { // self-signed
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		panic(err)
	}
	c, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}
}

func problemOf(t *testing.T, err error) *est.ProblemError {
	t.Helper()
	var pe *est.ProblemError
	if !errors.As(err, &pe) {
		t.Fatalf("want a problem answer, got %v", err)
	}
	return pe
}

func token(t *testing.T, srv *testserver.Server, tenant string, body map[string]any) (id, secret string) {
	t.Helper()
	res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/bootstrap-tokens",
		Key: srv.AdminKey, Tenant: tenant, Body: body})
	return res.Str("id"), res.Str("token")
}

func transition(t *testing.T, srv *testserver.Server, tenant, device, to string) {
	t.Helper()
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + device + "/transitions",
		Key: srv.AdminKey, Tenant: tenant, Body: map[string]any{"to": to, "reason": "test"}})
}

func createTenant(t *testing.T, srv *testserver.Server, kind string) string {
	t.Helper()
	res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/tenants", Key: srv.AdminKey,
		Body: map[string]any{"name": srv.Unique(kind), "kind": kind}})
	return res.Str("id")
}

func auditActions(t *testing.T, srv *testserver.Server, tenant string) []string {
	t.Helper()
	recs, err := srv.Platform.Store.ListAudit(context.Background(), tenant, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Action)
	}
	return out
}

// eventually polls cond for up to 10 s (events travel through the outbox
// and the bus).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: did not happen within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEnrollmentMethods walks each way to an operational certificate over
// the platform's own EST listener, then renewal, revocation, lifecycle
// cut-offs and device tokens, on SQLite and PostgreSQL.
func TestEnrollmentMethods(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		ctx := context.Background()
		auth := srv.Platform.Authenticator
		var cutMu sync.Mutex
		var cuts []identity.CutOff
		auth.OnCutOff(func(c identity.CutOff) { cutMu.Lock(); cuts = append(cuts, c); cutMu.Unlock() })
		cutFor := func(device string) bool {
			cutMu.Lock()
			defer cutMu.Unlock()
			return slices.ContainsFunc(cuts, func(c identity.CutOff) bool { return c.DeviceID == device })
		}

		vendor := createTenant(t, srv, "vendor")
		home := createTenant(t, srv, "household")
		res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/products", Key: srv.AdminKey,
			Tenant: vendor, Body: map[string]any{"vendor": "Acme", "model": "Plug P1", "mud_url": "https://acme.example/mud/p1.json"}})
		product := res.Str("id")
		// The household's own product line (bootstrap tokens name products of their tenant).
		homeProduct := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/products", Key: srv.AdminKey,
			Tenant: home, Body: map[string]any{"vendor": "Home", "model": "Sensor S1", "mud_url": "https://acme.example/mud/p1.json"}}).Str("id")
		factoryCA, factoryKey := testserver.NewTestCA("Acme Factory CA")
		srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/products/" + product + "/manufacturer-cas",
			Key: srv.AdminKey, Tenant: vendor, Body: map[string]any{"certificate": testserver.NewCAPEMOf(factoryCA), "name": "line 1"}})

		// The vendor makes devices with claim codes; the household claims them.
		claim := func(serial string) (model.Device, string) {
			d := srv.CreateDevice(t, vendor, product, testserver.DeviceOpts{Serial: serial})
			code := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + d.ID + "/claim-code",
				Key: srv.AdminKey, Tenant: vendor}).Str("code")
			res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: srv.AdminKey,
				Tenant: home, Body: map[string]any{"code": strings.ToLower(code)}})
			if res.Str("state") != "claimed" || res.Str("tenant_id") != home {
				t.Fatalf("claimed device: %s", res)
			}
			return d, code
		}
		checkCert := func(t *testing.T, c *x509.Certificate, deviceID string) {
			t.Helper()
			if c.Subject.CommonName != deviceID || len(c.URIs) != 1 || c.URIs[0].String() != identity.DeviceURIPrefix+deviceID {
				t.Errorf("certificate names %q / %v, want device %s", c.Subject.CommonName, c.URIs, deviceID)
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || c.IsCA {
				t.Errorf("certificate usage: EKU %v, CA %v", c.ExtKeyUsage, c.IsCA)
			}
			if got := identity.MUDURL(c); got != "https://acme.example/mud/p1.json" {
				t.Errorf("MUD URL extension %q", got)
			}
			if d := c.NotAfter.Sub(c.NotBefore); d < 89*24*time.Hour || d > 91*24*time.Hour {
				t.Errorf("validity %s, want about 90 days", d)
			}
			pool := x509.NewCertPool()
			pool.AddCert(srv.Platform.Identity.CA().Anchor())
			inter := x509.NewCertPool()
			inter.AddCert(srv.Platform.Identity.CA().Cert)
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("certificate does not verify against the platform CA: %v", err)
			}
		}
		deviceState := func(tenant, id string) string {
			return srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + id, Key: srv.AdminKey,
				Tenant: tenant}).Str("state")
		}

		t.Run("cacerts", func(t *testing.T) {
			certs, err := srv.ESTClient(nil).CACerts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 2 || !certs[0].Equal(srv.Platform.Identity.CA().Cert) || !certs[1].Equal(srv.Platform.Identity.CA().Anchor()) {
				t.Fatalf("cacerts: %d certificates", len(certs))
			}
		})

		t.Run("factory certificate", func(t *testing.T) {
			d, _ := claim("F-0001")
			dkey := testserver.NewKey()
			fc := leaf(factoryCA, factoryKey, dkey, "F-0001", time.Now().Add(-time.Hour), time.Now().AddDate(10, 0, 0))
			opKey := testserver.NewKey()
			c, err := srv.ESTClient(&fc).SimpleEnroll(ctx, testserver.NewCSR(opKey, ""), "")
			if err != nil {
				t.Fatal(err)
			}
			checkCert(t, c, d.ID)
			if s := deviceState(home, d.ID); s != "provisioned" {
				t.Errorf("state after enrollment %s, want provisioned", s)
			}
			res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + d.ID + "/certificates",
				Key: srv.AdminKey, Tenant: home})
			items := res.Items()
			if len(items) != 1 || items[0]["serial"] != identity.SerialHex(c.SerialNumber) || items[0]["method"] != "factory" {
				t.Fatalf("certificate list: %s", res)
			}
			acts := auditActions(t, srv, home)
			for _, want := range []string{"device.claim", "device.transition", "certificate.issue"} {
				if !slices.Contains(acts, want) {
					t.Errorf("household audit trail lacks %s: %v", want, acts)
				}
			}
			if !slices.Contains(auditActions(t, srv, vendor), "device.transfer_out") {
				t.Errorf("vendor audit trail lacks the transfer")
			}
			who, err := auth.AuthenticateCert(ctx, []*x509.Certificate{c})
			if err != nil || who.TenantID != home || who.DeviceID != d.ID || who.Method != identity.MethodCertificate {
				t.Fatalf("AuthenticateCert: %+v, %v", who, err)
			}
			// The vendor no longer sees the device.
			srv.Must(t, http.StatusNotFound, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + d.ID, Key: srv.AdminKey, Tenant: vendor})
		})

		t.Run("uploaded factory key", func(t *testing.T) {
			dkey := testserver.NewKey()
			der, _ := x509.MarshalPKIXPublicKey(dkey.Public())
			pemKey := "-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString(der) + "\n-----END PUBLIC KEY-----\n"
			res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/products/" + product + "/device-keys",
				Key: srv.AdminKey, Tenant: vendor, Body: map[string]any{"devices": []map[string]any{{"serial": "K-0001", "public_key": pemKey}}}})
			item := res.Items()[0]
			if item["created"] != true {
				t.Fatalf("upload: %s", res)
			}
			devID := item["device_id"].(string)
			// Not claimed yet: refused.
			self := leaf(nil, nil, dkey, "K-0001", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
			_, err := srv.ESTClient(&self).SimpleEnroll(ctx, testserver.NewCSR(testserver.NewKey(), ""), "")
			if pe := problemOf(t, err); pe.Status != 403 || pe.Problem.Reason != identity.ReasonNotClaimed {
				t.Fatalf("enrolling an unclaimed device: %v", err)
			}
			transition(t, srv, vendor, devID, "claimed")
			c, err := srv.ESTClient(&self).SimpleEnroll(ctx, testserver.NewCSR(testserver.NewKey(), ""), "")
			if err != nil {
				t.Fatal(err)
			}
			checkCert(t, c, devID)
			rec, err := srv.Platform.Store.GetCertificate(ctx, vendor, identity.SerialHex(c.SerialNumber))
			if err != nil || rec.Method != model.EnrollPublicKey {
				t.Fatalf("record: %+v, %v", rec, err)
			}
		})

		t.Run("claim code", func(t *testing.T) {
			d, code := claim("C-0001")
			c, err := srv.ESTClient(nil).SimpleEnroll(ctx, testserver.NewCSR(testserver.NewKey(), ""), est.BasicClaim("C-0001", code))
			if err != nil {
				t.Fatal(err)
			}
			checkCert(t, c, d.ID)
			if s := deviceState(home, d.ID); s != "provisioned" {
				t.Errorf("state %s", s)
			}
		})

		var renewed *testserver.EnrolledDevice
		t.Run("bootstrap token, renewal", func(t *testing.T) {
			dev := srv.EnrollWithToken(t, home, homeProduct, "B-0001")
			checkCert(t, dev.Cert, dev.DeviceID)
			if s := deviceState(home, dev.DeviceID); s != "provisioned" {
				t.Errorf("state %s", s)
			}
			// Renew with a new key.
			newKey := testserver.NewKey()
			c, err := srv.ESTClient(&dev.TLS).SimpleReenroll(ctx, testserver.NewCSR(newKey, ""))
			if err != nil {
				t.Fatal(err)
			}
			checkCert(t, c, dev.DeviceID)
			renewed = testserver.Enrolled(c, newKey)
			old, _ := srv.Platform.Store.GetCertificate(ctx, home, dev.Serial)
			cur, _ := srv.Platform.Store.GetCertificate(ctx, home, renewed.Serial)
			if old.Successor != renewed.Serial || cur.Predecessor != dev.Serial || cur.Method != model.EnrollRenewal || old.Revoked() {
				t.Fatalf("renewal records: old %+v, new %+v", old, cur)
			}
			// Renewing with the same key works too.
			if _, err := srv.ESTClient(&renewed.TLS).SimpleReenroll(ctx, testserver.NewCSR(newKey, "")); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("revocation", func(t *testing.T) {
			if renewed == nil {
				t.Skip("needs the renewal")
			}
			if _, err := auth.AuthenticateCert(ctx, []*x509.Certificate{renewed.Cert}); err != nil {
				t.Fatal(err)
			}
			res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/certificates/" + renewed.Serial + "/revoke",
				Key: srv.AdminKey, Tenant: home, Body: map[string]any{"reason": "key_compromise", "note": "lost"}})
			if res.Str("revocation_reason") != "key_compromise" || res.Str("revoked_at") == "" {
				t.Fatalf("revoke: %s", res)
			}
			// Refused at once, on this node, without waiting for the bus.
			if _, err := auth.AuthenticateCert(ctx, []*x509.Certificate{renewed.Cert}); !errors.Is(err, identity.ErrRevoked) {
				t.Fatalf("AuthenticateCert of a revoked certificate: %v", err)
			}
			if !cutFor(renewed.DeviceID) {
				t.Errorf("no cut-off for the revoked certificate's device")
			}
			srv.Must(t, http.StatusConflict, testserver.Req{Method: http.MethodPost, Path: api + "/certificates/" + renewed.Serial + "/revoke",
				Key: srv.AdminKey, Tenant: home, Body: map[string]any{"reason": "superseded"}})
			// The CRL lists it with its reason.
			crlRes := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: "/pki/crl"})
			crl, err := x509.ParseRevocationList(crlRes.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(srv.Platform.Identity.CA().Cert); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range crl.RevokedCertificateEntries {
				if identity.SerialHex(e.SerialNumber) == renewed.Serial {
					found = e.ReasonCode == 1
				}
			}
			if !found {
				t.Fatalf("the CRL does not list %s as key compromise", renewed.Serial)
			}
			_, err = srv.ESTClient(&renewed.TLS).SimpleReenroll(ctx, testserver.NewCSR(testserver.NewKey(), ""))
			if pe := problemOf(t, err); pe.Status != 401 || pe.Problem.Reason != identity.ReasonCertRevoked {
				t.Fatalf("renewing a revoked certificate: %v", err)
			}
		})

		t.Run("lifecycle cut-off", func(t *testing.T) {
			dev := srv.EnrollWithToken(t, home, homeProduct, "L-0001")
			chain := []*x509.Certificate{dev.Cert}
			if _, err := auth.AuthenticateCert(ctx, chain); err != nil {
				t.Fatal(err)
			}
			transition(t, srv, home, dev.DeviceID, "active")
			transition(t, srv, home, dev.DeviceID, "suspended")
			eventually(t, "suspended device refused", func() bool {
				_, err := auth.AuthenticateCert(ctx, chain)
				return errors.Is(err, identity.ErrNotAllowed)
			})
			eventually(t, "cut-off of the suspended device", func() bool { return cutFor(dev.DeviceID) })
			transition(t, srv, home, dev.DeviceID, "active")
			eventually(t, "resumed device allowed", func() bool {
				_, err := auth.AuthenticateCert(ctx, chain)
				return err == nil
			})
			transition(t, srv, home, dev.DeviceID, "quarantined")
			if _, err := auth.AuthenticateCert(ctx, chain); err != nil {
				t.Fatalf("a quarantined device may connect (for updates): %v", err)
			}
			// Decommissioning retires the identity: certificates revoked.
			transition(t, srv, home, dev.DeviceID, "decommissioned")
			eventually(t, "certificate revoked after decommission", func() bool {
				c, err := srv.Platform.Store.GetCertificate(ctx, home, dev.Serial)
				return err == nil && c.Revoked() && c.RevocationReason == model.ReasonCessationOfOperation
			})
			// The authenticator learns it from the identity event that
			// follows the commit, as it did for the suspension above.
			eventually(t, "decommissioned device refused", func() bool {
				_, err := auth.AuthenticateCert(ctx, chain)
				return errors.Is(err, identity.ErrRevoked) || errors.Is(err, identity.ErrNotAllowed)
			})
		})

		t.Run("device token", func(t *testing.T) {
			d := srv.CreateDevice(t, home, homeProduct, testserver.DeviceOpts{State: model.StateProvisioned})
			res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + d.ID + "/token",
				Key: srv.AdminKey, Tenant: home})
			tok := res.Str("token")
			who, err := auth.AuthenticateToken(ctx, d.ID, tok)
			if err != nil || who.TenantID != home || who.Method != identity.MethodToken {
				t.Fatalf("AuthenticateToken: %+v, %v", who, err)
			}
			if _, err := auth.AuthenticateToken(ctx, d.ID, tok+"x"); !errors.Is(err, identity.ErrUnknownIdentity) {
				t.Fatalf("a wrong token: %v", err)
			}
			if _, err := auth.AuthenticateToken(ctx, "dev_other", tok); !errors.Is(err, identity.ErrUnknownIdentity) {
				t.Fatalf("the token for another device: %v", err)
			}
			srv.Must(t, http.StatusNoContent, testserver.Req{Method: http.MethodDelete, Path: api + "/devices/" + d.ID + "/token",
				Key: srv.AdminKey, Tenant: home})
			if _, err := auth.AuthenticateToken(ctx, d.ID, tok); !errors.Is(err, identity.ErrRevoked) {
				t.Fatalf("a revoked token: %v", err)
			}
			// A new token replaces the old one at once.
			tok2 := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + d.ID + "/token",
				Key: srv.AdminKey, Tenant: home}).Str("token")
			if _, err := auth.AuthenticateToken(ctx, d.ID, tok2); err != nil {
				t.Fatal(err)
			}
			if _, err := auth.AuthenticateToken(ctx, d.ID, tok); !errors.Is(err, identity.ErrUnknownIdentity) {
				t.Fatalf("the replaced token: %v", err)
			}
		})
	})
}

// TestRefusals sends each kind of bad enrollment. Each must be refused
// with a problem+json answer naming the reason, be logged, store nothing
// (no audit record anywhere, credentials still unused), and leave the
// server serving.
func TestRefusals(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		ctx := context.Background()
		e := newEdge(t, srv)
		tenant := createTenant(t, srv, "enterprise")
		product := srv.CreateProduct(t, tenant).ID
		factoryCA, factoryKey := testserver.NewTestCA("Line CA")
		srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/products/" + product + "/manufacturer-cas",
			Key: srv.AdminKey, Tenant: tenant, Body: map[string]any{"certificate": testserver.NewCAPEMOf(factoryCA)}})
		good := srv.EnrollWithToken(t, tenant, product, "GOOD-1")
		revoked := srv.EnrollWithToken(t, tenant, product, "REV-1")
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/certificates/" + revoked.Serial + "/revoke",
			Key: srv.AdminKey, Tenant: tenant, Body: map[string]any{"reason": "key_compromise"}})
		suspended := srv.EnrollWithToken(t, tenant, product, "SUS-1")
		transition(t, srv, tenant, suspended.DeviceID, "active")
		transition(t, srv, tenant, suspended.DeviceID, "suspended")

		// An operational certificate that expired: signed by the platform CA
		// in the past (a record is not even needed: expiry is checked first).
		oldKey := testserver.NewKey()
		expiredCert, err := srv.Platform.Identity.CA().IssueDevice(identity.DeviceCertRequest{DeviceID: good.DeviceID,
			PublicKey: oldKey.Public(), Validity: time.Hour, Now: time.Now().Add(-48 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		expired := testserver.Enrolled(expiredCert, oldKey)

		// A factory certificate of a registered CA that expired, and one of
		// a CA nobody registered.
		fkey := testserver.NewKey()
		expiredFactory := leaf(factoryCA, factoryKey, fkey, "FX-1", time.Now().Add(-72*time.Hour), time.Now().Add(-24*time.Hour))
		strangerCA, strangerKey := testserver.NewTestCA("Stranger CA")
		stranger := leaf(strangerCA, strangerKey, fkey, "FX-1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))

		// Tokens: one used, one expired (stored directly: the API refuses
		// to make one), one to use for the bad CSRs, which must stay unused.
		_, usedTok := token(t, srv, tenant, map[string]any{"product_id": product})
		if _, err := e.client(nil).SimpleEnroll(ctx, testserver.NewCSR(testserver.NewKey(), "USED-1"), "Bearer "+usedTok); err != nil {
			t.Fatal(err)
		}
		expiredTok := "stb_" + "expiredtok01" + "_" + strings.Repeat("a", 32)
		err = srv.Platform.Store.Update(ctx, func(tx store.Tx) error {
			sum := sha256Sum(expiredTok)
			return tx.CreateBootstrapToken(ctx, &model.BootstrapToken{ID: "btk_expired", TenantID: tenant, Prefix: "expiredtok01",
				Hash: sum, CreatedAt: time.Now().Add(-2 * time.Hour), CreatedBy: "test", ExpiresAt: time.Now().Add(-time.Hour)})
		})
		if err != nil {
			t.Fatal(err)
		}
		csrTokID, csrTok := token(t, srv, tenant, map[string]any{"product_id": product})

		// Claim codes: one claimed and enrolled (used), one never claimed.
		vendor := createTenant(t, srv, "vendor")
		vprod := srv.CreateProduct(t, vendor).ID
		mkCode := func(serial string) (string, string) {
			d := srv.CreateDevice(t, vendor, vprod, testserver.DeviceOpts{Serial: serial})
			return d.ID, srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + d.ID + "/claim-code",
				Key: srv.AdminKey, Tenant: vendor}).Str("code")
		}
		_, usedCode := mkCode("CC-USED")
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: srv.AdminKey, Tenant: tenant,
			Body: map[string]any{"code": usedCode}})
		if _, err := e.client(nil).SimpleEnroll(ctx, testserver.NewCSR(testserver.NewKey(), ""), est.BasicClaim("CC-USED", usedCode)); err != nil {
			t.Fatal(err)
		}
		_, freshCode := mkCode("CC-FRESH")

		newCSR := func() []byte { return testserver.NewCSR(testserver.NewKey(), "NEW-1") }
		badSig := newCSR()
		badSig[len(badSig)-3] ^= 0xff
		rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
		weak, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: "W-1"}}, rsaKey)
		p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
		weakCurve, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: "W-2"}}, p224)

		type call struct {
			renew  bool
			cert   *tls.Certificate
			auth   string
			csr    []byte
			rawCSR string // sent as is (not base64-encoded) when set
			ctype  string
		}
		cases := []struct {
			name   string
			call   call
			status int
			reason string
			want   string // in the detail (case-insensitive)
		}{
			{"no credential", call{csr: newCSR()}, 401, identity.ReasonNoCredential, "no credential"},
			{"no certificate to renew", call{renew: true, csr: newCSR()}, 401, identity.ReasonNoCredential, "client certificate"},
			{"certificate from another CA", call{cert: &stranger, csr: newCSR()}, 401, identity.ReasonUnknownCA, "manufacturer CA"},
			{"renewal with a certificate from another CA", call{renew: true, cert: &stranger, csr: newCSR()}, 401, identity.ReasonUnknownCA, "not issued by this platform"},
			{"revoked certificate", call{renew: true, cert: &revoked.TLS, csr: newCSR()}, 401, identity.ReasonCertRevoked, "revoked"},
			{"expired certificate", call{renew: true, cert: &expired.TLS, csr: newCSR()}, 401, identity.ReasonCertExpired, "expired"},
			{"expired factory certificate", call{cert: &expiredFactory, csr: newCSR()}, 401, identity.ReasonCertExpired, "expired"},
			{"operational certificate at simpleenroll", call{cert: &good.TLS, csr: newCSR()}, 403, identity.ReasonOperationalCert, "simplereenroll"},
			{"suspended device renewing", call{renew: true, cert: &suspended.TLS, csr: newCSR()}, 403, identity.ReasonDeviceState, "suspended"},
			{"bad CSR: garbage", call{auth: "Bearer " + csrTok, rawCSR: "this is not a CSR"}, 400, identity.ReasonBadCSR, "CSR"},
			{"bad CSR: base64 of garbage", call{auth: "Bearer " + csrTok, csr: []byte("0123456789abcdef")}, 400, identity.ReasonBadCSR, "PKCS#10"},
			{"bad CSR: empty", call{auth: "Bearer " + csrTok, rawCSR: " "}, 400, identity.ReasonBadCSR, "empty"},
			{"bad CSR: broken signature", call{auth: "Bearer " + csrTok, csr: badSig}, 400, identity.ReasonBadCSR, "signature"},
			{"bad CSR: RSA 1024", call{auth: "Bearer " + csrTok, csr: weak}, 400, identity.ReasonBadCSR, "2048"},
			{"bad CSR: P-224", call{auth: "Bearer " + csrTok, csr: weakCurve}, 400, identity.ReasonBadCSR, "P-224"},
			{"bad CSR: no serial for the token", call{auth: "Bearer " + csrTok, csr: testserver.NewCSR(testserver.NewKey(), "")}, 400, identity.ReasonBadCSR, "serial"},
			{"bad CSR: renewal", call{renew: true, cert: &good.TLS, rawCSR: "AAAA"}, 400, identity.ReasonBadCSR, "CSR"},
			{"wrong content type", call{auth: "Bearer " + csrTok, csr: newCSR(), ctype: "application/json"}, 415, "unsupported_media_type", "application/pkcs10"},
			{"reused bootstrap token", call{auth: "Bearer " + usedTok, csr: newCSR()}, 401, identity.ReasonTokenUsed, "already used"},
			{"expired bootstrap token", call{auth: "Bearer " + expiredTok, csr: newCSR()}, 401, identity.ReasonTokenExpired, "expired"},
			{"unknown bootstrap token", call{auth: "Bearer stb_aaaaaaaaaaaa_" + strings.Repeat("b", 32), csr: newCSR()}, 401, identity.ReasonBadToken, "not valid"},
			{"malformed bootstrap token", call{auth: "Bearer hello", csr: newCSR()}, 401, identity.ReasonBadToken, "not valid"},
			{"reused claim code", call{auth: est.BasicClaim("CC-USED", usedCode), csr: newCSR()}, 401, identity.ReasonClaimCodeUsed, "already used"},
			{"claim code before the claim", call{auth: est.BasicClaim("CC-FRESH", freshCode), csr: newCSR()}, 403, identity.ReasonNotClaimed, "claim"},
			{"claim code of another serial", call{auth: est.BasicClaim("CC-OTHER", usedCode), csr: newCSR()}, 401, identity.ReasonSerialMismatch, "serial"},
			{"wrong claim code", call{auth: est.BasicClaim("CC-FRESH", strings.Repeat("A", 24)), csr: newCSR()}, 401, identity.ReasonBadClaimCode, "claim code"},
			{"unknown authorization scheme", call{auth: "Digest x", csr: newCSR()}, 401, identity.ReasonNoCredential, "Digest"},
		}
		heads := func() []store.AuditHead {
			h, err := srv.Platform.Store.AuditHeads(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				before := heads()
				logBefore := len(e.logs.String())
				path := est.PathSimpleEnroll
				if c.call.renew {
					path = est.PathSimpleReenroll
				}
				body := c.call.rawCSR
				if body == "" {
					body = base64.StdEncoding.EncodeToString(c.call.csr)
				}
				req, _ := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(body))
				ct := c.call.ctype
				if ct == "" {
					ct = est.ContentTypeCSR
				}
				req.Header.Set("Content-Type", ct)
				if c.call.auth != "" {
					req.Header.Set("Authorization", c.call.auth)
				}
				resp, err := e.client(c.call.cert).HTTP.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status {
					t.Fatalf("want %d, got %d %s", c.status, resp.StatusCode, raw)
				}
				if got := resp.Header.Get("Content-Type"); got != "application/problem+json" {
					t.Errorf("Content-Type %q", got)
				}
				p := est.Problem{}
				if err := jsonUnmarshal(raw, &p); err != nil || p.Status != c.status || p.Reason != c.reason || p.Title == "" ||
					!strings.HasPrefix(p.Type, "https://") {
					t.Errorf("problem: %s (want reason %s)", raw, c.reason)
				}
				if !strings.Contains(strings.ToLower(p.Detail), strings.ToLower(c.want)) {
					t.Errorf("detail %q does not say %q", p.Detail, c.want)
				}
				logged := e.logs.String()[logBefore:]
				if !strings.Contains(logged, "enrollment refused") || !strings.Contains(logged, "reason="+c.reason) {
					t.Errorf("refusal not logged with its reason: %q", logged)
				}
				if after := heads(); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Errorf("the refusal changed the audit trail (something was stored)")
				}
			})
		}

		// The token the bad CSRs came with is still unused, and enrolls.
		bt, err := srv.Platform.Store.GetBootstrapToken(ctx, tenant, csrTokID)
		if err != nil || bt.UsedAt != nil {
			t.Fatalf("the bad CSRs consumed the token: %+v, %v", bt, err)
		}
		if _, err := e.client(nil).SimpleEnroll(ctx, newCSR(), "Bearer "+csrTok); err != nil {
			t.Fatalf("the server does not enroll after the refusals: %v", err)
		}
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: "/healthz"})

		// Reused claim code at the API: the second claim is refused.
		res := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/claims", Key: srv.AdminKey, Tenant: tenant,
			Body: map[string]any{"code": usedCode}})
		if res.Status != http.StatusConflict || !strings.Contains(res.Problem().Detail, "already used") {
			t.Fatalf("claiming twice: %s", res)
		}
	})
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}
