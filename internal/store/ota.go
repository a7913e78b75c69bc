package store

import (
	"context"

	"github.com/steward-iot/steward/internal/model"
)

// OTAReader holds the reads of the update service: artifacts.
type OTAReader interface {
	GetArtifact(ctx context.Context, tenantID, id string) (*model.Artifact, error)
	// ListArtifacts pages the tenant's artifacts, newest first.
	ListArtifacts(ctx context.Context, tenantID string, o ListOptions) ([]model.Artifact, string, error)
	// ArtifactDigestInUse reports whether any artifact (of any tenant)
	// holds content with this SHA-256: the blob it names is still needed.
	ArtifactDigestInUse(ctx context.Context, sha256 string) (bool, error)
	// ArtifactsByDigest lists the tenant's artifacts with this content.
	ArtifactsByDigest(ctx context.Context, tenantID, sha256 string) ([]model.Artifact, error)

	// VendorRoots lists the tenant's vendor roots with a version above
	// afterVersion, oldest first (the chain a device walks).
	VendorRoots(ctx context.Context, tenantID string, afterVersion int64) ([]model.VendorRoot, error)
	// LatestVendorRoot is the newest (ErrNotFound: none yet).
	LatestVendorRoot(ctx context.Context, tenantID string) (*model.VendorRoot, error)
	// LatestVendorTargets is the newest (ErrNotFound: none yet).
	LatestVendorTargets(ctx context.Context, tenantID string) (*model.VendorTargets, error)

	// GetAssignment is the device's current assignment (ErrNotFound: none).
	GetAssignment(ctx context.Context, tenantID, deviceID string) (*model.Assignment, error)
}

// OTAWriter holds the changes of the update service.
type OTAWriter interface {
	CreateArtifact(ctx context.Context, a *model.Artifact) error
	// SetArtifactContent records the uploaded content (SHA256, Length,
	// UploadedAt of a) once: ErrStale when the artifact already has content.
	SetArtifactContent(ctx context.Context, a *model.Artifact) error
	DeleteArtifact(ctx context.Context, tenantID, id string) error

	// AddVendorRoot stores the next root (ErrConflict: that version exists).
	AddVendorRoot(ctx context.Context, r *model.VendorRoot) error
	// AddVendorTargets stores a targets version (ErrConflict: it exists).
	AddVendorTargets(ctx context.Context, t *model.VendorTargets) error
	// PutAssignment creates or replaces the device's assignment; its
	// DirectorVersion must be above the stored one (else ErrStale).
	PutAssignment(ctx context.Context, a *model.Assignment) error
}
