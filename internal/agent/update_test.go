package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward/internal/ota/tufmeta"
)

// vendorDirector signs like the vendor and the director do.
type vendorDirector struct {
	t                   *testing.T
	vendor, director    *tufmeta.Key
	vendorRoot, dirRoot []byte
}

func key(t *testing.T) *tufmeta.Key {
	k, err := tufmeta.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign[T metadata.Roles](t *testing.T, m *metadata.Metadata[T], keys ...*tufmeta.Key) json.RawMessage {
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

func newVD(t *testing.T) *vendorDirector {
	vd := &vendorDirector{t: t, vendor: key(t), director: key(t)}
	for _, p := range []struct {
		k   *tufmeta.Key
		out *[]byte
	}{{vd.vendor, &vd.vendorRoot}, {vd.director, &vd.dirRoot}} {
		rk := tufmeta.RoleKeys{Keys: []*metadata.Key{p.k.Public}, Threshold: 1}
		m, err := tufmeta.NewRoot(1, time.Now().AddDate(1, 0, 0), rk, rk)
		if err != nil {
			t.Fatal(err)
		}
		*p.out = sign(t, m, p.k)
	}
	return vd
}

// release describes one signed update; zero values are honest.
type release struct {
	version, directorVersion string
	hardware                 string
	vendorKey                *tufmeta.Key
	expires                  time.Time
	directorContent          []byte
	pad                      int
}

func (vd *vendorDirector) bundle(img []byte, r release) *tufmeta.Bundle {
	t := vd.t
	if r.version == "" {
		r.version = "2.0.0"
	}
	if r.directorVersion == "" {
		r.directorVersion = r.version
	}
	if r.hardware == "" {
		r.hardware = "board-a"
	}
	if r.vendorKey == nil {
		r.vendorKey = vd.vendor
	}
	if r.expires.IsZero() {
		r.expires = time.Now().Add(time.Hour)
	}
	if r.directorContent == nil {
		r.directorContent = img
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	vt := tufmeta.NewTargets(1, r.expires)
	if err := tufmeta.AddTarget(vt, "fw.bin", int64(len(img)), sum(img),
		tufmeta.ImageInfo{Version: r.version, HardwareIDs: []string{r.hardware}, SBOMRef: strings.Repeat("x", r.pad)}); err != nil {
		t.Fatal(err)
	}
	dt := tufmeta.NewTargets(1, time.Now().Add(time.Hour))
	if err := tufmeta.AddTarget(dt, "fw.bin", int64(len(r.directorContent)), sum(r.directorContent),
		tufmeta.Assignment{DeviceID: "dev-1", HardwareID: "board-a", Version: r.directorVersion, ArtifactID: "art-1"}); err != nil {
		t.Fatal(err)
	}
	return &tufmeta.Bundle{VendorTargets: sign(t, vt, r.vendorKey), DirectorTargets: sign(t, dt, vd.director)}
}

// fakeSource serves one bundle and image; cut > 0 breaks the first
// download after cut bytes.
type fakeSource struct {
	b       *tufmeta.Bundle
	image   []byte
	cut     int
	offsets []int64
}

func (f *fakeSource) Metadata(context.Context, int64) (*tufmeta.Bundle, error) { return f.b, nil }

func (f *fakeSource) Fetch(_ context.Context, _ string, off int64, _ string) (io.ReadCloser, error) {
	f.offsets = append(f.offsets, off)
	data := f.image[off:]
	if f.cut > 0 && len(f.offsets) == 1 {
		data = data[:f.cut]
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func newUpdater(t *testing.T, vd *vendorDirector, src Source) (*Updater, *DirInstaller, *[]Report) {
	inst, err := NewDirInstaller(t.TempDir(), "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	var reports []Report
	return &Updater{Device: tufmeta.Device{ID: "dev-1", HardwareID: "board-a"}, StateDir: t.TempDir(), Source: src, Install: inst,
		VendorRoot: vd.vendorRoot, DirectorRoot: vd.dirRoot, Report: func(r Report) { reports = append(reports, r) }}, inst, &reports
}

// statuses lists the steps reported, repeats (download progress) once.
func statuses(rs []Report) string {
	var s []string
	for _, r := range rs {
		if len(s) == 0 || s[len(s)-1] != string(r.Status) {
			s = append(s, string(r.Status))
		}
	}
	return strings.Join(s, " ")
}

var firmware = bytes.Repeat([]byte("new firmware "), 10000)

func TestUpdateSucceeds(t *testing.T) {
	vd := newVD(t)
	src := &fakeSource{b: vd.bundle(firmware, release{}), image: firmware, cut: 50000}
	u, inst, reports := newUpdater(t, vd, src)
	u.Retries = 1
	res := u.Run(t.Context())
	if res.Status != StatusSucceeded || res.Version != "2.0.0" {
		t.Fatalf("result %+v", res)
	}
	if got := statuses(*reports); got != "notified downloading verifying installing rebooting succeeded" {
		t.Fatalf("reports: %s", got)
	}
	if len(src.offsets) != 2 || src.offsets[1] != 50000 {
		t.Fatalf("the cut download did not resume where it stopped: offsets %v", src.offsets)
	}
	if _, v, _, _ := inst.State(); v != "2.0.0" {
		t.Fatalf("running %s", v)
	}
	// Progress while downloading: at most every 10 % (and 5 s), bytes
	// growing, the first after the resume at the cut.
	var progress []int64
	for _, r := range *reports {
		if r.Status == StatusDownloading {
			progress = append(progress, r.Bytes)
		}
	}
	if len(progress) < 3 || len(progress) > 13 || progress[0] != 0 || !slices.IsSorted(progress) || !slices.Contains(progress, 50000) {
		t.Fatalf("download progress: %v", progress)
	}
	// The same metadata again: it is what runs, nothing to install.
	if res := u.Run(t.Context()); res.Status != StatusFailed || !errors.Is(res.Err, ErrUpToDate) {
		t.Fatalf("second run: %+v", res)
	}
	if _, err := u.Next(t.Context()); !errors.Is(err, ErrUpToDate) {
		t.Fatalf("Next after the update: %v", err)
	}
}

func TestUpdateRollsBackOnFailedHealthCheck(t *testing.T) {
	vd := newVD(t)
	u, inst, reports := newUpdater(t, vd, &fakeSource{b: vd.bundle(firmware, release{}), image: firmware})
	u.Health = func(_ context.Context, v string) error { return errors.New("service did not come up") }
	res := u.Run(t.Context())
	if res.Status != StatusRolledBack || res.Version != "1.0.0" || !strings.Contains(res.Err.Error(), "health check of 2.0.0 failed: service did not come up") {
		t.Fatalf("result %+v", res)
	}
	last := (*reports)[len(*reports)-1]
	if last.Status != StatusRolledBack || last.Running != "1.0.0" || !strings.Contains(last.Error, "service did not come up") {
		t.Fatalf("last report %+v", last)
	}
	if slot, v, why, _ := inst.State(); slot != "a" || v != "1.0.0" || !strings.Contains(why, "health check") {
		t.Fatalf("after rollback: slot %s version %s reason %q", slot, v, why)
	}
}

// TestUpdateRefusesAttacks: each attack is refused with its own error and
// the device stays on its version, with nothing installed.
func TestUpdateRefusesAttacks(t *testing.T) {
	vd := newVD(t)
	tampered := bytes.Clone(firmware)
	tampered[1234] ^= 0x40
	for _, tc := range []struct {
		name  string
		b     *tufmeta.Bundle
		image []byte
		want  error
	}{
		{"tampered image", vd.bundle(firmware, release{}), tampered, tufmeta.ErrImage},
		{"older signed version (rollback)", vd.bundle(firmware, release{version: "0.9.0"}), firmware, tufmeta.ErrRollback},
		{"expired metadata (freeze)", vd.bundle(firmware, release{expires: time.Now().Add(-time.Minute)}), firmware, tufmeta.ErrExpired},
		{"signature by the wrong key", vd.bundle(firmware, release{vendorKey: key(t)}), firmware, tufmeta.ErrSignature},
		{"image for other hardware", vd.bundle(firmware, release{hardware: "board-z"}), firmware, tufmeta.ErrHardware},
		{"director and vendor disagree", vd.bundle(firmware, release{directorContent: tampered}), firmware, tufmeta.ErrMismatch},
		{"oversized metadata", vd.bundle(firmware, release{pad: tufmeta.MaxTargetsBytes}), firmware, tufmeta.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, inst, reports := newUpdater(t, vd, &fakeSource{b: tc.b, image: tc.image})
			res := u.Run(t.Context())
			if res.Status != StatusFailed || !errors.Is(res.Err, tc.want) {
				t.Fatalf("got %+v, want failed with %v", res, tc.want)
			}
			if last := (*reports)[len(*reports)-1]; last.Status != StatusFailed || last.Error == "" {
				t.Fatalf("last report %+v", last)
			}
			if slot, v, _, _ := inst.State(); slot != "a" || v != "1.0.0" {
				t.Fatalf("device left on slot %s version %s", slot, v)
			}
			if cur, _ := inst.Current(); cur != "1.0.0" {
				t.Fatalf("running %s", cur)
			}
		})
	}
}

// rebooting is an installer whose restart really reboots: the agent
// process ends and the next one boots into the trial slot (or, when the
// new version does not start, the bootloader falls back).
type rebooting struct {
	*DirInstaller
	fallback bool
}

func (r *rebooting) Restart(ctx context.Context) error {
	if !r.fallback {
		if err := r.DirInstaller.Restart(ctx); err != nil {
			return err
		}
	}
	return ErrRestarting
}

func TestUpdateResumesAfterReboot(t *testing.T) {
	vd := newVD(t)
	for _, tc := range []struct {
		name     string
		fallback bool
		health   error
		want     Status
		version  string
		msg      string
	}{
		{"healthy", false, nil, StatusSucceeded, "2.0.0", ""},
		{"unhealthy", false, errors.New("no network"), StatusRolledBack, "1.0.0", "health check of 2.0.0 failed: no network"},
		{"did not boot", true, nil, StatusRolledBack, "1.0.0", "version 2.0.0 did not start (running 1.0.0)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, inst, reports := newUpdater(t, vd, &fakeSource{b: vd.bundle(firmware, release{}), image: firmware})
			u.Install = &rebooting{DirInstaller: inst, fallback: tc.fallback}
			if res := u.Run(t.Context()); res.Status != StatusRebooting {
				t.Fatalf("before the reboot: %+v", res)
			}
			// The next agent process, same state folder.
			next := *u
			next.Install = inst
			next.Health = func(context.Context, string) error { return tc.health }
			res := next.Resume(t.Context())
			if res == nil || res.Status != tc.want || res.Version != tc.version || (tc.msg != "" && !strings.Contains(res.Err.Error(), tc.msg)) {
				t.Fatalf("after the reboot: %+v", res)
			}
			if last := (*reports)[len(*reports)-1]; last.Status != tc.want || last.ArtifactID != "art-1" {
				t.Fatalf("last report %+v", last)
			}
			if cur, _ := inst.Current(); cur != tc.version {
				t.Fatalf("running %s", cur)
			}
			if next.Resume(t.Context()) != nil {
				t.Fatal("the journal was not cleared")
			}
		})
	}
}

// stopping cancels the agent's context while the image downloads, as a
// service stop does.
type stopping struct {
	*fakeSource
	cancel context.CancelFunc
}

func (s *stopping) Fetch(ctx context.Context, id string, off int64, etag string) (io.ReadCloser, error) {
	s.cancel()
	return nil, ctx.Err()
}

// TestUpdateInterruptedIsNotAFailure: stopping the agent mid-download
// reports nothing final (the platform would end the assignment); the next
// run takes the update up again.
func TestUpdateInterruptedIsNotAFailure(t *testing.T) {
	vd := newVD(t)
	src := &fakeSource{b: vd.bundle(firmware, release{}), image: firmware}
	u, _, reports := newUpdater(t, vd, src)
	p, err := u.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	u.Source = &stopping{fakeSource: src, cancel: cancel}
	if res := u.Apply(ctx, p); res.Status != StatusPending {
		t.Fatalf("interrupted: %+v", res)
	}
	if got := statuses(*reports); got != "notified downloading" {
		t.Fatalf("reports: %s", got)
	}
	u.Source = src
	p, err = u.Next(t.Context())
	if err != nil {
		t.Fatalf("after the interruption: %v", err)
	}
	if res := u.Apply(t.Context(), p); res.Status != StatusSucceeded {
		t.Fatalf("next run: %+v", res)
	}
}

// TestStalledDownloadIsCut: a server that stops sending in the middle of
// the image does not hold the update for ever; the body ends with an
// error after the idle timeout, with what arrived so far.
func TestStalledDownloadIsCut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2000")
		w.Write(bytes.Repeat([]byte("x"), 1000))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	src := &HTTPSource{BaseURL: srv.URL, DeviceID: "dev-1", Client: srv.Client(), IdleTimeout: 2 * time.Second}
	rc, err := src.Fetch(t.Context(), "art-1", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err == nil || len(b) != 1000 {
		t.Fatalf("stalled body: %d bytes, %v", len(b), err)
	}
}
