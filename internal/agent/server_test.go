package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

// cutting breaks the first download after n bytes, like a dropped link.
type cutting struct {
	Source
	n       int64
	calls   int
	offsets []int64
}

type limitedBody struct {
	io.Reader
	io.Closer
}

func (c *cutting) Fetch(ctx context.Context, id string, off int64, etag string) (io.ReadCloser, error) {
	c.calls++
	c.offsets = append(c.offsets, off)
	rc, err := c.Source.Fetch(ctx, id, off, etag)
	if err != nil || c.calls > 1 {
		return rc, err
	}
	return limitedBody{io.LimitReader(rc, c.n), rc}, nil
}

// TestUpdateFromServer: the vendor signs and pushes through the API, the
// director assigns, and the agent updates over HTTP: the first download
// is cut midway and resumed with Range; a second device whose health check
// fails rolls back.
func TestUpdateFromServer(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	tn := srv.CreateTenant(t, "agent")
	p := srv.CreateProduct(t, tn.ID)
	admin := tn.Admin.Secret
	devs := []model.Device{srv.CreateDevice(t, tn.ID, p.ID), srv.CreateDevice(t, tn.ID, p.ID)}

	// The vendor: keys, root, an uploaded image, targets listing it.
	rootKey, targetsKey := key(t), key(t)
	rm, err := tufmeta.NewRoot(1, time.Now().AddDate(1, 0, 0), tufmeta.RoleKeys{Keys: []*metadata.Key{rootKey.Public}, Threshold: 1},
		tufmeta.RoleKeys{Keys: []*metadata.Key{targetsKey.Public}, Threshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	vendorRoot := sign(t, rm, rootKey)
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: "/api/v1/ota/vendor/root", Key: admin, Raw: vendorRoot})
	image := make([]byte, 2<<20+333)
	for i := range image {
		image[i] = byte(i * 31)
	}
	sum := sha256.Sum256(image)
	digest := hex.EncodeToString(sum[:])
	art := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: "/api/v1/artifacts", Key: admin,
		Body: map[string]any{"name": "fw-2.0.0.bin", "version": "2.0.0", "product_ids": []string{p.ID}, "hardware_ids": []string{p.ID}}}).Str("id")
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: "/api/v1/artifacts/" + art + "/content", Key: admin, Raw: image,
		Header: map[string]string{"Content-Type": "application/octet-stream"}})
	vt := tufmeta.NewTargets(1, time.Now().AddDate(0, 1, 0))
	if err := tufmeta.AddTarget(vt, "fw-2.0.0.bin", int64(len(image)), digest, tufmeta.ImageInfo{Version: "2.0.0", HardwareIDs: []string{p.ID}}); err != nil {
		t.Fatal(err)
	}
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: "/api/v1/ota/vendor/targets", Key: admin, Raw: sign(t, vt, targetsKey)})
	directorRoot := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: "/api/v1/ota/director/root", Key: admin}).Raw

	for i, d := range devs {
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: "/api/v1/devices/" + d.ID + "/ota/assignment", Key: admin,
			Body: map[string]any{"artifact_id": art}})
		src := &cutting{n: 700_000, Source: &HTTPSource{BaseURL: srv.URL, DeviceID: d.ID, Client: srv.HTTP,
			Authorize: func(r *http.Request) {
				r.Header.Set("Authorization", "Bearer "+admin)
				r.Header.Set("X-Steward-Tenant", tn.ID)
			}}}
		inst, err := NewDirInstaller(t.TempDir(), "1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		u := &Updater{Device: tufmeta.Device{ID: d.ID, HardwareID: p.ID}, StateDir: t.TempDir(), Source: src, Install: inst,
			VendorRoot: vendorRoot, DirectorRoot: directorRoot, Retries: 2}
		if i == 1 {
			u.Health = func(context.Context, string) error { return errors.New("watchdog: app crashed 3 times") }
		}
		res := u.Run(t.Context())
		switch i {
		case 0:
			if res.Status != StatusSucceeded || res.Version != "2.0.0" {
				t.Fatalf("device %d: %+v", i, res)
			}
			if len(src.offsets) != 2 || src.offsets[1] != 700_000 {
				t.Fatalf("download not resumed at the cut: offsets %v", src.offsets)
			}
		case 1:
			if res.Status != StatusRolledBack || res.Version != "1.0.0" || !strings.Contains(res.Err.Error(), "watchdog") {
				t.Fatalf("device %d: %+v", i, res)
			}
		}
	}
}
