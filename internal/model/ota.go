package model

import "time"

// ---- updates (OTA) ----

// Artifact is one update image: what it is for (products, hardware), its
// version and, once uploaded, its content's length and SHA-256. The content
// is stored by its digest and never changes after the upload.
type Artifact struct {
	ID           string     `json:"id"`
	TenantID     string     `json:"tenant_id"`
	Name         string     `json:"name" doc:"A file name for the image, e.g. firmware-1.4.2.bin."`
	Version      string     `json:"version" doc:"The firmware version the image installs."`
	ProductIDs   []string   `json:"product_ids" doc:"Products the image is for."`
	HardwareIDs  []string   `json:"hardware_ids" doc:"Hardware identifiers the image fits."`
	SBOMRef      string     `json:"sbom_ref,omitempty" doc:"Where the image's SBOM is (e.g. the firmware version of an imported SBOM, or a URL)."`
	ReleaseNotes string     `json:"release_notes,omitempty"`
	SHA256       string     `json:"sha256,omitempty" doc:"Hex SHA-256 of the content, set by the upload."`
	Length       int64      `json:"length" doc:"Bytes of content (0 until uploaded)."`
	UploadedAt   *time.Time `json:"uploaded_at,omitempty"`
	// InvalidatedAt is set when the release was found bad: no device may
	// install it any more.
	InvalidatedAt     *time.Time `json:"invalidated_at,omitempty"`
	InvalidatedReason string     `json:"invalidated_reason,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	CreatedBy         string     `json:"created_by"`
}

// Uploaded reports whether the artifact has its content.
func (a *Artifact) Uploaded() bool { return a.UploadedAt != nil }

// VendorRoot is one version of a tenant's vendor root metadata (TUF root:
// the vendor's root and targets keys and thresholds), as signed offline.
type VendorRoot struct {
	TenantID  string    `json:"tenant_id"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	Body      []byte    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// VendorTargets is one version of a tenant's vendor targets metadata (what
// each image is), as signed offline.
type VendorTargets struct {
	TenantID  string    `json:"tenant_id"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	Targets   int       `json:"targets" doc:"How many images it lists."`
	Body      []byte    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// Assignment is the image the director currently tells one device to
// install, with the director's signed targets metadata for it.
type Assignment struct {
	DeviceID   string `json:"device_id"`
	TenantID   string `json:"tenant_id"`
	ArtifactID string `json:"artifact_id"`
	TargetName string `json:"target_name"`
	Version    string `json:"version" doc:"The image's firmware version."`
	HardwareID string `json:"hardware_id"`
	CampaignID string `json:"campaign_id,omitempty"`
	// DirectorVersion is the version of the device's director targets
	// metadata; it only grows.
	DirectorVersion int64 `json:"director_version"`
	// Status is the device's last report on it (pending until the first);
	// a final status ends the assignment: the director serves no metadata
	// for it any more.
	Status    UpdateStatus `json:"status"`
	Detail    string       `json:"detail,omitempty" doc:"The device's reason for a failure, or why the platform withdrew it."`
	StatusAt  *time.Time   `json:"status_at,omitempty"`
	Body      []byte       `json:"-"`
	Expires   time.Time    `json:"expires"`
	CreatedAt time.Time    `json:"created_at"`
	CreatedBy string       `json:"created_by"`
}
