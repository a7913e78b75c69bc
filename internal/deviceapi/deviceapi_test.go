package deviceapi_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/deviceapi"
	"github.com/steward-iot/steward/internal/est"
	"github.com/steward-iot/steward/internal/ota/tufmeta"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// device is an HTTPS client of the enrollment listener presenting cert
// (nil: none).
func device(srv *testserver.Server, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Platform.Identity.CA().Anchor())
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) reason(t *testing.T) string {
	t.Helper()
	var p est.Problem
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatalf("not a problem (%d): %s", a.status, a.body)
	}
	return p.Reason
}

func get(t *testing.T, srv *testserver.Server, c *http.Client, path string, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.Platform.ESTURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, b}
}

// foreignCert is a client certificate from a CA the platform does not know.
func foreignCert(t *testing.T) *tls.Certificate {
	ca, caKey := testserver.NewTestCA("Other CA")
	key := testserver.NewKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "intruder"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestDeviceRoutes(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	tn := srv.CreateTenant(t, "device-routes")
	p := srv.CreateProduct(t, tn.ID)
	admin := tn.Admin.Secret
	d1 := srv.EnrollWithToken(t, tn.ID, p.ID, srv.Unique("SN"))
	d2 := srv.EnrollWithToken(t, tn.ID, p.ID, srv.Unique("SN"))
	c1, c2 := device(srv, &d1.TLS), device(srv, &d2.TLS)

	// Before the vendor stored a root there is nothing to pin.
	if a := get(t, srv, c1, deviceapi.PathRoots, nil); a.status != http.StatusNotFound || a.reason(t) != "no_vendor_root" {
		t.Fatalf("roots before the vendor root: %d %s", a.status, a.body)
	}
	vendor := srv.NewVendor(t, tn.ID, admin)
	image := make([]byte, 300_000)
	for i := range image {
		image[i] = byte(i * 7)
	}
	art := vendor.Release(t, p.ID, "2.0.0", image)

	t.Run("authentication", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			c      *http.Client
			status int
			reason string
		}{
			{"no client certificate", device(srv, nil), http.StatusUnauthorized, "no_credential"},
			{"certificate of another CA", device(srv, foreignCert(t)), http.StatusUnauthorized, "unknown_certificate"},
		} {
			for _, path := range []string{deviceapi.PathMetadata, deviceapi.PathRoots, deviceapi.PathContentPrefix + art + "/content"} {
				if a := get(t, srv, tc.c, path, nil); a.status != tc.status || a.reason(t) != tc.reason {
					t.Errorf("%s, %s: %d %s", tc.name, path, a.status, a.body)
				}
			}
		}
	})

	// Roots to pin: the first vendor root as stored, the director root and
	// the hardware ID the director matches.
	var roots deviceapi.Roots
	a := get(t, srv, c1, deviceapi.PathRoots, nil)
	if a.status != http.StatusOK {
		t.Fatalf("roots: %d %s", a.status, a.body)
	}
	json.Unmarshal(a.body, &roots)
	if !bytes.Equal(roots.VendorRoot, vendor.Root) || roots.DeviceID != d1.DeviceID || roots.HardwareID != p.ID {
		t.Fatalf("roots: %+v", roots)
	}
	if _, err := tufmeta.CheckRoot(nil, roots.DirectorRoot, time.Now()); err != nil {
		t.Fatalf("director root: %v", err)
	}

	if a := get(t, srv, c1, deviceapi.PathMetadata, nil); a.status != http.StatusNotFound || a.reason(t) != "no_assignment" {
		t.Fatalf("metadata without an assignment: %d %s", a.status, a.body)
	}
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: "/api/v1/devices/" + d1.DeviceID + "/ota/assignment", Key: admin,
		Body: map[string]any{"artifact_id": art}})

	t.Run("metadata verifies", func(t *testing.T) {
		a := get(t, srv, c1, deviceapi.PathMetadata+"?vendor_root_version=1", nil)
		if a.status != http.StatusOK {
			t.Fatalf("metadata: %d %s", a.status, a.body)
		}
		var b tufmeta.Bundle
		json.Unmarshal(a.body, &b)
		tr := tufmeta.Trusted{VendorRoot: roots.VendorRoot, DirectorRoot: roots.DirectorRoot}
		img, err := tufmeta.Verify(&tr, b, tufmeta.Device{ID: d1.DeviceID, HardwareID: roots.HardwareID, Version: "1.0.0"}, time.Now())
		if err != nil || img.Assignment.ArtifactID != art {
			t.Fatalf("verify: %v %+v", err, img)
		}
		if a := get(t, srv, c1, deviceapi.PathMetadata+"?vendor_root_version=x", nil); a.status != http.StatusBadRequest {
			t.Fatalf("bad vendor_root_version: %d %s", a.status, a.body)
		}
	})

	t.Run("content with resume", func(t *testing.T) {
		path := deviceapi.PathContentPrefix + art + "/content"
		full := get(t, srv, c1, path, nil)
		if full.status != http.StatusOK || !bytes.Equal(full.body, image) {
			t.Fatalf("whole image: %d, %d bytes", full.status, len(full.body))
		}
		etag := full.header.Get("ETag")
		part := get(t, srv, c1, path, map[string]string{"Range": "bytes=123456-", "If-Range": etag})
		if part.status != http.StatusPartialContent || !bytes.Equal(part.body, image[123456:]) {
			t.Fatalf("resumed: %d, %d bytes (%s)", part.status, len(part.body), part.header.Get("Content-Range"))
		}
		// A different image behind the name: the whole new content, not a tail.
		stale := get(t, srv, c1, path, map[string]string{"Range": "bytes=123456-", "If-Range": `"sha256:00"`})
		if stale.status != http.StatusOK || len(stale.body) != len(image) {
			t.Fatalf("stale If-Range: %d, %d bytes", stale.status, len(stale.body))
		}
		// Only the device's own assignment.
		if a := get(t, srv, c2, path, nil); a.status != http.StatusForbidden || a.reason(t) != "not_assigned" {
			t.Fatalf("another device's image: %d %s", a.status, a.body)
		}
		if a := get(t, srv, c1, deviceapi.PathContentPrefix+"art_nope/content", nil); a.status != http.StatusForbidden {
			t.Fatalf("unassigned artifact: %d %s", a.status, a.body)
		}
	})

	transition := func(id, to string) {
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: "/api/v1/devices/" + id + "/transitions", Key: admin,
			Body: map[string]any{"to": to, "reason": "device routes test"}})
	}
	t.Run("quarantined is served, suspended and revoked are refused", func(t *testing.T) {
		transition(d1.DeviceID, "active")
		transition(d1.DeviceID, "quarantined")
		testserver.Eventually(t, 10*time.Second, func() bool {
			return get(t, srv, c1, deviceapi.PathMetadata, nil).status == http.StatusOK
		}, "a quarantined device gets its update metadata")
		if a := get(t, srv, c1, deviceapi.PathContentPrefix+art+"/content", map[string]string{"Range": "bytes=0-99"}); a.status != http.StatusPartialContent {
			t.Fatalf("quarantined download: %d", a.status)
		}
		transition(d1.DeviceID, "suspended")
		testserver.Eventually(t, 10*time.Second, func() bool {
			a := get(t, srv, c1, deviceapi.PathMetadata, nil)
			return a.status == http.StatusForbidden && a.reason(t) == "device_state"
		}, "a suspended device is refused with 403 device_state")

		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: "/api/v1/certificates/" + d2.Serial + "/revoke", Key: admin,
			Body: map[string]any{"reason": "key_compromise"}})
		testserver.Eventually(t, 10*time.Second, func() bool {
			a := get(t, srv, c2, deviceapi.PathRoots, nil)
			return a.status == http.StatusUnauthorized && a.reason(t) == "certificate_revoked"
		}, "a revoked certificate is refused with 401 certificate_revoked")
	})

	if a := get(t, srv, c1, "/device/v1/nothing", nil); a.status != http.StatusNotFound || !strings.Contains(string(a.body), "no such device route") {
		t.Fatalf("unknown route: %d %s", a.status, a.body)
	}
}
