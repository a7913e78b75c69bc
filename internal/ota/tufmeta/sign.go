package tufmeta

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Role names used in the roots.
const (
	RoleRoot    = metadata.ROOT
	RoleTargets = metadata.TARGETS
)

// ImageInfo is what the vendor says an image is: the custom field of a
// vendor target.
type ImageInfo struct {
	Version     string   `json:"version"`
	HardwareIDs []string `json:"hardware_ids"`
	// ReleaseNotes, SBOMRef are informational.
	SBOMRef string `json:"sbom_ref,omitempty"`
}

// Assignment is what the director says about one device's image: the
// custom field of a director target.
type Assignment struct {
	DeviceID   string `json:"device_id"`
	HardwareID string `json:"hardware_id"`
	Version    string `json:"version"`
	ArtifactID string `json:"artifact_id,omitempty"`
	CampaignID string `json:"campaign_id,omitempty"`
}

// RoleKeys is the keys and threshold of one role.
type RoleKeys struct {
	Keys      []*metadata.Key
	Threshold int
}

// NewRoot builds (unsigned) root metadata naming the keys of the root and
// targets roles.
func NewRoot(version int64, expires time.Time, root, targets RoleKeys) (*metadata.Metadata[metadata.RootType], error) {
	m := metadata.Root(expires.UTC().Truncate(time.Second))
	m.Signed.Version = version
	for role, rk := range map[string]RoleKeys{RoleRoot: root, RoleTargets: targets} {
		if rk.Threshold < 1 || rk.Threshold > len(rk.Keys) {
			return nil, fmt.Errorf("%s role: threshold %d with %d keys", role, rk.Threshold, len(rk.Keys))
		}
		for _, k := range rk.Keys {
			if err := m.Signed.AddKey(k, role); err != nil {
				return nil, err
			}
		}
		m.Signed.Roles[role].Threshold = rk.Threshold
	}
	return m, nil
}

// NewTargets builds empty (unsigned) targets metadata.
func NewTargets(version int64, expires time.Time) *metadata.Metadata[metadata.TargetsType] {
	m := metadata.Targets(expires.UTC().Truncate(time.Second))
	m.Signed.Version = version
	return m
}

// AddTarget puts an image into targets metadata under name, with its
// length, hex SHA-256 and custom info (ImageInfo or Assignment).
func AddTarget(m *metadata.Metadata[metadata.TargetsType], name string, length int64, sha256Hex string, custom any) error {
	sum, err := hex.DecodeString(sha256Hex)
	if err != nil || len(sum) != 32 {
		return fmt.Errorf("target %s: %q is not a hex SHA-256", name, sha256Hex)
	}
	raw, err := json.Marshal(custom)
	if err != nil {
		return err
	}
	rm := json.RawMessage(raw)
	m.Signed.Targets[name] = &metadata.TargetFiles{Length: length, Hashes: metadata.Hashes{"sha256": sum}, Custom: &rm, Path: name}
	return nil
}

// Sign adds a signature of each key (keeping signatures by other keys, so
// several holders can sign the same metadata in turn to reach a threshold).
func Sign[T metadata.Roles](m *metadata.Metadata[T], keys ...*Key) error {
	if len(keys) == 0 {
		return errors.New("no signing key")
	}
	for _, k := range keys {
		m.Signatures = slices.DeleteFunc(m.Signatures, func(s metadata.Signature) bool { return s.KeyID == k.ID })
		if _, err := m.Sign(k.Signer); err != nil {
			return fmt.Errorf("signing with key %s: %w", k.ID, err)
		}
	}
	return nil
}

// Encode serialises metadata for storage and transfer.
func Encode[T metadata.Roles](m *metadata.Metadata[T]) ([]byte, error) { return m.ToBytes(false) }
