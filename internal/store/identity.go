package store

import (
	"context"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// IdentityReader holds the reads of the device PKI: issued certificates,
// manufacturer CAs, factory keys, claim codes, bootstrap and device tokens.
//
// Most reads take the tenant like every other read. The few that do not
// ("Locate…", "Find…", "…ByLookup", "…ByPrefix", DeviceToken) are how a
// device that presents a credential is found before anyone knows its
// tenant, exactly like GetAPIKeyByPrefix for API keys; they are only called
// by the enrollment and authentication paths, never with an ID a tenant
// chose.
type IdentityReader interface {
	// GetCertificate is one of the tenant's certificates by hex serial.
	GetCertificate(ctx context.Context, tenantID, serial string) (*model.Certificate, error)
	// ListCertificates lists a device's certificates, newest first.
	ListCertificates(ctx context.Context, tenantID, deviceID string, o ListOptions) ([]model.Certificate, string, error)
	// LocateCertificate finds a certificate by serial in any tenant.
	LocateCertificate(ctx context.Context, serial string) (*model.Certificate, error)
	// RevokedCertificates lists every revoked certificate (all tenants)
	// still valid at or after notAfter: the CRL's entries.
	RevokedCertificates(ctx context.Context, notAfter time.Time) ([]model.Certificate, error)
	// CertificatesByKey lists certificates (any tenant) whose public key has
	// this fingerprint (hex SHA-256 of the SPKI).
	CertificatesByKey(ctx context.Context, keyFingerprint string) ([]model.Certificate, error)

	// LocateDevice finds a device by ID in any tenant.
	LocateDevice(ctx context.Context, deviceID string) (*model.Device, error)
	// FindDeviceBySerial finds the device of a product with a serial, in
	// whichever tenant owns it now.
	FindDeviceBySerial(ctx context.Context, productID, serial string) (*model.Device, error)
	// DevicesBySerial lists the tenant's devices with this serial (one per product).
	DevicesBySerial(ctx context.Context, tenantID, serial string) ([]model.Device, error)
	// DeviceProduct is the product of one of the tenant's devices (the
	// product may belong to the vendor's tenant).
	DeviceProduct(ctx context.Context, tenantID, deviceID string) (*model.Product, error)

	GetManufacturerCA(ctx context.Context, tenantID, id string) (*model.ManufacturerCA, error)
	ListManufacturerCAs(ctx context.Context, tenantID, productID string) ([]model.ManufacturerCA, error)
	// FindManufacturerCAs lists CAs (any tenant) with this subject key ID
	// or this subject hash (hex; either may be empty).
	FindManufacturerCAs(ctx context.Context, subjectKeyID, subjectHash string) ([]model.ManufacturerCA, error)

	// FindDevicePublicKey finds a registered factory key by fingerprint.
	FindDevicePublicKey(ctx context.Context, fingerprint string) (*model.DevicePublicKey, error)

	// ClaimCodeByLookup finds a claim code by its lookup part.
	ClaimCodeByLookup(ctx context.Context, lookup string) (*model.ClaimCode, error)
	// DeviceClaimCode is the claim code of one of the tenant's devices.
	DeviceClaimCode(ctx context.Context, tenantID, deviceID string) (*model.ClaimCode, error)

	// BootstrapTokenByPrefix finds a bootstrap token by its lookup prefix.
	BootstrapTokenByPrefix(ctx context.Context, prefix string) (*model.BootstrapToken, error)
	GetBootstrapToken(ctx context.Context, tenantID, id string) (*model.BootstrapToken, error)
	ListBootstrapTokens(ctx context.Context, tenantID string, o ListOptions) ([]model.BootstrapToken, string, error)

	// DeviceToken is the current token of a device (any tenant).
	DeviceToken(ctx context.Context, deviceID string) (*model.DeviceToken, error)

	// PlatformCA is the CA this database belongs to (ErrNotFound before
	// the first start).
	PlatformCA(ctx context.Context) (*model.PlatformCA, error)
}

// IdentityWriter changes the device PKI inside a transaction (Tx embeds
// it), so each change commits together with its audit record and events.
type IdentityWriter interface {
	CreateCertificate(ctx context.Context, c *model.Certificate) error
	// RevokeCertificate marks a certificate revoked; ErrNotFound when the
	// tenant has no such certificate, ErrStale when it is already revoked.
	RevokeCertificate(ctx context.Context, tenantID, serial string, at time.Time, reason model.RevocationReason, by string) error
	// SetCertificateSuccessor records that serial was renewed by successor.
	SetCertificateSuccessor(ctx context.Context, tenantID, serial, successor string) error

	// CreateManufacturerCA stores a CA; a conflict when the product already has it.
	CreateManufacturerCA(ctx context.Context, ca *model.ManufacturerCA) error
	DeleteManufacturerCA(ctx context.Context, tenantID, productID, id string) error

	// CreateDevicePublicKey stores a factory key; a conflict when the key is
	// already registered (for any device).
	CreateDevicePublicKey(ctx context.Context, k *model.DevicePublicKey) error

	// PutClaimCode sets a device's claim code, replacing an earlier one.
	PutClaimCode(ctx context.Context, c *model.ClaimCode) error
	// MarkClaimCodeClaimed records the claim; ErrStale when it was claimed already.
	MarkClaimCodeClaimed(ctx context.Context, lookup, byTenant string, at time.Time) error
	// MarkClaimCodeEnrolled records the enrollment; ErrStale when it happened already.
	MarkClaimCodeEnrolled(ctx context.Context, tenantID, lookup string, at time.Time) error

	// MoveDevice hands a device, with its tags, attributes and identity
	// records, from one tenant to another. Group memberships and the twin
	// are removed; the lifecycle history, commands and telemetry stay with
	// the old tenant.
	MoveDevice(ctx context.Context, fromTenant, toTenant, deviceID string) error

	CreateBootstrapToken(ctx context.Context, t *model.BootstrapToken) error
	// UseBootstrapToken consumes a token for a device; ErrStale when it was
	// used or revoked already.
	UseBootstrapToken(ctx context.Context, tenantID, id, deviceID string, at time.Time) error
	// RevokeBootstrapToken: ErrNotFound when missing, ErrStale when already used or revoked.
	RevokeBootstrapToken(ctx context.Context, tenantID, id string, at time.Time) error

	// PutDeviceToken sets a device's token, replacing an earlier one.
	PutDeviceToken(ctx context.Context, t *model.DeviceToken) error
	// RevokeDeviceToken: ErrNotFound when the device has no active token.
	RevokeDeviceToken(ctx context.Context, tenantID, deviceID string, at time.Time) error

	// CreatePlatformCA records the platform's CA once; a conflict when one is recorded.
	CreatePlatformCA(ctx context.Context, ca *model.PlatformCA) error
}
