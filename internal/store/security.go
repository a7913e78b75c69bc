package store

import (
	"context"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// SecurityReader holds the reads of the security engine: SBOMs and their
// components, advisories, MUD profiles, observed flows, findings and the
// tenant's check settings.
//
// Every read takes the tenant. Advisories a tenant sees are the
// platform-wide ones (tenant "") and its own. A product's SBOMs and MUD
// profile are read through a device of the tenant when the product belongs
// to the vendor's tenant (as DeviceProduct does): the device row carries
// the wall.
type SecurityReader interface {
	// GetSBOM is the SBOM of one firmware version of one of the tenant's products.
	GetSBOM(ctx context.Context, tenantID, productID, firmwareVersion string) (*model.SBOM, error)
	// ListSBOMs lists the SBOMs of one of the tenant's products by firmware version.
	ListSBOMs(ctx context.Context, tenantID, productID string, o ListOptions) ([]model.SBOM, string, error)
	// ListSBOMComponents lists the components of one SBOM in document order.
	ListSBOMComponents(ctx context.Context, tenantID, productID, firmwareVersion string, o ListOptions) ([]model.SBOMComponent, string, error)
	// DeviceFirmwareComponents lists the components of the SBOM of the
	// firmware the device runs (its product and firmware version); none
	// when there is no such SBOM. ErrNotFound when the tenant has no such device.
	DeviceFirmwareComponents(ctx context.Context, tenantID, deviceID string) ([]model.FirmwareComponent, error)
	// RunningFirmwareComponents lists the components, with a package, of
	// every SBOM whose firmware at least one of the tenant's devices runs;
	// with packages non-empty, only components of those packages
	// ("ecosystem/name" keys).
	RunningFirmwareComponents(ctx context.Context, tenantID string, packages []string) ([]model.FirmwareComponent, error)
	// ProductFirmwareComponents lists the components of packages in every
	// SBOM of a product the tenant owns or runs on one of its devices.
	ProductFirmwareComponents(ctx context.Context, tenantID, productID string, packages []string) ([]model.FirmwareComponent, error)
	// ProductFirmwareVersions lists the firmware versions of a product
	// (owned or run by the tenant) that have an SBOM.
	ProductFirmwareVersions(ctx context.Context, tenantID, productID string) ([]string, error)
	// DevicesRunning pages (by ID) the tenant's devices that run one of the
	// firmware versions given.
	DevicesRunning(ctx context.Context, tenantID string, fw []model.FirmwareRef, o ListOptions) ([]model.Device, string, error)

	// GetAdvisory finds an advisory the tenant sees by ID or alias (the
	// tenant's own first). Every match is returned: an alias such as a CVE
	// may name several records.
	GetAdvisories(ctx context.Context, tenantID, idOrAlias string) ([]model.Advisory, error)
	// ListAdvisories pages the advisories the tenant sees, by ID (the
	// platform's and the tenant's; Record left out).
	ListAdvisories(ctx context.Context, tenantID string, o ListOptions) ([]model.Advisory, string, error)
	// AffectedPackages returns the affected entries, visible to the
	// tenant, of advisories that name any of packages.
	AffectedPackages(ctx context.Context, tenantID string, packages []string) ([]model.AffectedPackage, error)
	// AdvisoryAffected returns the affected entries of the named advisories visible to the tenant.
	AdvisoryAffected(ctx context.Context, tenantID string, advisoryIDs []string) ([]model.AffectedPackage, error)

	// GetMUDProfile is the MUD profile of one of the tenant's products.
	GetMUDProfile(ctx context.Context, tenantID, productID string) (*model.MUDProfile, error)
	// DeviceMUDProfile is the MUD profile of a device's product (ErrNotFound
	// when the product has none or the tenant has no such device).
	DeviceMUDProfile(ctx context.Context, tenantID, deviceID string) (*model.MUDProfile, error)
	// ListObservedFlows pages a device's observed flows by key.
	ListObservedFlows(ctx context.Context, tenantID, deviceID string, o ListOptions) ([]model.ObservedFlow, string, error)
	// RecentFlows lists the tenant's flows last reported at or after since
	// (of one device when deviceID is not "").
	RecentFlows(ctx context.Context, tenantID, deviceID string, since time.Time) ([]model.ObservedFlow, error)

	GetFinding(ctx context.Context, tenantID, id string) (*model.Finding, error)
	// ListFindings pages the tenant's findings matching q, newest first.
	ListFindings(ctx context.Context, tenantID string, q model.FindingQuery, o ListOptions) ([]model.Finding, string, error)
	// CheckFindings lists every finding of one check (any status); with
	// resourceIDs non-empty, only those about these resources.
	CheckFindings(ctx context.Context, tenantID, check string, resourceIDs []string) ([]model.Finding, error)

	// GetSecuritySettings returns the tenant's settings (defaults when unset).
	GetSecuritySettings(ctx context.Context, tenantID string) (model.SecuritySettings, error)

	// ActiveCertificates pages (by serial) the tenant's current device
	// certificates: not revoked, not renewed, of devices not decommissioned.
	ActiveCertificates(ctx context.Context, tenantID, afterSerial string, limit int) ([]model.ActiveCertificate, error)
	// TenantIDs lists every tenant ID, for the per-tenant scheduler.
	TenantIDs(ctx context.Context) ([]string, error)
}

// SecurityWriter changes the security engine's records inside a
// transaction, beside their audit records and events.
type SecurityWriter interface {
	// PutSBOM stores (or replaces) the SBOM of a firmware version of one
	// of the tenant's products with its components.
	PutSBOM(ctx context.Context, s *model.SBOM, components []model.SBOMComponent) error
	// DeleteSBOM: ErrNotFound when there is none.
	DeleteSBOM(ctx context.Context, tenantID, productID, firmwareVersion string) error

	// PutAdvisory stores an advisory with its affected entries, replacing
	// an earlier version with the same ID in the same scope. It reports
	// false (and changes nothing) when the stored one has the same or a
	// newer modified time.
	PutAdvisory(ctx context.Context, a *model.Advisory, affected []model.AffectedPackage) (bool, error)

	// PutMUDProfile stores (or replaces) a product's MUD profile.
	PutMUDProfile(ctx context.Context, p *model.MUDProfile) error
	// DeleteMUDProfile: ErrNotFound when there is none.
	DeleteMUDProfile(ctx context.Context, tenantID, productID string) error
	// PutObservedFlows adds reports to a device's flows: counts add up,
	// first seen stays, last seen and the verdict move on.
	PutObservedFlows(ctx context.Context, tenantID, deviceID string, flows []model.ObservedFlow) error
	// PruneObservedFlows deletes the tenant's flows last seen before t.
	PruneObservedFlows(ctx context.Context, tenantID string, before time.Time) (int64, error)

	// CreateFinding stores a new finding; a conflict when the tenant
	// already has one for the same check, resource and key.
	CreateFinding(ctx context.Context, f *model.Finding) error
	// UpdateFinding writes a finding's severity, title, evidence, status,
	// last seen and resolved time.
	UpdateFinding(ctx context.Context, f *model.Finding) error
	// SetFindingSuppression suppresses a finding until the time given with
	// a reason, or (until nil) lifts the suppression. ErrNotFound when the
	// tenant has no such finding.
	SetFindingSuppression(ctx context.Context, tenantID, id string, until *time.Time, reason, by string) error

	// PutSecuritySettings stores the tenant's settings.
	PutSecuritySettings(ctx context.Context, tenantID string, s model.SecuritySettings) error
}
