package tufmeta

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward/internal/model"
)

// Metadata size limits: anything longer is refused before it is parsed
// (endless data).
const (
	MaxRootBytes    = 64 << 10
	MaxTargetsBytes = 1 << 20
	// MaxRootChain caps how many root rotations one update may carry.
	MaxRootChain = 32
)

// Refusals. Each error Verify returns wraps one of these.
var (
	ErrTooLarge  = errors.New("metadata too large")
	ErrMalformed = errors.New("malformed metadata")
	// ErrSignature: not signed by a threshold of the role's current keys
	// (wrong key, revoked key, too few signatures).
	ErrSignature = errors.New("bad signature")
	// ErrExpired: the metadata expired (freeze attack).
	ErrExpired = errors.New("metadata expired")
	// ErrRollback: metadata older than what the device already saw, or an
	// image not newer than what it runs.
	ErrRollback = errors.New("rollback refused")
	// ErrHardware: the image is not for the device's hardware.
	ErrHardware = errors.New("image is for other hardware")
	// ErrMismatch: director and vendor disagree on the image, or the
	// director's metadata is for another device (mix-and-match).
	ErrMismatch = errors.New("director and vendor metadata disagree")
	// ErrImage: the image's length or SHA-256 is not what was signed.
	ErrImage = errors.New("image does not match its signed length and hash")
)

// Trusted is what a device keeps between updates: the current roots of
// both roles and the highest targets versions it has accepted.
type Trusted struct {
	VendorRoot             []byte `json:"vendor_root"`
	DirectorRoot           []byte `json:"director_root"`
	VendorTargetsVersion   int64  `json:"vendor_targets_version"`
	DirectorTargetsVersion int64  `json:"director_targets_version"`
}

// Bundle is the metadata of one update, as the platform sends it: root
// rotations newer than the device's (oldest first) and both targets.
type Bundle struct {
	VendorRoots     []json.RawMessage `json:"vendor_roots,omitempty"`
	VendorTargets   json.RawMessage   `json:"vendor_targets"`
	DirectorRoots   []json.RawMessage `json:"director_roots,omitempty"`
	DirectorTargets json.RawMessage   `json:"director_targets"`
}

// Device is what the device knows of itself.
type Device struct {
	ID         string
	HardwareID string
	Version    string // running firmware version
}

// Image is a verified decision: install this.
type Image struct {
	Name       string
	Length     int64
	SHA256     string // hex
	Info       ImageInfo
	Assignment Assignment
}

func refuse(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))
}

func parseRoot(b []byte) (*metadata.Metadata[metadata.RootType], error) {
	if len(b) > MaxRootBytes {
		return nil, refuse(ErrTooLarge, "root metadata of %d bytes (limit %d)", len(b), MaxRootBytes)
	}
	m, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, refuse(ErrMalformed, "root: %v", err)
	}
	return m, nil
}

func parseTargets(role string, b []byte) (*metadata.Metadata[metadata.TargetsType], error) {
	if len(b) > MaxTargetsBytes {
		return nil, refuse(ErrTooLarge, "%s targets metadata of %d bytes (limit %d)", role, len(b), MaxTargetsBytes)
	}
	m, err := metadata.Targets().FromBytes(b)
	if err != nil {
		return nil, refuse(ErrMalformed, "%s targets: %v", role, err)
	}
	return m, nil
}

// updateRoot applies root rotations to the trusted root (TUF §5.3): each
// new root has the next version and is signed by a threshold of both the
// previous root's and its own root keys. The final root must not be expired.
func updateRoot(role string, trusted []byte, chain []json.RawMessage, now time.Time) ([]byte, *metadata.Metadata[metadata.RootType], error) {
	cur, err := parseRoot(trusted)
	if err != nil {
		return nil, nil, fmt.Errorf("trusted %s root: %w", role, err)
	}
	if len(chain) > MaxRootChain {
		return nil, nil, refuse(ErrTooLarge, "%d %s root rotations (limit %d)", len(chain), role, MaxRootChain)
	}
	raw := trusted
	for _, b := range chain {
		next, err := parseRoot(b)
		if err != nil {
			return nil, nil, fmt.Errorf("%s root rotation: %w", role, err)
		}
		if next.Signed.Version <= cur.Signed.Version {
			continue // a root the device already has (or an older one): it cannot take over
		}
		if next.Signed.Version != cur.Signed.Version+1 {
			return nil, nil, refuse(ErrMalformed, "%s root version %d follows %d", role, next.Signed.Version, cur.Signed.Version)
		}
		if err := cur.VerifyDelegate(RoleRoot, next); err != nil {
			return nil, nil, refuse(ErrSignature, "%s root v%d is not signed by the keys of v%d: %v", role, next.Signed.Version, cur.Signed.Version, err)
		}
		if err := next.VerifyDelegate(RoleRoot, next); err != nil {
			return nil, nil, refuse(ErrSignature, "%s root v%d is not signed by its own keys: %v", role, next.Signed.Version, err)
		}
		cur, raw = next, b
	}
	if cur.Signed.IsExpired(now) {
		return nil, nil, refuse(ErrExpired, "%s root v%d expired at %s", role, cur.Signed.Version, cur.Signed.Expires.Format(time.RFC3339))
	}
	return raw, cur, nil
}

// checkTargets verifies targets metadata against a root: signature
// threshold, expiry, and no version older than seen before.
func checkTargets(role string, root *metadata.Metadata[metadata.RootType], b []byte, seen int64, now time.Time) (*metadata.Metadata[metadata.TargetsType], error) {
	t, err := parseTargets(role, b)
	if err != nil {
		return nil, err
	}
	if err := root.VerifyDelegate(RoleTargets, t); err != nil {
		return nil, refuse(ErrSignature, "%s targets v%d: %v", role, t.Signed.Version, err)
	}
	if t.Signed.Version < seen {
		return nil, refuse(ErrRollback, "%s targets v%d is older than v%d seen before", role, t.Signed.Version, seen)
	}
	if t.Signed.IsExpired(now) {
		return nil, refuse(ErrExpired, "%s targets v%d expired at %s", role, t.Signed.Version, t.Signed.Expires.Format(time.RFC3339))
	}
	return t, nil
}

func custom(tf *metadata.TargetFiles, v any) error {
	if tf.Custom == nil {
		return errors.New("no custom field")
	}
	d := json.NewDecoder(bytes.NewReader(*tf.Custom))
	return d.Decode(v)
}

// CompareVersions orders two firmware versions numerically per component
// (model.VersionKey); -1, 0 or 1.
func CompareVersions(a, b string) (int, error) {
	ka, err := model.VersionKey(a)
	if err != nil {
		return 0, err
	}
	kb, err := model.VersionKey(b)
	if err != nil {
		return 0, err
	}
	switch {
	case ka < kb:
		return -1, nil
	case ka > kb:
		return 1, nil
	}
	return 0, nil
}

// Verify checks an update's metadata for dev and returns the image to
// install. On success tr is advanced (roots rotated, versions raised); the
// caller stores it. On any refusal tr is unchanged.
func Verify(tr *Trusted, b Bundle, dev Device, now time.Time) (*Image, error) {
	vRootRaw, vRoot, err := updateRoot("vendor", tr.VendorRoot, b.VendorRoots, now)
	if err != nil {
		return nil, err
	}
	dRootRaw, dRoot, err := updateRoot("director", tr.DirectorRoot, b.DirectorRoots, now)
	if err != nil {
		return nil, err
	}
	vt, err := checkTargets("vendor", vRoot, b.VendorTargets, tr.VendorTargetsVersion, now)
	if err != nil {
		return nil, err
	}
	dt, err := checkTargets("director", dRoot, b.DirectorTargets, tr.DirectorTargetsVersion, now)
	if err != nil {
		return nil, err
	}
	if len(dt.Signed.Targets) != 1 {
		return nil, refuse(ErrMalformed, "director targets name %d images; want exactly one", len(dt.Signed.Targets))
	}
	var name string
	var dtf *metadata.TargetFiles
	for n, tf := range dt.Signed.Targets {
		name, dtf = n, tf
	}
	var as Assignment
	if err := custom(dtf, &as); err != nil {
		return nil, refuse(ErrMalformed, "director target %s: %v", name, err)
	}
	if as.DeviceID != dev.ID {
		return nil, refuse(ErrMismatch, "director metadata is for device %s, not %s", as.DeviceID, dev.ID)
	}
	vtf, ok := vt.Signed.Targets[name]
	if !ok {
		return nil, refuse(ErrMismatch, "the vendor does not list image %s", name)
	}
	if vtf.Length != dtf.Length || !vtf.Hashes.Equal(dtf.Hashes) {
		return nil, refuse(ErrMismatch, "image %s: vendor and director name different content", name)
	}
	sum, ok := vtf.Hashes["sha256"]
	if !ok || len(sum) != sha256.Size {
		return nil, refuse(ErrMalformed, "image %s has no SHA-256", name)
	}
	if vtf.Length <= 0 {
		return nil, refuse(ErrMalformed, "image %s has length %d", name, vtf.Length)
	}
	var info ImageInfo
	if err := custom(vtf, &info); err != nil {
		return nil, refuse(ErrMalformed, "vendor target %s: %v", name, err)
	}
	if info.Version != as.Version {
		return nil, refuse(ErrMismatch, "image %s: vendor says version %s, director %s", name, info.Version, as.Version)
	}
	if as.HardwareID != dev.HardwareID {
		return nil, refuse(ErrHardware, "director assigned image %s for hardware %s; this device is %s", name, as.HardwareID, dev.HardwareID)
	}
	if !slices.Contains(info.HardwareIDs, dev.HardwareID) {
		return nil, refuse(ErrHardware, "image %s fits %v, not %s", name, info.HardwareIDs, dev.HardwareID)
	}
	if dev.Version != "" {
		c, err := CompareVersions(info.Version, dev.Version)
		if err != nil {
			return nil, refuse(ErrMalformed, "%v", err)
		}
		if c <= 0 {
			return nil, refuse(ErrRollback, "image version %s is not newer than the running %s", info.Version, dev.Version)
		}
	}
	tr.VendorRoot, tr.DirectorRoot = vRootRaw, dRootRaw
	tr.VendorTargetsVersion, tr.DirectorTargetsVersion = vt.Signed.Version, dt.Signed.Version
	return &Image{Name: name, Length: vtf.Length, SHA256: hex.EncodeToString(sum), Info: info, Assignment: as}, nil
}

// Checker hashes an image as it arrives and refuses more bytes than signed.
type Checker struct {
	img *Image
	h   hash.Hash
	n   int64
}

// NewChecker starts checking the content of img.
func (img *Image) NewChecker() *Checker { return &Checker{img: img, h: sha256.New()} }

func (c *Checker) Write(p []byte) (int, error) {
	if c.n+int64(len(p)) > c.img.Length {
		return 0, refuse(ErrImage, "image %s is longer than the signed %d bytes", c.img.Name, c.img.Length)
	}
	c.n += int64(len(p))
	return c.h.Write(p)
}

// Done checks the whole image arrived with the signed hash.
func (c *Checker) Done() error {
	if c.n != c.img.Length {
		return refuse(ErrImage, "image %s has %d bytes; %d were signed", c.img.Name, c.n, c.img.Length)
	}
	if got := hex.EncodeToString(c.h.Sum(nil)); got != c.img.SHA256 {
		return refuse(ErrImage, "image %s has SHA-256 %s; %s was signed", c.img.Name, got, c.img.SHA256)
	}
	return nil
}

// Check verifies a whole image read from r.
func (img *Image) Check(r io.Reader) error {
	c := img.NewChecker()
	if _, err := io.Copy(c, r); err != nil {
		return err
	}
	return c.Done()
}
