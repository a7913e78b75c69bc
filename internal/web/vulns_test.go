package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestVulnerabilityPages lists the advisories that affect firmware the
// fleet runs and, per advisory, the exposed devices.
func TestVulnerabilityPages(t *testing.T) {
	w := newWalls(t)
	srv, key := w.srv, w.a.Admin.Secret
	product := srv.CreateProduct(t, w.a.ID)
	sbom := func(version string) map[string]any {
		return map[string]any{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
			"components": []map[string]any{{"type": "library", "name": "golang.org/x/net", "version": version,
				"purl": "pkg:golang/golang.org/x/net@" + version}}}
	}
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: testserver.APIPrefix + "/products/" + product.ID + "/sboms/1.0.0",
		Key: key, Body: sbom("v0.1.0")})
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: testserver.APIPrefix + "/products/" + product.ID + "/sboms/2.0.0",
		Key: key, Body: sbom("v0.17.0")})
	adv := srv.Unique("STW-WEB")
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/advisories", Key: key,
		Body: []any{map[string]any{"id": adv, "modified": "2024-01-01T00:00:00Z", "summary": "a fixture advisory",
			"affected": []map[string]any{{"package": map[string]any{"ecosystem": "Go", "name": "golang.org/x/net"},
				"ranges": []map[string]any{{"type": "SEMVER", "events": []map[string]any{{"introduced": "0"}, {"fixed": "0.4.0"}}}}}}}}})
	old := srv.CreateDevice(t, w.a.ID, product.ID, testserver.DeviceOpts{Serial: "VULN-OLD", FirmwareVersion: "1.0.0"})
	srv.CreateDevice(t, w.a.ID, product.ID, testserver.DeviceOpts{Serial: "VULN-NEW", FirmwareVersion: "2.0.0"})

	c := newClient(t, srv.URL)
	c.signIn(w.viewerA, password)
	p := c.get("/vulnerabilities")
	if p.status != http.StatusOK || !strings.Contains(p.body, `href="/vulnerabilities/`+adv+`"`) ||
		!strings.Contains(p.body, "golang.org/x/net@v0.1.0") {
		t.Fatalf("the vulnerabilities page (%d) does not list %s on the old firmware:\n%s", p.status, adv, p.body)
	}
	p = c.get("/vulnerabilities/" + adv)
	if p.status != http.StatusOK || !strings.Contains(p.body, "/devices/"+old.ID) || strings.Contains(p.body, "VULN-NEW") ||
		!strings.Contains(p.body, "<code>2.0.0</code>") {
		t.Fatalf("the advisory page (%d) should list VULN-OLD only, with 2.0.0 as the fixed firmware:\n%s", p.status, p.body)
	}
	if p := c.get("/vulnerabilities/NO-SUCH-ADVISORY"); p.status != http.StatusNotFound {
		t.Fatalf("an unknown advisory: %d, want 404", p.status)
	}
	// Another tenant sees none of it.
	b := newClient(t, srv.URL)
	b.signIn(w.adminB, password)
	if p := b.get("/vulnerabilities"); strings.Contains(p.body, adv) {
		t.Fatal("tenant B sees tenant A's advisory")
	}
}
