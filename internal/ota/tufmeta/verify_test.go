package tufmeta

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// repo is a vendor and a director with keys, ready to sign an update.
type repo struct {
	t                        testing.TB
	vRootKey, vTargetKeys    []*Key
	dKey                     *Key
	vendorRoot, directorRoot []byte
}

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubs(ks ...*Key) []*metadata.Key {
	var out []*metadata.Key
	for _, k := range ks {
		out = append(out, k.Public)
	}
	return out
}

func encode[T metadata.Roles](t testing.TB, m *metadata.Metadata[T]) []byte {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signed[T metadata.Roles](t testing.TB, m *metadata.Metadata[T], keys ...*Key) []byte {
	t.Helper()
	if err := Sign(m, keys...); err != nil {
		t.Fatal(err)
	}
	return encode(t, m)
}

func newRepo(t testing.TB) *repo {
	r := &repo{t: t, vRootKey: []*Key{mustKey(t)}, vTargetKeys: []*Key{mustKey(t), mustKey(t), mustKey(t)}, dKey: mustKey(t)}
	vr, err := NewRoot(1, now.AddDate(1, 0, 0), RoleKeys{pubs(r.vRootKey...), 1}, RoleKeys{pubs(r.vTargetKeys...), 2})
	if err != nil {
		t.Fatal(err)
	}
	r.vendorRoot = signed(t, vr, r.vRootKey...)
	dr, err := NewRoot(1, now.AddDate(1, 0, 0), RoleKeys{pubs(r.dKey), 1}, RoleKeys{pubs(r.dKey), 1})
	if err != nil {
		t.Fatal(err)
	}
	r.directorRoot = signed(t, dr, r.dKey)
	return r
}

var image = bytes.Repeat([]byte("firmware 2.0.0 "), 1000)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// spec describes one update; the zero value of each field is the honest one.
type spec struct {
	vendorVersion, directorVersion string
	vendorHW                       []string
	directorHW                     string
	directorDevice                 string
	vendorContent, directorContent []byte
	vendorKeys                     []*Key
	directorKey                    *Key
	vendorExpires, directorExpires time.Time
	vendorTargetsVersion           int64
	vendorRoots                    []json.RawMessage
	pad                            int // bytes of padding in the vendor's release notes
}

func (r *repo) bundle(s spec) Bundle {
	t := r.t
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&s.vendorVersion, "2.0.0")
	def(&s.directorVersion, s.vendorVersion)
	def(&s.directorHW, "board-a")
	def(&s.directorDevice, "dev-1")
	if s.vendorHW == nil {
		s.vendorHW = []string{"board-a", "board-b"}
	}
	if s.vendorContent == nil {
		s.vendorContent = image
	}
	if s.directorContent == nil {
		s.directorContent = s.vendorContent
	}
	if s.vendorKeys == nil {
		s.vendorKeys = r.vTargetKeys[:2]
	}
	if s.directorKey == nil {
		s.directorKey = r.dKey
	}
	if s.vendorExpires.IsZero() {
		s.vendorExpires = now.AddDate(0, 3, 0)
	}
	if s.directorExpires.IsZero() {
		s.directorExpires = now.Add(24 * time.Hour)
	}
	if s.vendorTargetsVersion == 0 {
		s.vendorTargetsVersion = 5
	}
	vt := NewTargets(s.vendorTargetsVersion, s.vendorExpires)
	info := ImageInfo{Version: s.vendorVersion, HardwareIDs: s.vendorHW, SBOMRef: strings.Repeat("x", s.pad)}
	if err := AddTarget(vt, "fw.bin", int64(len(s.vendorContent)), digest(s.vendorContent), info); err != nil {
		t.Fatal(err)
	}
	dt := NewTargets(3, s.directorExpires)
	as := Assignment{DeviceID: s.directorDevice, HardwareID: s.directorHW, Version: s.directorVersion, ArtifactID: "art-1"}
	if err := AddTarget(dt, "fw.bin", int64(len(s.directorContent)), digest(s.directorContent), as); err != nil {
		t.Fatal(err)
	}
	return Bundle{VendorRoots: s.vendorRoots, VendorTargets: signed(t, vt, s.vendorKeys...), DirectorTargets: signed(t, dt, s.directorKey)}
}

func (r *repo) trusted() *Trusted {
	return &Trusted{VendorRoot: r.vendorRoot, DirectorRoot: r.directorRoot, VendorTargetsVersion: 4, DirectorTargetsVersion: 2}
}

var dev = Device{ID: "dev-1", HardwareID: "board-a", Version: "1.9.3"}

func TestVerifyAcceptsHonestUpdate(t *testing.T) {
	r := newRepo(t)
	tr := r.trusted()
	img, err := Verify(tr, r.bundle(spec{}), dev, now)
	if err != nil {
		t.Fatal(err)
	}
	if img.Info.Version != "2.0.0" || img.Length != int64(len(image)) || img.SHA256 != digest(image) || img.Assignment.ArtifactID != "art-1" {
		t.Fatalf("image %+v", img)
	}
	if err := img.Check(bytes.NewReader(image)); err != nil {
		t.Fatal(err)
	}
	if tr.VendorTargetsVersion != 5 || tr.DirectorTargetsVersion != 3 {
		t.Fatalf("trusted versions not advanced: %+v", tr)
	}
}

// TestVerifyRefusesAttacks: one case per attack; each is refused with its
// own error and leaves the device's trusted state as it was.
func TestVerifyRefusesAttacks(t *testing.T) {
	r := newRepo(t)
	stranger := mustKey(t)
	big := spec{pad: MaxTargetsBytes}
	for _, tc := range []struct {
		name string
		spec spec
		dev  Device
		want error
		msg  string
	}{
		{"older signed version (rollback)", spec{vendorVersion: "1.9.0"}, dev, ErrRollback, "not newer than the running 1.9.3"},
		{"same version again", spec{vendorVersion: "1.9.3"}, dev, ErrRollback, "not newer"},
		{"older vendor metadata (rollback)", spec{vendorTargetsVersion: 3}, dev, ErrRollback, "vendor targets v3 is older than v4"},
		{"expired vendor metadata (freeze)", spec{vendorExpires: now.Add(-time.Minute)}, dev, ErrExpired, "vendor targets v5 expired"},
		{"expired director metadata (freeze)", spec{directorExpires: now.Add(-time.Second)}, dev, ErrExpired, "director targets v3 expired"},
		{"vendor signature by the wrong key", spec{vendorKeys: []*Key{stranger, r.vTargetKeys[0]}}, dev, ErrSignature, "vendor targets v5"},
		{"vendor below threshold", spec{vendorKeys: r.vTargetKeys[:1]}, dev, ErrSignature, "not enough signatures, got 1, want 2"},
		{"director signature by the wrong key", spec{directorKey: r.vTargetKeys[0]}, dev, ErrSignature, "director targets v3"},
		{"image for other hardware (vendor)", spec{vendorHW: []string{"board-z"}}, dev, ErrHardware, "fits [board-z], not board-a"},
		{"image for other hardware (director)", spec{directorHW: "board-b"}, dev, ErrHardware, "for hardware board-b"},
		{"director and vendor disagree on content", spec{directorContent: []byte("evil")}, dev, ErrMismatch, "different content"},
		{"director and vendor disagree on version", spec{directorVersion: "3.0.0"}, dev, ErrMismatch, "vendor says version 2.0.0, director 3.0.0"},
		{"director metadata of another device (mix-and-match)", spec{directorDevice: "dev-2"}, dev, ErrMismatch, "for device dev-2, not dev-1"},
		{"oversized metadata", big, dev, ErrTooLarge, "vendor targets metadata of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := r.trusted()
			before := *tr
			img, err := Verify(tr, r.bundle(tc.spec), tc.dev, now)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got image %v, error %v; want %v containing %q", img, err, tc.want, tc.msg)
			}
			if !equalTrusted(*tr, before) {
				t.Fatal("a refused update changed the trusted state")
			}
		})
	}
}

func equalTrusted(a, b Trusted) bool {
	return bytes.Equal(a.VendorRoot, b.VendorRoot) && bytes.Equal(a.DirectorRoot, b.DirectorRoot) &&
		a.VendorTargetsVersion == b.VendorTargetsVersion && a.DirectorTargetsVersion == b.DirectorTargetsVersion
}

func TestImageCheck(t *testing.T) {
	r := newRepo(t)
	img, err := Verify(r.trusted(), r.bundle(spec{}), dev, now)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(image)
	tampered[len(tampered)/2] ^= 1
	for _, tc := range []struct {
		name    string
		content []byte
		msg     string
	}{
		{"tampered image", tampered, "has SHA-256"},
		{"truncated image", image[:len(image)-1], "bytes; 15000 were signed"},
		{"endless image", append(bytes.Clone(image), 0), "longer than the signed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := img.Check(bytes.NewReader(tc.content)); !errors.Is(err, ErrImage) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrImage containing %q", err, tc.msg)
			}
		})
	}
}

// TestKeyRotation: the vendor rotates its root and targets keys; the device
// follows the chain, after which metadata signed by a revoked key is
// refused. A rotation not signed by the old root keys is refused too.
func TestKeyRotation(t *testing.T) {
	r := newRepo(t)
	newRoot, newTarget := mustKey(t), mustKey(t)
	v2, err := NewRoot(2, now.AddDate(1, 0, 0), RoleKeys{pubs(newRoot), 1}, RoleKeys{pubs(newTarget, r.vTargetKeys[1]), 1})
	if err != nil {
		t.Fatal(err)
	}
	rotation := signed(t, v2, r.vRootKey[0], newRoot)

	tr := r.trusted()
	if _, err := Verify(tr, r.bundle(spec{vendorRoots: []json.RawMessage{rotation}, vendorKeys: []*Key{newTarget}}), dev, now); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if !bytes.Equal(tr.VendorRoot, rotation) {
		t.Fatal("the device did not keep the new root")
	}
	// Key 0 was dropped by the rotation: its signature no longer counts.
	_, err = Verify(tr, r.bundle(spec{vendorKeys: []*Key{r.vTargetKeys[0]}, vendorTargetsVersion: 6}), dev, now)
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("revoked key: got %v, want ErrSignature", err)
	}

	// A rotation signed only by the new key (not by the old root) is refused.
	forged, _ := NewRoot(2, now.AddDate(1, 0, 0), RoleKeys{pubs(newRoot), 1}, RoleKeys{pubs(newTarget), 1})
	_, err = Verify(r.trusted(), r.bundle(spec{vendorRoots: []json.RawMessage{signed(t, forged, newRoot)}, vendorKeys: []*Key{newTarget}}), dev, now)
	if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "not signed by the keys of v1") {
		t.Fatalf("forged rotation: got %v", err)
	}
	// Roots are bounded too.
	_, err = Verify(r.trusted(), r.bundle(spec{vendorRoots: []json.RawMessage{make([]byte, MaxRootBytes+1)}}), dev, now)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized root: got %v", err)
	}
}

func TestKeyFile(t *testing.T) {
	k := mustKey(t)
	path := t.TempDir() + "/vendor.key"
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKeyFile(path)
	if err != nil || got.ID != k.ID {
		t.Fatalf("reloaded key %v, %v", got, err)
	}
	if err := WriteKeyFile(path, k); err == nil {
		t.Fatal("an existing key file was overwritten")
	}
}
