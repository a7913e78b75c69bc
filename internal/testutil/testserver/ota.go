package testserver

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward/internal/ota/tufmeta"
)

// Vendor signs a tenant's releases like a device maker does offline: one
// root key and one targets key, a root stored through the API, and each
// release a new targets version listing every image released so far.
type Vendor struct {
	s                   *Server
	tenantID, adminKey  string
	rootKey, targetsKey *tufmeta.Key
	Root                []byte // the vendor root as stored
	targets             *metadata.Metadata[metadata.TargetsType]
	version             int64
}

// NewVendor makes the vendor keys and stores the root for the tenant.
func (s *Server) NewVendor(t testing.TB, tenantID, adminKey string) *Vendor {
	t.Helper()
	v := &Vendor{s: s, tenantID: tenantID, adminKey: adminKey}
	var err error
	if v.rootKey, err = tufmeta.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	if v.targetsKey, err = tufmeta.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	rm, err := tufmeta.NewRoot(1, time.Now().AddDate(1, 0, 0), tufmeta.RoleKeys{Keys: []*metadata.Key{v.rootKey.Public}, Threshold: 1},
		tufmeta.RoleKeys{Keys: []*metadata.Key{v.targetsKey.Public}, Threshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := tufmeta.Sign(rm, v.rootKey); err != nil {
		t.Fatal(err)
	}
	if v.Root, err = tufmeta.Encode(rm); err != nil {
		t.Fatal(err)
	}
	s.Must(t, http.StatusOK, Req{Method: http.MethodPut, Path: APIPrefix + "/ota/vendor/root", Key: adminKey, Tenant: tenantID, Raw: v.Root})
	v.targets = tufmeta.NewTargets(1, time.Now().AddDate(0, 1, 0))
	return v
}

// Release uploads image as an artifact of version for productID (which is
// also its hardware ID) and signs new vendor targets listing it; it
// returns the artifact ID.
func (v *Vendor) Release(t testing.TB, productID, version string, image []byte) string {
	t.Helper()
	sum := sha256.Sum256(image)
	digest := hex.EncodeToString(sum[:])
	name := "fw-" + version + ".bin"
	art := v.s.Must(t, http.StatusCreated, Req{Method: http.MethodPost, Path: APIPrefix + "/artifacts", Key: v.adminKey, Tenant: v.tenantID,
		Body: map[string]any{"name": name, "version": version, "product_ids": []string{productID}, "hardware_ids": []string{productID}}}).Str("id")
	v.s.Must(t, http.StatusOK, Req{Method: http.MethodPut, Path: APIPrefix + "/artifacts/" + art + "/content", Key: v.adminKey, Tenant: v.tenantID,
		Raw: image, Header: map[string]string{"Content-Type": "application/octet-stream"}})
	v.version++
	v.targets.Signed.Version = v.version
	v.targets.Signatures = nil
	if err := tufmeta.AddTarget(v.targets, name, int64(len(image)), digest, tufmeta.ImageInfo{Version: version, HardwareIDs: []string{productID}}); err != nil {
		t.Fatal(err)
	}
	if err := tufmeta.Sign(v.targets, v.targetsKey); err != nil {
		t.Fatal(err)
	}
	body, err := tufmeta.Encode(v.targets)
	if err != nil {
		t.Fatal(err)
	}
	v.s.Must(t, http.StatusOK, Req{Method: http.MethodPut, Path: APIPrefix + "/ota/vendor/targets", Key: v.adminKey, Tenant: v.tenantID, Raw: body})
	return art
}
