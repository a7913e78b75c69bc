package platform_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/config"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestMUDFromCertificate: a device enrolls; its certificate carries its
// product's MUD URL; the product has no MUD profile, so the platform
// reads the file from security.mud_dir and imports it.
func TestMUDFromCertificate(t *testing.T) {
	dir := t.TempDir()
	mud, err := os.ReadFile("../netpolicy/testdata/lightbulb.mud.json")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "lighting.example.com"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "lighting.example.com", "lightbulb2000"), mud, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := testserver.Start(t, testserver.Options{Configure: func(c *config.Config) { c.Security.MUDDir = dir }})
	ten := srv.CreateTenant(t, "lights")
	key := ten.Admin.Secret
	prod := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/products", Key: key,
		Body: map[string]any{"vendor": "Example Lighting", "model": "Lightbulb 2000", "mud_url": "https://lighting.example.com/lightbulb2000"}}).Str("id")
	if r := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: testserver.APIPrefix + "/products/" + prod + "/mud", Key: key}); r.Status != http.StatusNotFound {
		t.Fatalf("a profile before any device presented the URL: %s", r)
	}
	dev := srv.EnrollWithToken(t, ten.ID, prod, srv.Unique("SN"))
	testserver.Eventually(t, 10*time.Second, func() bool {
		r := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: testserver.APIPrefix + "/products/" + prod + "/mud", Key: key})
		return r.Status == http.StatusOK && r.Str("mud_url") == "https://lighting.example.com/lightbulb2000"
	}, "the MUD file named in %s's certificate was not imported", dev.DeviceID)
}
