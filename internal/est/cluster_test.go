package est_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/testutil/natstest"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestTwoNodes runs two platform nodes on one PostgreSQL database and one
// NATS cluster, sharing the CA (its folder copied, as an operator does). A
// device enrolled through one node is known to the other; a revocation or
// a suspension made through one node cuts the device off on the other.
func TestTwoNodes(t *testing.T) {
	t.Parallel()
	natstest.Require(t)
	db := pgtest.URL(t)
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "idtest-" + hex.EncodeToString(b)
	var pkiDir string
	node := func() *testserver.Server {
		return testserver.Start(t, testserver.Options{Configure: func(c *config.Config) {
			c.Store.URL = db
			c.Bus.URL = natstest.URL()
			c.Bus.Prefix = prefix
			if pkiDir != "" {
				testserver.CopyFiles(t, pkiDir, filepath.Join(c.DataDir, platform.PKIDir))
				// The platform's first admin key exists already (node a made it).
				key, err := os.ReadFile(filepath.Join(filepath.Dir(pkiDir), platform.AdminKeyFile))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(c.DataDir, platform.AdminKeyFile), key, 0o600)
			}
		}})
	}
	a := node()
	pkiDir = filepath.Join(a.Platform.Config.DataDir, platform.PKIDir)
	bn := node()
	if a.Platform.Identity.CA().Fingerprint() != bn.Platform.Identity.CA().Fingerprint() {
		t.Fatal("the nodes do not share the CA")
	}
	ctx := context.Background()
	tenant := createTenant(t, a, "enterprise")
	product := a.CreateProduct(t, tenant).ID
	dev := a.EnrollWithToken(t, tenant, product, "N-0001")
	chain := []*x509.Certificate{dev.Cert}

	var mu sync.Mutex
	var cut []identity.CutOff
	bn.Platform.Authenticator.OnCutOff(func(c identity.CutOff) { mu.Lock(); cut = append(cut, c); mu.Unlock() })
	if who, err := bn.Platform.Authenticator.AuthenticateCert(ctx, chain); err != nil || who.TenantID != tenant {
		t.Fatalf("node b: %+v, %v", who, err)
	}
	// Renewal on node b of a certificate node a issued.
	if _, err := bn.ESTClient(&dev.TLS).SimpleReenroll(ctx, testserver.NewCSR(testserver.NewKey(), "")); err != nil {
		t.Fatalf("renewing on the other node: %v", err)
	}

	// Revoked through node a: node b refuses it once the event arrives.
	a.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/certificates/" + dev.Serial + "/revoke",
		Key: a.AdminKey, Tenant: tenant, Body: map[string]any{"reason": "key_compromise"}})
	eventually(t, "node b refuses the certificate revoked on node a", func() bool {
		_, err := bn.Platform.Authenticator.AuthenticateCert(ctx, chain)
		return errors.Is(err, identity.ErrRevoked)
	})
	eventually(t, "node b cuts the device off", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range cut {
			if c.CertSerial == dev.Serial {
				return true
			}
		}
		return false
	})
	// Node b's CRL lists it too.
	eventually(t, "node b's CRL lists the revocation", func() bool {
		res := bn.Do(t, testserver.Req{Method: http.MethodGet, Path: "/pki/crl"})
		crl, err := x509.ParseRevocationList(res.Raw)
		if err != nil {
			return false
		}
		for _, e := range crl.RevokedCertificateEntries {
			if identity.SerialHex(e.SerialNumber) == dev.Serial {
				return true
			}
		}
		return false
	})

	// Suspended through node b: node a refuses the device's other certificate.
	other := a.EnrollWithToken(t, tenant, product, "N-0002")
	if _, err := a.Platform.Authenticator.AuthenticateCert(ctx, []*x509.Certificate{other.Cert}); err != nil {
		t.Fatal(err)
	}
	transition(t, bn, tenant, other.DeviceID, "active")
	transition(t, bn, tenant, other.DeviceID, "suspended")
	eventually(t, "node a refuses the device suspended on node b", func() bool {
		_, err := a.Platform.Authenticator.AuthenticateCert(ctx, []*x509.Certificate{other.Cert})
		return errors.Is(err, identity.ErrNotAllowed)
	})
}
