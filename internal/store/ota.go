package store

import (
	"context"
	"time"

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

	// OpenAssignmentsOf lists the tenant's assignments of an artifact that
	// have not ended.
	OpenAssignmentsOf(ctx context.Context, tenantID, artifactID string) ([]model.Assignment, error)

	GetCampaign(ctx context.Context, tenantID, id string) (*model.Campaign, error)
	// ListCampaigns pages the tenant's campaigns, newest first.
	ListCampaigns(ctx context.Context, tenantID string, o ListOptions) ([]model.Campaign, string, error)
	// OpenCampaigns lists running and paused campaigns of every tenant
	// (tenantID "") or of one, for the scheduler.
	OpenCampaigns(ctx context.Context, tenantID string) ([]model.Campaign, error)
	// CampaignsOfArtifact lists the tenant's campaigns of an artifact.
	CampaignsOfArtifact(ctx context.Context, tenantID, artifactID string) ([]model.Campaign, error)
	// CampaignCounts counts the devices per status: of every wave started
	// so far (wave > 0; what the gates look at), or of one wave.
	CampaignCounts(ctx context.Context, tenantID, campaignID string, wave int) (map[model.UpdateStatus]int64, error)
	// CampaignWaiting counts the devices not yet in a wave (wave 0 and pending).
	CampaignWaiting(ctx context.Context, tenantID, campaignID string) (int64, error)
	GetCampaignDevice(ctx context.Context, tenantID, campaignID, deviceID string) (*model.CampaignDevice, error)
	// ReadyCampaignDevices lists up to limit devices of started waves still
	// to be told: pending, with no consent asked or consent granted.
	ReadyCampaignDevices(ctx context.Context, tenantID, campaignID string, limit int) ([]model.CampaignDevice, error)
	// ListCampaignDevices pages a campaign's devices by device ID, optionally
	// of one status.
	ListCampaignDevices(ctx context.Context, tenantID, campaignID string, status model.UpdateStatus, o ListOptions) ([]model.CampaignDevice, string, error)
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
	// SetAssignmentStatus records the device's report on its assignment of
	// artifactID (ErrNotFound when the assignment is of another artifact).
	SetAssignmentStatus(ctx context.Context, tenantID, deviceID, artifactID string, s model.UpdateStatus, detail string, at time.Time) error
	// InvalidateArtifact marks a release bad (ErrStale: it already is).
	InvalidateArtifact(ctx context.Context, tenantID, id, reason string, at time.Time) error

	// CreateCampaign stores c and targets every device of its query that
	// fits (by product, in a state that can update), setting c.Total.
	CreateCampaign(ctx context.Context, c *model.Campaign, products []string) error
	// UpdateCampaign saves c if its Rev is still the stored one (else
	// ErrStale) and increments c.Rev.
	UpdateCampaign(ctx context.Context, c *model.Campaign) error
	// JoinCampaign adds one device to an open dynamic campaign when it
	// matches the query (and is not in it yet), in wave; reports whether it
	// joined.
	JoinCampaign(ctx context.Context, c *model.Campaign, products []string, deviceID string, wave int, at time.Time) (bool, error)
	// TakeWave moves up to n devices waiting (wave 0, pending, consent not
	// asked) into wave, lowest device IDs first, with consent (ConsentAsked
	// when the owner must confirm first), and returns their IDs.
	TakeWave(ctx context.Context, tenantID, campaignID string, wave, n int, consent model.Consent, at time.Time) ([]string, error)
	// SetCampaignDevice saves one device's status, consent and detail.
	SetCampaignDevice(ctx context.Context, d *model.CampaignDevice) error
	// EndCampaignDevices gives every device of the campaign that has not
	// finished the status (cancelled) with a detail, and returns their IDs
	// of the waves started (those that were told to install).
	EndCampaignDevices(ctx context.Context, tenantID, campaignID string, s model.UpdateStatus, detail string, at time.Time) ([]string, error)
}
