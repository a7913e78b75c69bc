package model

import (
	"encoding/json"
	"time"
)

// ---- vulnerabilities ----

// SBOMFormat names the kind of software bill of materials a document is.
type SBOMFormat string

const (
	SBOMCycloneDX SBOMFormat = "cyclonedx"
	SBOMSPDX      SBOMFormat = "spdx"
)

// SBOM is the bill of materials of one firmware version of a product.
type SBOM struct {
	ID              string     `json:"id"`
	TenantID        string     `json:"tenant_id"`
	ProductID       string     `json:"product_id"`
	FirmwareVersion string     `json:"firmware_version"`
	Format          SBOMFormat `json:"format"`
	SpecVersion     string     `json:"spec_version" doc:"CycloneDX specVersion or SPDX version of the document."`
	Name            string     `json:"name,omitempty" doc:"What the document says it describes."`
	Components      int        `json:"components" doc:"How many components it lists."`
	// Unmatched counts components without a package URL: they cannot be
	// matched against advisories and are listed so the gap is visible.
	Unmatched  int       `json:"components_without_purl"`
	SHA256     string    `json:"sha256" doc:"SHA-256 of the imported document."`
	ImportedAt time.Time `json:"imported_at"`
	ImportedBy string    `json:"imported_by"`
}

// SBOMComponent is one package an SBOM lists.
type SBOMComponent struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	PURL    string `json:"purl,omitempty"`
	// Ecosystem and Package are the OSV coordinates derived from the
	// package URL ("" when it has none or names no known ecosystem).
	Ecosystem string `json:"ecosystem,omitempty"`
	Package   string `json:"package,omitempty"`
}

// FirmwareComponent is a component together with the firmware it is in.
type FirmwareComponent struct {
	ProductID       string
	FirmwareVersion string
	SBOMComponent
}

// FirmwareRef names one firmware version of one product.
type FirmwareRef struct {
	ProductID       string `json:"product_id"`
	FirmwareVersion string `json:"firmware_version"`
}

// Advisory is a stored OSV record. TenantID "" is a platform-wide advisory
// (every tenant sees it); a tenant's own advisories are seen only by it.
type Advisory struct {
	TenantID  string     `json:"tenant_id,omitempty"`
	ID        string     `json:"id"`
	Aliases   []string   `json:"aliases"`
	Summary   string     `json:"summary,omitempty"`
	Severity  string     `json:"severity" doc:"critical, high, medium, low or unknown (from CVSS vectors or the source's own rating)."`
	Published *time.Time `json:"published,omitempty"`
	Modified  time.Time  `json:"modified"`
	Withdrawn *time.Time `json:"withdrawn,omitempty" doc:"Set when the source withdrew it; withdrawn advisories match nothing."`
	// Packages lists the affected packages as ecosystem/name.
	Packages   []string        `json:"packages"`
	Record     json.RawMessage `json:"record,omitempty" doc:"The OSV record as imported."`
	ImportedAt time.Time       `json:"imported_at"`
	ImportedBy string          `json:"imported_by"`
}

// AffectedPackage is one "affected" entry of an advisory, in the form the
// matcher uses. Ranges and Versions are the OSV JSON of the entry.
type AffectedPackage struct {
	TenantID   string          `json:"-"`
	AdvisoryID string          `json:"advisory_id"`
	Index      int             `json:"-"`
	Ecosystem  string          `json:"ecosystem"`
	Package    string          `json:"package"`
	Ranges     json.RawMessage `json:"ranges,omitempty"`
	Versions   json.RawMessage `json:"versions,omitempty"`
	Severity   string          `json:"-"`
	Withdrawn  bool            `json:"-"`
}

// AdvisoryImport counts what an import did.
type AdvisoryImport struct {
	Added     int      `json:"added"`
	Updated   int      `json:"updated"`
	Unchanged int      `json:"unchanged" doc:"Records already stored with the same or a newer modified time."`
	IDs       []string `json:"ids,omitempty" doc:"IDs added or updated (at most 100 listed)."`
}

// ---- network policy (MUD, RFC 8520) ----

// MUDProfile is the imported MUD file of a product and the flows it allows.
type MUDProfile struct {
	TenantID   string          `json:"tenant_id"`
	ProductID  string          `json:"product_id"`
	MUDURL     string          `json:"mud_url"`
	SystemInfo string          `json:"systeminfo,omitempty"`
	MfgName    string          `json:"mfg_name,omitempty"`
	ModelName  string          `json:"model_name,omitempty"`
	LastUpdate *time.Time      `json:"last_update,omitempty"`
	Flows      []AllowedFlow   `json:"allowed_flows"`
	Document   json.RawMessage `json:"document,omitempty" doc:"The MUD file as imported."`
	SHA256     string          `json:"sha256"`
	ImportedAt time.Time       `json:"imported_at"`
	ImportedBy string          `json:"imported_by"`
}

// AllowedFlow is one flow a MUD profile permits, derived from an ACE.
type AllowedFlow struct {
	ACL string `json:"acl"`
	ACE string `json:"ace"`
	// Direction is from-device (the device sends) or to-device.
	Direction string `json:"direction"`
	// Family is ipv4, ipv6 or "" (both).
	Family string `json:"family,omitempty"`
	// Protocol is tcp, udp, icmp, an IP protocol number, or "" (any).
	Protocol string `json:"protocol,omitempty"`
	// The remote end: a DNS name, a network, or a MUD class
	// (local-networks, same-manufacturer, manufacturer, model, controller,
	// my-controller), with its value where it has one.
	RemoteHost    string `json:"remote_host,omitempty"`
	RemoteNetwork string `json:"remote_network,omitempty"`
	RemoteClass   string `json:"remote_class,omitempty"`
	ClassValue    string `json:"class_value,omitempty"`
	// Ports of the remote and the device ends: [low, high], zero = any.
	RemotePorts [2]int `json:"remote_ports,omitzero"`
	LocalPorts  [2]int `json:"local_ports,omitzero"`
	// InitiatedBy (TCP only) is from-device or to-device: who may open
	// the connection; "" = either.
	InitiatedBy string `json:"initiated_by,omitempty"`
}

// ObservedFlow is a flow an agent or gateway saw a device take part in,
// aggregated by its key (direction, protocol, remote and ports).
type ObservedFlow struct {
	TenantID      string    `json:"-"`
	DeviceID      string    `json:"device_id"`
	Key           string    `json:"id" doc:"Stable key of the flow."`
	Direction     string    `json:"direction"`
	Protocol      string    `json:"protocol"`
	RemoteHost    string    `json:"remote_host,omitempty"`
	RemoteAddress string    `json:"remote_address,omitempty"`
	RemotePort    int       `json:"remote_port,omitempty"`
	LocalPort     int       `json:"local_port,omitempty"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
	Reports       int64     `json:"reports"`
	Bytes         int64     `json:"bytes"`
	Packets       int64     `json:"packets"`
	// Allowed is the verdict against the device's MUD profile when the
	// flow was last reported; "no_profile" when the product has none.
	Verdict string `json:"verdict" doc:"allowed, outside_profile or no_profile (when last reported)."`
}

// ---- findings ----

// Severity ranks a finding.
type Severity string

const (
	SeverityCritical Severity = "critical"
	SeverityHigh     Severity = "high"
	SeverityMedium   Severity = "medium"
	SeverityLow      Severity = "low"
	SeverityInfo     Severity = "info"
)

// Rank orders severities: critical 4 … info 0; unknown -1.
func (s Severity) Rank() int {
	switch s {
	case SeverityCritical:
		return 4
	case SeverityHigh:
		return 3
	case SeverityMedium:
		return 2
	case SeverityLow:
		return 1
	case SeverityInfo:
		return 0
	}
	return -1
}

// FindingStatus is whether a finding's condition still holds.
type FindingStatus string

const (
	FindingOpen     FindingStatus = "open"
	FindingResolved FindingStatus = "resolved"
)

// Finding is what one audit check found about one resource. A check that
// no longer fires resolves it; firing again reopens it.
type Finding struct {
	ID           string          `json:"id"`
	TenantID     string          `json:"tenant_id,omitempty"`
	Check        string          `json:"check"`
	ResourceType string          `json:"resource_type" doc:"device, product, api_key, certificate, audit_chain, tenant …"`
	ResourceID   string          `json:"resource_id"`
	Key          string          `json:"key,omitempty" doc:"Tells apart several findings of one check on one resource (e.g. a flow)."`
	Severity     Severity        `json:"severity"`
	Title        string          `json:"title"`
	Evidence     json.RawMessage `json:"evidence"`
	Status       FindingStatus   `json:"status"`
	FirstSeen    time.Time       `json:"first_seen"`
	LastSeen     time.Time       `json:"last_seen"`
	ResolvedAt   *time.Time      `json:"resolved_at,omitempty"`
	// Suppression hides an open finding until it expires.
	SuppressedUntil  *time.Time `json:"suppressed_until,omitempty"`
	SuppressedReason string     `json:"suppressed_reason,omitempty"`
	SuppressedBy     string     `json:"suppressed_by,omitempty"`
}

// Suppressed reports whether the finding is suppressed at now.
func (f *Finding) Suppressed(now time.Time) bool {
	return f.SuppressedUntil != nil && now.Before(*f.SuppressedUntil)
}

// FindingQuery filters a list of findings; zero values match everything.
type FindingQuery struct {
	Status     FindingStatus
	Check      string
	ResourceID string
	// MinSeverity keeps findings at least this severe.
	MinSeverity Severity
	// Suppressed: nil = both, true = only suppressed, false = only not
	// suppressed, at Now.
	Suppressed *bool
	Now        time.Time
}

// SecuritySettings are a tenant's thresholds for the audit checks.
type SecuritySettings struct {
	// StaleAfterDays: a device not seen for this long is a finding.
	StaleAfterDays int `json:"stale_after_days"`
	// MaxTenantAdminKeys: more active tenant-admin keys is a finding.
	MaxTenantAdminKeys int `json:"max_tenant_admin_keys"`
	// UnusedKeyDays: a key without expiry unused this long is a finding.
	UnusedKeyDays int `json:"unused_key_days"`
	// FlowWindowHours: observed flows count for this long after they were
	// last reported; a deviation not seen again resolves after it.
	FlowWindowHours int `json:"flow_window_hours"`
	// Detection holds the behaviour detection thresholds and automatic
	// mitigations (alarm.go).
	Detection DetectionSettings `json:"detection"`
	UpdatedAt *time.Time        `json:"updated_at,omitempty"`
	UpdatedBy string            `json:"updated_by,omitempty"`
}

// DefaultSecuritySettings are used until a tenant sets its own.
func DefaultSecuritySettings() SecuritySettings {
	return SecuritySettings{StaleAfterDays: 7, MaxTenantAdminKeys: 3, UnusedKeyDays: 90, FlowWindowHours: 24,
		Detection: DefaultDetectionSettings()}
}

// ActiveCertificate is the part of a device's current certificate the
// audit checks look at.
type ActiveCertificate struct {
	Serial         string
	DeviceID       string
	KeyFingerprint string
	KeyAlgorithm   string
	NotAfter       time.Time
}
