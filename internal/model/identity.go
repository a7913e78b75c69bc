package model

import "time"

// EnrollMethod is how a device obtained a certificate.
type EnrollMethod string

const (
	// EnrollFactory: the device proved a factory certificate issued by a
	// manufacturer CA registered for its product.
	EnrollFactory EnrollMethod = "factory"
	// EnrollPublicKey: the device proved a key its vendor uploaded.
	EnrollPublicKey EnrollMethod = "public_key"
	// EnrollClaimCode: the device proved the claim code printed on its box
	// after an owner claimed it.
	EnrollClaimCode EnrollMethod = "claim_code"
	// EnrollBootstrapToken: a single-use, short-lived bootstrap token.
	EnrollBootstrapToken EnrollMethod = "bootstrap_token"
	// EnrollRenewal: the device renewed its operational certificate.
	EnrollRenewal EnrollMethod = "renewal"
)

// RevocationReason is why a certificate was revoked (RFC 5280 reason codes).
type RevocationReason string

const (
	ReasonUnspecified          RevocationReason = "unspecified"
	ReasonKeyCompromise        RevocationReason = "key_compromise"
	ReasonAffiliationChanged   RevocationReason = "affiliation_changed"
	ReasonSuperseded           RevocationReason = "superseded"
	ReasonCessationOfOperation RevocationReason = "cessation_of_operation"
	ReasonPrivilegeWithdrawn   RevocationReason = "privilege_withdrawn"
)

// RevocationReasons lists the reasons a caller may give.
func RevocationReasons() []RevocationReason {
	return []RevocationReason{ReasonUnspecified, ReasonKeyCompromise, ReasonAffiliationChanged, ReasonSuperseded,
		ReasonCessationOfOperation, ReasonPrivilegeWithdrawn}
}

// CRLCode is the RFC 5280 CRLReason code of r.
func (r RevocationReason) CRLCode() int {
	switch r {
	case ReasonKeyCompromise:
		return 1
	case ReasonAffiliationChanged:
		return 3
	case ReasonSuperseded:
		return 4
	case ReasonCessationOfOperation:
		return 5
	case ReasonPrivilegeWithdrawn:
		return 9
	}
	return 0
}

// Valid reports whether r is a known reason.
func (r RevocationReason) Valid() bool {
	for _, k := range RevocationReasons() {
		if r == k {
			return true
		}
	}
	return false
}

// Certificate is the record of one certificate the platform CA issued to a
// device. The certificate itself (DER) is kept too, so it can be shown and
// checked later.
type Certificate struct {
	Serial   string `json:"serial" doc:"Hex serial number."`
	TenantID string `json:"tenant_id"`
	DeviceID string `json:"device_id"`
	Subject  string `json:"subject"`
	// Fingerprint is the SHA-256 of the certificate (hex).
	Fingerprint string `json:"fingerprint_sha256"`
	// KeyFingerprint is the SHA-256 of the subject public key info (hex).
	KeyFingerprint string       `json:"public_key_sha256"`
	KeyAlgorithm   string       `json:"key_algorithm"`
	Method         EnrollMethod `json:"method"`
	NotBefore      time.Time    `json:"not_before"`
	NotAfter       time.Time    `json:"not_after"`
	IssuedAt       time.Time    `json:"issued_at"`
	// Predecessor is the certificate this one renewed; Successor the one
	// that renewed it.
	Predecessor      string           `json:"predecessor,omitempty"`
	Successor        string           `json:"successor,omitempty"`
	RevokedAt        *time.Time       `json:"revoked_at,omitempty"`
	RevocationReason RevocationReason `json:"revocation_reason,omitempty"`
	RevokedBy        string           `json:"revoked_by,omitempty"`
	DER              []byte           `json:"-"`
}

// Revoked reports whether the certificate was revoked.
func (c *Certificate) Revoked() bool { return c.RevokedAt != nil }

// ManufacturerCA is a vendor's CA whose certificates prove a device's
// factory identity for one product.
type ManufacturerCA struct {
	ID        string `json:"id"`
	TenantID  string `json:"tenant_id"`
	ProductID string `json:"product_id"`
	Name      string `json:"name"`
	Subject   string `json:"subject"`
	// SubjectKeyID (hex) and SubjectHash (SHA-256 of the raw subject, hex)
	// find the CA from a device certificate's issuer.
	SubjectKeyID string    `json:"subject_key_id,omitempty"`
	SubjectHash  string    `json:"-"`
	Fingerprint  string    `json:"fingerprint_sha256"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	CreatedAt    time.Time `json:"created_at"`
	CreatedBy    string    `json:"created_by"`
	DER          []byte    `json:"-"`
}

// DevicePublicKey is a device key its vendor registered at the factory; a
// device that proves it (TLS client certificate with that key) may enroll.
type DevicePublicKey struct {
	// Fingerprint is the SHA-256 of the subject public key info (hex).
	Fingerprint string    `json:"fingerprint_sha256"`
	TenantID    string    `json:"tenant_id"`
	DeviceID    string    `json:"device_id"`
	Algorithm   string    `json:"algorithm"`
	CreatedAt   time.Time `json:"created_at"`
	DER         []byte    `json:"-"`
}

// ClaimCode is the stored form of a device's one-time claim code: never the
// code itself. Lookup is the non-secret first part that finds the row.
type ClaimCode struct {
	Lookup    string    `json:"-"`
	Hash      []byte    `json:"-"`
	TenantID  string    `json:"tenant_id"`
	DeviceID  string    `json:"device_id"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// ClaimedAt/ClaimedBy (tenant) are set once an owner claimed the device.
	ClaimedAt *time.Time `json:"claimed_at,omitempty"`
	ClaimedBy string     `json:"claimed_by,omitempty"`
	// EnrolledAt is set once the device enrolled with the code.
	EnrolledAt *time.Time `json:"enrolled_at,omitempty"`
}

// BootstrapToken is the stored form of a single-use enrollment token.
type BootstrapToken struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id"`
	Name      string     `json:"name,omitempty"`
	Prefix    string     `json:"prefix"`
	Hash      []byte     `json:"-"`
	ProductID string     `json:"product_id,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at,omitempty"`
	UsedBy    string     `json:"used_by,omitempty" doc:"The device that enrolled with it."`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// DeviceToken is the stored form of a device's MQTT token (constrained
// devices without client certificates). A device has at most one.
type DeviceToken struct {
	DeviceID  string     `json:"device_id"`
	TenantID  string     `json:"tenant_id"`
	Prefix    string     `json:"prefix"`
	Hash      []byte     `json:"-"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// PlatformCA names the CA a platform's database belongs to (SHA-256 of the
// trust anchor and of the issuing CA, hex).
type PlatformCA struct {
	AnchorSHA256  string    `json:"anchor_sha256"`
	IssuingSHA256 string    `json:"issuing_sha256"`
	CreatedAt     time.Time `json:"created_at"`
}
