package tufmeta

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// RootInfo is what the server records of an accepted root.
type RootInfo struct {
	Version int64
	Expires time.Time
}

// CheckRoot validates a root the server is asked to store. The first root
// (prev nil) must be signed by a threshold of its own root keys; a later
// one must be the next version and signed by a threshold of both the
// previous and its own root keys. Either must not be expired.
func CheckRoot(prev, next []byte, now time.Time) (*RootInfo, error) {
	n, err := parseRoot(next)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		if err := n.VerifyDelegate(RoleRoot, n); err != nil {
			return nil, refuse(ErrSignature, "root v%d is not signed by its own root keys: %v", n.Signed.Version, err)
		}
	} else {
		p, err := parseRoot(prev)
		if err != nil {
			return nil, err
		}
		if n.Signed.Version != p.Signed.Version+1 {
			return nil, refuse(ErrRollback, "root v%d does not follow the current v%d", n.Signed.Version, p.Signed.Version)
		}
		if _, _, err := updateRoot("vendor", prev, []json.RawMessage{next}, now); err != nil {
			return nil, err
		}
	}
	if n.Signed.IsExpired(now) {
		return nil, refuse(ErrExpired, "root v%d expired at %s", n.Signed.Version, n.Signed.Expires.Format(time.RFC3339))
	}
	if r := n.Signed.Roles[RoleTargets]; r == nil || len(r.KeyIDs) == 0 {
		return nil, refuse(ErrMalformed, "root v%d names no targets keys", n.Signed.Version)
	}
	return &RootInfo{Version: n.Signed.Version, Expires: n.Signed.Expires}, nil
}

// VendorTarget is one image listed in vendor targets metadata.
type VendorTarget struct {
	Name   string
	Length int64
	SHA256 string
	Info   ImageInfo
}

// TargetsInfo is what the server records of accepted targets metadata.
type TargetsInfo struct {
	Version int64
	Expires time.Time
	Targets []VendorTarget
}

// CheckTargets validates vendor targets metadata against the vendor's
// current root: signature threshold, expiry, and a version above minVersion
// (the last one stored). Every target must carry a SHA-256 and ImageInfo.
func CheckTargets(root, body []byte, minVersion int64, now time.Time) (*TargetsInfo, error) {
	r, err := parseRoot(root)
	if err != nil {
		return nil, err
	}
	t, err := checkTargets("vendor", r, body, 0, now)
	if err != nil {
		return nil, err
	}
	if t.Signed.Version <= minVersion {
		return nil, refuse(ErrRollback, "vendor targets v%d is not above the stored v%d", t.Signed.Version, minVersion)
	}
	info := &TargetsInfo{Version: t.Signed.Version, Expires: t.Signed.Expires}
	for name, tf := range t.Signed.Targets {
		vt, err := vendorTarget(name, tf)
		if err != nil {
			return nil, err
		}
		info.Targets = append(info.Targets, *vt)
	}
	return info, nil
}

func vendorTarget(name string, tf *metadata.TargetFiles) (*VendorTarget, error) {
	sum, ok := tf.Hashes["sha256"]
	if !ok || len(sum) != 32 || tf.Length <= 0 {
		return nil, refuse(ErrMalformed, "target %s needs a SHA-256 and a length", name)
	}
	var ii ImageInfo
	if err := custom(tf, &ii); err != nil || ii.Version == "" || len(ii.HardwareIDs) == 0 {
		return nil, refuse(ErrMalformed, "target %s needs custom {\"version\", \"hardware_ids\"}", name)
	}
	if _, err := CompareVersions(ii.Version, ii.Version); err != nil {
		return nil, refuse(ErrMalformed, "target %s: %v", name, err)
	}
	return &VendorTarget{Name: name, Length: tf.Length, SHA256: fmt.Sprintf("%x", []byte(sum)), Info: ii}, nil
}

// FindTarget returns the vendor target with this content.
func FindTarget(body []byte, sha256Hex string) (*VendorTarget, error) {
	t, err := parseTargets("vendor", body)
	if err != nil {
		return nil, err
	}
	for name, tf := range t.Signed.Targets {
		vt, err := vendorTarget(name, tf)
		if err == nil && vt.SHA256 == sha256Hex {
			return vt, nil
		}
	}
	return nil, fmt.Errorf("the vendor targets list no image with SHA-256 %s", sha256Hex)
}

// RootVersion reads a root's version without checking signatures.
func RootVersion(b []byte) (int64, error) {
	r, err := parseRoot(b)
	if err != nil {
		return 0, err
	}
	return r.Signed.Version, nil
}
