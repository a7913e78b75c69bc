package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota/tufmeta"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// otaFixture is the fixture's update resources: an artifact described
// without content (so an upload to it succeeds once), an uploaded one, the
// vendor's keys with root and targets stored, and an assignment of the
// uploaded image to the fixture's device.
type otaFixture struct {
	artifactID string
	uploadedID string
	uploaded   model.Artifact
	rootKey    *tufmeta.Key
	targetsKey *tufmeta.Key
	t          testing.TB // the test that filled the fixture, for validBody
	firstRoot  []byte     // the tenant's vendor root v1, as a device trusts it
	campaignID string     // a running campaign of the uploaded image asking consent for the fixture's devices
	pausedID   string     // a paused one (what resumeCampaign aims at)
}

func (f *fixture) fillOTA(t *testing.T) {
	t.Helper()
	f.ota.t = t
	key := f.tenant.Admin.Secret
	res := f.srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/artifacts", Key: key,
		Body: artifactBody(f.product.ID, "1.0.0")})
	f.ota.artifactID = res.Str("id")
	f.ota.uploadedID = newArtifact(t, f.srv, f.tenant, f.product.ID, []byte("fixture image"))
	f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/artifacts/" + f.ota.uploadedID, Key: key}).Into(t, &f.ota.uploaded)
	// A refill keeps the vendor's keys: the stored root names them.
	if f.ota.rootKey == nil {
		var err error
		if f.ota.rootKey, err = tufmeta.GenerateKey(); err != nil {
			t.Fatal(err)
		}
		if f.ota.targetsKey, err = tufmeta.GenerateKey(); err != nil {
			t.Fatal(err)
		}
		f.ota.firstRoot = f.vendorRoot(t)
		f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/ota/vendor/root", Key: key, Raw: f.ota.firstRoot})
	}
	f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/ota/vendor/targets", Key: key, Raw: f.vendorTargets(t)})
	f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/devices/" + f.device.ID + "/ota/assignment", Key: key,
		Body: map[string]any{"artifact_id": f.ota.uploadedID}})
	campaign := func(name string) string {
		return f.srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns", Key: key,
			Body: map[string]any{"name": name, "artifact_id": f.ota.uploadedID, "dynamic": true, "require_consent": true, "wave_size": 10,
				"query": map[string]any{"product_id": f.product.ID, "states": []string{"manufactured", "claimed", "active"}}}}).Str("id")
	}
	f.ota.pausedID = campaign("fixture rollout, paused")
	f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns/" + f.ota.pausedID + "/pause", Key: key,
		Body: map[string]any{"reason": "fixture"}})
	f.ota.campaignID = campaign("fixture rollout")
	// The scheduler starts the first wave on its own: wait until it asked
	// the owner about the fixture's device, so nothing changes later.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var cd model.CampaignDevice
		res := f.srv.Do(t, testserver.Req{Method: http.MethodGet, Path: api + "/campaigns/" + f.ota.campaignID + "/devices?limit=1000", Key: key})
		var list struct{ Items []model.CampaignDevice }
		res.Into(t, &list)
		for _, d := range list.Items {
			if d.DeviceID == f.device.ID {
				cd = d
			}
		}
		if cd.Consent == model.ConsentAsked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fixture campaign never asked consent for the fixture device: %+v", list.Items)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// currentVersion reads the version of the tenant's stored signed document (0: none).
func (f *fixture) currentVersion(t testing.TB, path string) int64 {
	res := f.srv.Do(t, testserver.Req{Method: http.MethodGet, Path: api + path, Key: f.tenant.Admin.Secret})
	if res.Status == http.StatusNotFound {
		return 0
	}
	var doc struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	res.Into(t, &doc)
	return doc.Signed.Version
}

// vendorRoot is the tenant's next vendor root, signed by the fixture's root key.
func (f *fixture) vendorRoot(t testing.TB) []byte {
	t.Helper()
	m, err := tufmeta.NewRoot(f.currentVersion(t, "/ota/vendor/root")+1, time.Now().AddDate(1, 0, 0),
		tufmeta.RoleKeys{Keys: []*metadata.Key{f.ota.rootKey.Public}, Threshold: 1},
		tufmeta.RoleKeys{Keys: []*metadata.Key{f.ota.targetsKey.Public}, Threshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	return signDoc(t, m, f.ota.rootKey)
}

// vendorTargets is the tenant's next vendor targets, listing the uploaded artifact.
func (f *fixture) vendorTargets(t testing.TB) []byte {
	t.Helper()
	a := f.ota.uploaded
	m := tufmeta.NewTargets(f.currentVersion(t, "/ota/vendor/targets")+1, time.Now().AddDate(0, 3, 0))
	if err := tufmeta.AddTarget(m, a.Name, a.Length, a.SHA256, tufmeta.ImageInfo{Version: a.Version, HardwareIDs: a.HardwareIDs}); err != nil {
		t.Fatal(err)
	}
	return signDoc(t, m, f.ota.targetsKey)
}

func signDoc[T metadata.Roles](t testing.TB, m *metadata.Metadata[T], keys ...*tufmeta.Key) []byte {
	t.Helper()
	if err := tufmeta.Sign(m, keys...); err != nil {
		t.Fatal(err)
	}
	b, err := tufmeta.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func artifactBody(productID, version string) map[string]any {
	return map[string]any{"name": "fw-" + version + ".bin", "version": version, "product_ids": []string{productID},
		"hardware_ids": []string{"board-a", productID}, "release_notes": "fixes", "sbom_ref": version}
}

func (f *fixture) otaBody(opID string) (any, bool) {
	switch opID {
	case "createArtifact":
		return artifactBody(f.product.ID, "2.0.0"), true
	case "uploadArtifactContent":
		return "firmware image bytes", true
	case "putVendorRoot":
		return json.RawMessage(f.vendorRoot(f.ota.t)), true
	case "putVendorTargets":
		return json.RawMessage(f.vendorTargets(f.ota.t)), true
	case "assignUpdate":
		return map[string]any{"artifact_id": f.ota.uploadedID}, true
	case "createCampaign":
		return map[string]any{"name": f.srv.Unique("campaign"), "artifact_id": f.ota.uploadedID, "query": map[string]any{"product_id": f.product.ID},
			"canary": 1, "wave_size": 10, "wave_interval": "1m"}, true
	case "pauseCampaign", "resumeCampaign", "cancelCampaign":
		return map[string]any{"reason": "test"}, true
	case "consentUpdate":
		return map[string]any{"grant": true}, true
	case "invalidateArtifact":
		return map[string]any{"reason": "found bad"}, true
	}
	return nil, false
}

func (o otaFixture) secrets() []string {
	if o.artifactID == "" {
		return nil
	}
	return []string{o.artifactID, o.uploadedID, o.rootKey.ID, o.targetsKey.ID, o.campaignID, o.pausedID}
}

// newArtifact describes an artifact and uploads content into it.
func newArtifact(t *testing.T, srv *testserver.Server, tn *testserver.Tenant, productID string, content []byte) string {
	t.Helper()
	res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/artifacts", Key: tn.Admin.Secret,
		Body: artifactBody(productID, "1.4.2")})
	id := res.Str("id")
	sum := sha256.Sum256(content)
	res = srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/artifacts/" + id + "/content?sha256=" + hex.EncodeToString(sum[:]),
		Key: tn.Admin.Secret, Raw: content, Header: map[string]string{"Content-Type": "application/octet-stream"}})
	if res.Str("sha256") != hex.EncodeToString(sum[:]) || res.JSON.(map[string]any)["length"] != float64(len(content)) {
		t.Fatalf("upload answer: %s", res)
	}
	return id
}

func TestArtifactUpload(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		tn := srv.CreateTenant(t, "uploads")
		p := srv.CreateProduct(t, tn.ID)
		key := tn.Admin.Secret
		srv.Platform.OTA.MaxArtifactBytes = 1 << 20
		content := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		id := newArtifact(t, srv, tn, p.ID, content)

		create := func() string {
			return srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/artifacts", Key: key,
				Body: artifactBody(p.ID, "9.9.9")}).Str("id")
		}
		put := func(id, query string, body []byte) *testserver.Resp {
			return srv.Do(t, testserver.Req{Method: http.MethodPut, Path: api + "/artifacts/" + id + "/content" + query, Key: key,
				Raw: body, Header: map[string]string{"Content-Type": "application/octet-stream"}})
		}
		fresh := create()
		for _, tc := range []struct {
			name   string
			id     string
			query  string
			body   []byte
			status int
		}{
			{"again", id, "", []byte("other"), http.StatusConflict},
			{"too large", fresh, "", make([]byte, 1<<20+1), http.StatusRequestEntityTooLarge},
			{"wrong digest", fresh, "?sha256=" + strings.Repeat("0", 64), []byte("x"), http.StatusUnprocessableEntity},
			{"not a digest", fresh, "?sha256=xyz", []byte("x"), http.StatusUnprocessableEntity},
			{"unknown artifact", "art_nope", "", []byte("x"), http.StatusNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if res := put(tc.id, tc.query, tc.body); res.Status != tc.status {
					t.Fatalf("want %d, got %s", tc.status, res)
				}
			})
		}
		// Refusals changed nothing: the fresh artifact still takes content.
		res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/artifacts/" + fresh, Key: key})
		if res.Str("sha256") != "" {
			t.Fatalf("a refused upload left content: %s", res)
		}
		if res := put(fresh, "", content); res.Status != http.StatusOK {
			t.Fatalf("upload after refusals: %s", res)
		}
		// Same content, same blob; deleting one artifact keeps the other's content.
		srv.Must(t, http.StatusNoContent, testserver.Req{Method: http.MethodDelete, Path: api + "/artifacts/" + fresh, Key: key})
		got := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/artifacts/" + id + "/content", Key: key})
		if !bytes.Equal(got.Raw, content) {
			t.Fatalf("content after deleting a twin: %d bytes", len(got.Raw))
		}
		// Not downloadable before upload.
		if res := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: api + "/artifacts/" + create() + "/content", Key: key}); res.Status != http.StatusConflict {
			t.Fatalf("download without content: %s", res)
		}
	})
}

// TestArtifactDownloadResume cuts a download midway and resumes it with
// Range and If-Range; the joined parts hash to the artifact's SHA-256.
func TestArtifactDownloadResume(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		tn := srv.CreateTenant(t, "resume")
		p := srv.CreateProduct(t, tn.ID)
		content := make([]byte, 3<<20+17)
		for i := range content {
			content[i] = byte(i*7 + i>>11)
		}
		id := newArtifact(t, srv, tn, p.ID, content)
		url := srv.URL + api + "/artifacts/" + id + "/content"
		get := func(ctx context.Context, hdr map[string]string) *http.Response {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.Header.Set("Authorization", "Bearer "+tn.Admin.Secret)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			res, err := srv.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}

		// First attempt: read about a third, then the connection is cut.
		ctx, cancel := context.WithCancel(t.Context())
		res := get(ctx, nil)
		etag := res.Header.Get("ETag")
		if res.StatusCode != http.StatusOK || etag == "" || res.Header.Get("Accept-Ranges") != "bytes" {
			t.Fatalf("first download: %s, ETag %q, Accept-Ranges %q", res.Status, etag, res.Header.Get("Accept-Ranges"))
		}
		part := make([]byte, len(content)/3)
		if _, err := io.ReadFull(res.Body, part); err != nil {
			t.Fatal(err)
		}
		cancel()
		res.Body.Close()

		// Resume from where it stopped, only if the content is unchanged.
		res = get(t.Context(), map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(part)), "If-Range": etag})
		defer res.Body.Close()
		want := fmt.Sprintf("bytes %d-%d/%d", len(part), len(content)-1, len(content))
		if res.StatusCode != http.StatusPartialContent || res.Header.Get("Content-Range") != want {
			t.Fatalf("resume: %s, Content-Range %q, want %q", res.Status, res.Header.Get("Content-Range"), want)
		}
		rest, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		h.Write(part)
		h.Write(rest)
		if got, want := `"sha256:`+hex.EncodeToString(h.Sum(nil))+`"`, etag; got != want {
			t.Fatalf("resumed content hashes to %s, ETag says %s", got, want)
		}

		// A stale If-Range gets the whole image again; a matching
		// If-None-Match gets 304.
		stale := get(t.Context(), map[string]string{"Range": "bytes=10-", "If-Range": `"sha256:old"`})
		stale.Body.Close()
		if stale.StatusCode != http.StatusOK {
			t.Fatalf("stale If-Range: %s", stale.Status)
		}
		nm := get(t.Context(), map[string]string{"If-None-Match": etag})
		nm.Body.Close()
		if nm.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match: %s", nm.Status)
		}
	})
}

// TestUpdateMetadata walks the signed metadata through the API: the vendor
// root and its rotation, targets checked against the artifacts, the
// director's assignment, and a bundle a device verifies with tufmeta.
func TestUpdateMetadata(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFixture(t, srv, "metadata", sink(t))
		key := f.tenant.Admin.Secret
		put := func(path string, body []byte) *testserver.Resp {
			return srv.Do(t, testserver.Req{Method: http.MethodPut, Path: api + path, Key: key, Raw: body})
		}
		wantRefusal := func(res *testserver.Resp, msg string) {
			t.Helper()
			if res.Status != http.StatusUnprocessableEntity || !strings.Contains(res.Problem().Detail, msg) {
				t.Fatalf("want 422 containing %q, got %s", msg, res)
			}
		}

		// Root rotation: the next version signed by the old and new keys.
		stranger, _ := tufmeta.GenerateKey()
		next := func(signers ...*tufmeta.Key) []byte {
			m, _ := tufmeta.NewRoot(f.currentVersion(t, "/ota/vendor/root")+1, time.Now().AddDate(1, 0, 0),
				tufmeta.RoleKeys{Keys: []*metadata.Key{stranger.Public}, Threshold: 1},
				tufmeta.RoleKeys{Keys: []*metadata.Key{f.ota.targetsKey.Public}, Threshold: 1})
			return signDoc(t, m, signers...)
		}
		wantRefusal(put("/ota/vendor/root", next(stranger)), "not signed by the keys of v1")
		wantRefusal(put("/ota/vendor/root", next(f.ota.rootKey)), "not signed by its own keys")
		wantRefusal(put("/ota/vendor/root", []byte(`{"signed": 1}`)), "malformed metadata")
		res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/ota/vendor/root", Key: key, Raw: next(f.ota.rootKey, stranger)})
		if res.JSON.(map[string]any)["version"] != float64(2) {
			t.Fatalf("rotation: %s", res)
		}
		f.ota.rootKey = stranger

		// Targets: signed by the targets key, listing only uploaded artifacts.
		targets := func(version int64, signer *tufmeta.Key, name, sha string, length int64, fwVersion string) []byte {
			m := tufmeta.NewTargets(version, time.Now().AddDate(0, 1, 0))
			if err := tufmeta.AddTarget(m, name, length, sha, tufmeta.ImageInfo{Version: fwVersion, HardwareIDs: []string{f.product.ID}}); err != nil {
				t.Fatal(err)
			}
			return signDoc(t, m, signer)
		}
		a := f.ota.uploaded
		cur := f.currentVersion(t, "/ota/vendor/targets")
		wantRefusal(put("/ota/vendor/targets", targets(cur+1, stranger, a.Name, a.SHA256, a.Length, a.Version)), "bad signature")
		wantRefusal(put("/ota/vendor/targets", targets(cur, f.ota.targetsKey, a.Name, a.SHA256, a.Length, a.Version)), "is not above the stored")
		wantRefusal(put("/ota/vendor/targets", targets(cur+1, f.ota.targetsKey, a.Name, strings.Repeat("ab", 32), a.Length, a.Version)), "is not an uploaded artifact")
		wantRefusal(put("/ota/vendor/targets", targets(cur+1, f.ota.targetsKey, a.Name, a.SHA256, a.Length, "9.9.9")), "is not an uploaded artifact")
		if res := put("/ota/vendor/targets", make([]byte, tufmeta.MaxTargetsBytes+1)); res.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("oversized targets: %s", res)
		}

		// A newer image, signed by the vendor, assigned by the director.
		content := []byte("firmware 2.1.0")
		newID := newArtifact(t, srv, f.tenant, f.product.ID, content)
		var art model.Artifact
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/artifacts/" + newID, Key: key}).Into(t, &art)
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/ota/vendor/targets", Key: key,
			Raw: targets(cur+1, f.ota.targetsKey, art.Name, art.SHA256, art.Length, art.Version)})
		var as model.Assignment
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/devices/" + f.other.ID + "/ota/assignment", Key: key,
			Body: map[string]any{"artifact_id": newID}}).Into(t, &as)
		if as.DirectorVersion != 1 || as.HardwareID != f.product.ID || as.Version != art.Version {
			t.Fatalf("assignment %+v", as)
		}
		// The old image is no longer in the vendor's targets.
		res = srv.Do(t, testserver.Req{Method: http.MethodPut, Path: api + "/devices/" + f.other.ID + "/ota/assignment", Key: key,
			Body: map[string]any{"artifact_id": f.ota.uploadedID}})
		wantRefusal(res, "list no image")

		// The device's view: verify the bundle as the agent does.
		directorRoot := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/ota/director/root", Key: key}).Raw
		var bundle struct {
			tufmeta.Bundle
			Assignment model.Assignment `json:"assignment"`
		}
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + f.other.ID + "/ota/metadata?vendor_root_version=1",
			Key: key}).Into(t, &bundle)
		if len(bundle.VendorRoots) != 1 {
			t.Fatalf("want the one rotation after v1, got %d roots", len(bundle.VendorRoots))
		}
		trusted := &tufmeta.Trusted{VendorRoot: f.ota.firstRoot, DirectorRoot: directorRoot}
		img, err := tufmeta.Verify(trusted, bundle.Bundle, tufmeta.Device{ID: f.other.ID, HardwareID: f.product.ID, Version: "1.0.0"}, time.Now())
		if err != nil {
			t.Fatalf("the device refuses the platform's bundle: %v", err)
		}
		if img.SHA256 != art.SHA256 || img.Assignment.ArtifactID != newID {
			t.Fatalf("verified image %+v", img)
		}
		if err := img.Check(bytes.NewReader(srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet,
			Path: api + "/artifacts/" + newID + "/content", Key: key}).Raw)); err != nil {
			t.Fatal(err)
		}
		// Another device's director metadata does not fit this one.
		_, err = tufmeta.Verify(&tufmeta.Trusted{VendorRoot: f.ota.firstRoot, DirectorRoot: directorRoot}, bundle.Bundle,
			tufmeta.Device{ID: f.device.ID, HardwareID: f.product.ID, Version: "1.0.0"}, time.Now())
		if !errors.Is(err, tufmeta.ErrMismatch) {
			t.Fatalf("mix-and-match: %v", err)
		}
	})
}
