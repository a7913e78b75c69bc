package ota

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota/tufmeta"
	"github.com/steward-iot/steward/internal/store"
)

// Director key files, in <data_dir>/pki.
const (
	DirectorKeyFile  = "director.key"
	DirectorRootFile = "director-root.json"
	// DefaultDirectorTTL is how long a device's director metadata is valid;
	// it is signed again when less than half is left.
	DefaultDirectorTTL = 7 * 24 * time.Hour
)

// MetadataError is signed metadata the server refuses; Kind is one of the
// tufmeta refusals (or nil for a mismatch with the tenant's artifacts).
type MetadataError struct {
	Err error
}

func (e *MetadataError) Error() string { return e.Err.Error() }
func (e *MetadataError) Unwrap() error { return e.Err }

// Director is the platform's signing role: one key and its root.
type Director struct {
	key  *tufmeta.Key
	root []byte
}

// OpenDirector loads (or creates, 0600) the director key and root in dir.
func OpenDirector(dir string) (*Director, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := tufmeta.LoadOrCreateKeyFile(filepath.Join(dir, DirectorKeyFile))
	if err != nil {
		return nil, fmt.Errorf("director key: %w", err)
	}
	rootPath := filepath.Join(dir, DirectorRootFile)
	root, err := os.ReadFile(rootPath)
	if errors.Is(err, os.ErrNotExist) {
		m, err := tufmeta.NewRoot(1, time.Now().AddDate(10, 0, 0), tufmeta.RoleKeys{Keys: pubsOf(key), Threshold: 1},
			tufmeta.RoleKeys{Keys: pubsOf(key), Threshold: 1})
		if err != nil {
			return nil, err
		}
		if err := tufmeta.Sign(m, key); err != nil {
			return nil, err
		}
		if root, err = tufmeta.Encode(m); err != nil {
			return nil, err
		}
		if err := os.WriteFile(rootPath, root, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if _, err := tufmeta.CheckRoot(nil, root, time.Now()); err != nil {
		return nil, fmt.Errorf("director root %s: %w", rootPath, err)
	}
	return &Director{key: key, root: root}, nil
}

// Root is the director's signed root metadata.
func (d *Director) Root() []byte { return d.root }

// UseDirector enables signing; without it the metadata calls are refused.
func (s *Service) UseDirector(d *Director) { s.director = d }

// ErrNoDirector: the service has no director key.
var ErrNoDirector = errors.New("the update director is not configured")

// PutVendorRoot stores the tenant's first vendor root or its next
// rotation, after checking its signatures.
func (s *Service) PutVendorRoot(ctx context.Context, actor, tenantID string, body []byte) (*model.VendorRoot, error) {
	var out *model.VendorRoot
	err := s.st.Update(ctx, func(tx store.Tx) error {
		var prev []byte
		cur, err := tx.LatestVendorRoot(ctx, tenantID)
		switch {
		case err == nil:
			prev = cur.Body
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		info, err := tufmeta.CheckRoot(prev, body, s.now())
		if err != nil {
			return &MetadataError{err}
		}
		out = &model.VendorRoot{TenantID: tenantID, Version: info.Version, Expires: info.Expires, Body: body, CreatedAt: s.now(), CreatedBy: actor}
		if err := tx.AddVendorRoot(ctx, out); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "ota.vendor_root", tenantID, "ota.vendor_root_changed",
			map[string]any{"version": out.Version, "expires": out.Expires}, out.CreatedAt)
	})
	return out, err
}

// PutVendorTargets stores a new version of the tenant's vendor targets,
// after checking it against the vendor root and the tenant's artifacts:
// every image it lists must be an uploaded artifact with that content and
// version, for a subset of the artifact's hardware.
func (s *Service) PutVendorTargets(ctx context.Context, actor, tenantID string, body []byte) (*model.VendorTargets, error) {
	var out *model.VendorTargets
	err := s.st.Update(ctx, func(tx store.Tx) error {
		root, err := tx.LatestVendorRoot(ctx, tenantID)
		if errors.Is(err, store.ErrNotFound) {
			return &MetadataError{fmt.Errorf("%w: store the vendor root first", tufmeta.ErrSignature)}
		} else if err != nil {
			return err
		}
		minV := int64(0)
		if cur, err := tx.LatestVendorTargets(ctx, tenantID); err == nil {
			minV = cur.Version
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		info, err := tufmeta.CheckTargets(root.Body, body, minV, s.now())
		if err != nil {
			return &MetadataError{err}
		}
		for _, t := range info.Targets {
			arts, err := tx.ArtifactsByDigest(ctx, tenantID, t.SHA256)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(arts, func(a model.Artifact) bool {
				return a.Length == t.Length && a.Version == t.Info.Version && subset(t.Info.HardwareIDs, a.HardwareIDs)
			}) {
				return &MetadataError{fmt.Errorf("target %s (version %s, SHA-256 %s) is not an uploaded artifact of this tenant with that version and hardware",
					t.Name, t.Info.Version, t.SHA256)}
			}
		}
		out = &model.VendorTargets{TenantID: tenantID, Version: info.Version, Expires: info.Expires, Targets: len(info.Targets),
			Body: body, CreatedAt: s.now(), CreatedBy: actor}
		if err := tx.AddVendorTargets(ctx, out); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "ota.vendor_targets", tenantID, "ota.vendor_targets_changed",
			map[string]any{"version": out.Version, "expires": out.Expires, "targets": out.Targets}, out.CreatedAt)
	})
	return out, err
}

func subset(a, b []string) bool {
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	return true
}

// HardwareID is a device's hardware identifier: its hardware_id attribute,
// else its product's hardware revision, else its product ID.
func HardwareID(d *model.Device, p *model.Product) string {
	if v := d.Attributes["hardware_id"]; v != "" {
		return v
	}
	if p != nil && p.HardwareRevision != "" {
		return p.HardwareRevision
	}
	return d.ProductID
}

// Assign makes the director tell a device to install an artifact: it signs
// the device's next director targets naming the image as the vendor listed
// it. The image must be in the tenant's current vendor targets and fit the
// device's hardware.
func (s *Service) Assign(ctx context.Context, actor, tenantID, deviceID, artifactID, campaignID string) (*model.Assignment, error) {
	var out *model.Assignment
	err := s.st.Update(ctx, func(tx store.Tx) error {
		var err error
		out, err = s.assign(ctx, tx, actor, tenantID, deviceID, artifactID, campaignID)
		return err
	})
	return out, err
}

func (s *Service) signAssignment(a *model.Assignment, target *tufmeta.VendorTarget) error {
	a.Expires = s.now().Add(s.DirectorTTL).Truncate(time.Second)
	m := tufmeta.NewTargets(a.DirectorVersion, a.Expires)
	if err := tufmeta.AddTarget(m, target.Name, target.Length, target.SHA256, tufmeta.Assignment{DeviceID: a.DeviceID,
		HardwareID: a.HardwareID, Version: a.Version, ArtifactID: a.ArtifactID, CampaignID: a.CampaignID}); err != nil {
		return err
	}
	if err := tufmeta.Sign(m, s.director.key); err != nil {
		return err
	}
	body, err := tufmeta.Encode(m)
	if err != nil {
		return err
	}
	a.Body = body
	return nil
}

// Bundle is everything a device needs to verify its current assignment:
// the vendor roots after the one it has, the vendor targets, the director
// targets (signed again when more than half of their validity is gone).
func (s *Service) Bundle(ctx context.Context, tenantID, deviceID string, haveVendorRoot int64) (*tufmeta.Bundle, *model.Assignment, error) {
	if s.director == nil {
		return nil, nil, ErrNoDirector
	}
	var b tufmeta.Bundle
	var as *model.Assignment
	err := s.st.Update(ctx, func(tx store.Tx) error {
		var err error
		if as, err = tx.GetAssignment(ctx, tenantID, deviceID); err != nil {
			return err
		}
		if as.Status.Final() {
			// Done, failed or withdrawn: nothing to install now.
			return fmt.Errorf("%w: the device's last assignment ended (%s)", store.ErrNotFound, as.Status)
		}
		vt, err := tx.LatestVendorTargets(ctx, tenantID)
		if err != nil {
			return err
		}
		if s.now().Add(s.DirectorTTL / 2).After(as.Expires) {
			art, err := tx.GetArtifact(ctx, tenantID, as.ArtifactID)
			if err != nil {
				return err
			}
			target, err := tufmeta.FindTarget(vt.Body, art.SHA256)
			if err != nil {
				return &MetadataError{err}
			}
			as.DirectorVersion++
			if err := s.signAssignment(as, target); err != nil {
				return err
			}
			if err := tx.PutAssignment(ctx, as); err != nil {
				return err
			}
		}
		roots, err := tx.VendorRoots(ctx, tenantID, haveVendorRoot)
		if err != nil {
			return err
		}
		for _, r := range roots {
			b.VendorRoots = append(b.VendorRoots, r.Body)
		}
		b.VendorTargets, b.DirectorTargets = vt.Body, as.Body
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return &b, as, nil
}

func pubsOf(keys ...*tufmeta.Key) []*metadata.Key {
	out := make([]*metadata.Key, len(keys))
	for i, k := range keys {
		out[i] = k.Public
	}
	return out
}

// DirectorRoot is the director's root metadata (nil without a director).
func (s *Service) DirectorRoot() []byte {
	if s.director == nil {
		return nil
	}
	return s.director.root
}
