// Package model holds the plain data types shared by the domain services,
// the store and the edges. It has no behaviour beyond small helpers and
// imports nothing from the project, so every other package may depend on it.
package model

import (
	"encoding/json"
	"time"
)

// TenantKind tells what sort of owner a tenant is.
type TenantKind string

const (
	TenantEnterprise TenantKind = "enterprise"
	TenantHousehold  TenantKind = "household"
	// TenantVendor is a device maker that publishes products and firmware.
	TenantVendor TenantKind = "vendor"
)

// Valid reports whether k is a known tenant kind.
func (k TenantKind) Valid() bool {
	switch k {
	case TenantEnterprise, TenantHousehold, TenantVendor:
		return true
	}
	return false
}

// Tenant is a hard wall: nothing crosses from one tenant to another.
type Tenant struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Kind      TenantKind `json:"kind"`
	CreatedAt time.Time  `json:"created_at"`
}

// Product is a device model made by a vendor.
type Product struct {
	ID               string     `json:"id"`
	TenantID         string     `json:"tenant_id"`
	Vendor           string     `json:"vendor"`
	Model            string     `json:"model"`
	HardwareRevision string     `json:"hardware_revision,omitempty"`
	EndOfSupport     *time.Time `json:"end_of_support,omitempty"`
	MUDURL           string     `json:"mud_url,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
}

// Device is one managed device.
type Device struct {
	ID              string            `json:"id"`
	TenantID        string            `json:"tenant_id"`
	ProductID       string            `json:"product_id"`
	Serial          string            `json:"serial"`
	Name            string            `json:"name,omitempty"`
	State           State             `json:"state"`
	Tags            []string          `json:"tags"`
	Attributes      map[string]string `json:"attributes"`
	FirmwareVersion string            `json:"firmware_version,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
	LastSeen        *time.Time        `json:"last_seen,omitempty"`
	// Version increases on every change; used for optimistic concurrency.
	Version int64 `json:"version"`
}

// State is a lifecycle state of a device.
type State string

const (
	StateManufactured   State = "manufactured"
	StateClaimed        State = "claimed"
	StateProvisioned    State = "provisioned"
	StateActive         State = "active"
	StateQuarantined    State = "quarantined"
	StateSuspended      State = "suspended"
	StateEndOfSupport   State = "end_of_support"
	StateDecommissioned State = "decommissioned"
)

// Transition records one lifecycle change.
type Transition struct {
	ID       int64     `json:"id"`
	DeviceID string    `json:"device_id"`
	From     State     `json:"from"`
	To       State     `json:"to"`
	Actor    string    `json:"actor"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// GroupKind separates hand-picked groups from query-defined ones.
type GroupKind string

const (
	GroupStatic  GroupKind = "static"
	GroupDynamic GroupKind = "dynamic"
)

// Group is a named set of devices: static (explicit members) or dynamic
// (every device that matches a stored query, evaluated when read).
type Group struct {
	ID          string       `json:"id"`
	TenantID    string       `json:"tenant_id"`
	Name        string       `json:"name"`
	Kind        GroupKind    `json:"kind"`
	Query       *DeviceQuery `json:"query,omitempty"`
	Description string       `json:"description,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
}

// Role is what an API key or user may do.
type Role string

const (
	RolePlatformAdmin Role = "platform-admin"
	RoleTenantAdmin   Role = "tenant-admin"
	RoleOperator      Role = "operator"
	RoleViewer        Role = "viewer"
	RoleVendor        Role = "vendor"
	RoleDevice        Role = "device"
)

// Valid reports whether r is a role that may be given to an API key.
func (r Role) Valid() bool {
	switch r {
	case RolePlatformAdmin, RoleTenantAdmin, RoleOperator, RoleViewer, RoleVendor:
		return true
	}
	return false
}

// APIKey is the stored form of a key: never the secret itself.
type APIKey struct {
	ID        string     `json:"id"`
	TenantID  string     `json:"tenant_id,omitempty"` // empty for platform admins
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Hash      []byte     `json:"-"`
	Role      Role       `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	LastUsed  *time.Time `json:"last_used,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// AuditRecord is one link of a tenant's hash chain.
type AuditRecord struct {
	TenantID string          `json:"tenant_id"`
	Seq      int64           `json:"seq"`
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Target   string          `json:"target"`
	Summary  json.RawMessage `json:"summary,omitempty"`
	PrevHash []byte          `json:"prev_hash"`
	Hash     []byte          `json:"hash"`
}

// AuditEntry is what a domain service hands to the store; the store fills in
// sequence, time and hashes inside the same transaction as the change.
type AuditEntry struct {
	Actor   string
	Action  string
	Target  string
	Summary any
}

// Event is a domain event: written to the outbox with the change, then
// published on the bus, streamed over SSE and delivered to webhooks.
type Event struct {
	ID       string          `json:"id"`
	Seq      uint64          `json:"seq,omitempty"` // bus sequence, set once published
	TenantID string          `json:"tenant_id"`
	Type     string          `json:"type"`
	Subject  string          `json:"subject"`
	Time     time.Time       `json:"time"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Webhook is a tenant's subscription to events.
type Webhook struct {
	ID       string   `json:"id"`
	TenantID string   `json:"tenant_id"`
	URL      string   `json:"url"`
	Types    []string `json:"types"` // empty = all; "device.*" matches a family
	// Secret signs deliveries. The store keeps it sealed; it reads as
	// empty when it cannot be opened with the server's secrets key.
	Secret    string    `json:"-"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
}

// WebhookDelivery is one attempt (or pending attempt) to deliver an event.
type WebhookDelivery struct {
	ID          int64      `json:"id"`
	WebhookID   string     `json:"webhook_id"`
	TenantID    string     `json:"tenant_id"`
	EventID     string     `json:"event_id"`
	EventType   string     `json:"event_type"`
	Payload     []byte     `json:"-"`
	Attempts    int        `json:"attempts"`
	Status      string     `json:"status"` // pending, delivered, failed
	LastCode    int        `json:"last_status_code,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}
