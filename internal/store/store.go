// Package store is the persistence contract. Two backends implement it
// (package sqlstore: SQLite embedded by default, PostgreSQL when scaled
// out) and one conformance suite (package storetest) holds them to the same
// behaviour.
//
// Tenant walls live here: every method that reads or writes tenant data
// takes the tenant ID and puts it into the query itself, so a handler that
// forgets a check still cannot reach across.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// Errors every backend returns for the same situations, so callers can map
// them to answers without knowing the database.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique value (serial, name, key) is taken.
	ErrConflict = errors.New("already exists")
	// ErrStale: the row changed since it was read (version or state moved on).
	ErrStale = errors.New("changed concurrently")
	// ErrBadQuery: a fleet query or sort that cannot be run as asked.
	ErrBadQuery = errors.New("invalid query")
	// ErrBadCursor: a pagination cursor that this store did not issue.
	ErrBadCursor = errors.New("invalid pagination cursor")
)

// ConflictError names the value that is taken.
type ConflictError struct{ What string }

func (e *ConflictError) Error() string {
	if e.What == "" {
		return "a record with the same unique values already exists"
	}
	return e.What + " already exists"
}
func (e *ConflictError) Unwrap() error { return ErrConflict }

// ListOptions is a plain keyset page: items after Cursor, at most Limit.
type ListOptions struct {
	Limit  int
	Cursor string
}

// AuditHead is the last link of one tenant's chain.
type AuditHead struct {
	TenantID string
	Seq      int64
	Hash     []byte
}

// IdempotencyRecord remembers the answer to a creating call.
type IdempotencyRecord struct {
	Scope       string // who asked (API key ID) — keys are private to their owner
	Key         string
	RequestHash []byte
	Status      int // 0 while the first request is still running
	Body        []byte
	CreatedAt   time.Time
}

// DetectionBaseline is what behaviour detection learned about a device
// (package detect's versioned snapshot, a JSON document), kept so that a
// restart or a move to another node does not start learning again.
type DetectionBaseline struct {
	TenantID  string
	DeviceID  string
	Doc       []byte
	UpdatedAt time.Time
}

// Reader holds every read. Store and Tx both implement it.
type Reader interface {
	GetTenant(ctx context.Context, id string) (*model.Tenant, error)
	ListTenants(ctx context.Context, o ListOptions) ([]model.Tenant, string, error)

	GetProduct(ctx context.Context, tenantID, id string) (*model.Product, error)
	ListProducts(ctx context.Context, tenantID string, o ListOptions) ([]model.Product, string, error)

	GetDevice(ctx context.Context, tenantID, id string) (*model.Device, error)
	// QueryDevices returns one page of the tenant's devices matching q.
	QueryDevices(ctx context.Context, tenantID string, q model.DeviceQuery, p model.Page) ([]model.Device, string, error)
	CountDevices(ctx context.Context, tenantID string, q model.DeviceQuery) (int64, error)
	CountDevicesByState(ctx context.Context, tenantID string) (map[model.State]int64, error)
	ListTransitions(ctx context.Context, tenantID, deviceID string, o ListOptions) ([]model.Transition, string, error)

	GetGroup(ctx context.Context, tenantID, id string) (*model.Group, error)
	ListGroups(ctx context.Context, tenantID string, o ListOptions) ([]model.Group, string, error)

	// GetAPIKeyByPrefix is the one lookup that is not tenant-scoped: it is
	// how a request finds out which tenant it belongs to.
	GetAPIKeyByPrefix(ctx context.Context, prefix string) (*model.APIKey, error)
	GetAPIKey(ctx context.Context, tenantID, id string) (*model.APIKey, error)
	// ListAPIKeys lists a tenant's keys; tenantID "" lists platform keys.
	ListAPIKeys(ctx context.Context, tenantID string, o ListOptions) ([]model.APIKey, string, error)

	// ListAudit returns a tenant's records with Seq > afterSeq, oldest first.
	ListAudit(ctx context.Context, tenantID string, afterSeq int64, limit int) ([]model.AuditRecord, error)
	AuditHeads(ctx context.Context) ([]AuditHead, error)

	GetWebhook(ctx context.Context, tenantID, id string) (*model.Webhook, error)
	ListWebhooks(ctx context.Context, tenantID string) ([]model.Webhook, error)
	ListDeliveries(ctx context.Context, tenantID, webhookID string, o ListOptions) ([]model.WebhookDelivery, string, error)

	UserReader // users.go
	Overview   // overview.go

	ConnectivityReader // connectivity.go

	IdentityReader // identity.go

	SecurityReader // security.go

	OTAReader // ota.go

	DiscoveryReader // discovery.go

	AlarmReader // alarms.go

	// GetDetectionBaseline is a device's saved detection state;
	// ErrNotFound when none was saved.
	GetDetectionBaseline(ctx context.Context, tenantID, deviceID string) (*DetectionBaseline, error)
}

// Tx is one transaction. Every change is made through a Tx, together with
// its audit record and its events, so all of them commit or none does.
type Tx interface {
	Reader

	CreateTenant(ctx context.Context, t *model.Tenant) error

	CreateProduct(ctx context.Context, p *model.Product) error
	UpdateProduct(ctx context.Context, p *model.Product) error
	DeleteProduct(ctx context.Context, tenantID, id string) error

	CreateDevice(ctx context.Context, d *model.Device) error
	// UpdateDevice writes d if its stored version is still d.Version, and
	// increments d.Version; otherwise ErrStale.
	UpdateDevice(ctx context.Context, d *model.Device) error
	// SetDeviceState moves the device only if it is still in t.From.
	SetDeviceState(ctx context.Context, tenantID string, t *model.Transition) error
	DeleteDevice(ctx context.Context, tenantID, id string) error

	CreateGroup(ctx context.Context, g *model.Group) error
	DeleteGroup(ctx context.Context, tenantID, id string) error
	AddGroupMembers(ctx context.Context, tenantID, groupID string, deviceIDs []string) error
	RemoveGroupMembers(ctx context.Context, tenantID, groupID string, deviceIDs []string) error

	CreateAPIKey(ctx context.Context, k *model.APIKey) error
	RevokeAPIKey(ctx context.Context, tenantID, id string, at time.Time) error

	CreateWebhook(ctx context.Context, w *model.Webhook) error
	DeleteWebhook(ctx context.Context, tenantID, id string) error

	UserWriter // users.go

	ConnectivityWriter // connectivity.go

	IdentityWriter // identity.go

	SecurityWriter // security.go

	OTAWriter // ota.go

	DiscoveryWriter // discovery.go

	AlarmWriter // alarms.go

	// Audit appends to the tenant's hash chain ("" = platform chain).
	Audit(ctx context.Context, tenantID string, e model.AuditEntry) (*model.AuditRecord, error)
	// Emit puts an event into the outbox; it is published after commit.
	Emit(ctx context.Context, ev *model.Event) error
}

// Store is an open database.
type Store interface {
	Reader
	Users // users and sessions (users.go)

	Connectivity // telemetry and command sweeps (connectivity.go)

	ConnectionRecorder // connection observations (discovery.go)

	// PutDetectionBaselines writes devices' detection state in one
	// transaction, replacing what was saved. It is learned state, not a
	// change of record: not audited. A row whose device is not (or no
	// longer) in its tenant is skipped.
	PutDetectionBaselines(ctx context.Context, bs []DetectionBaseline) error

	// Update runs fn in one transaction and commits when it returns nil.
	Update(ctx context.Context, fn func(Tx) error) error

	// TouchAPIKey records a key's last use; cheap and not audited.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
	// TouchDevice records when a device was last seen; not audited.
	TouchDevice(ctx context.Context, tenantID, id string, at time.Time) error

	// Outbox: events written by committed transactions, oldest first.
	PendingEvents(ctx context.Context, limit int) ([]model.Event, error)
	MarkEventsPublished(ctx context.Context, ids []string) error

	// Webhook deliveries: queued by the dispatcher, retried with backoff.
	EnqueueDeliveries(ctx context.Context, ds []model.WebhookDelivery) error
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]model.WebhookDelivery, error)
	UpdateDelivery(ctx context.Context, d *model.WebhookDelivery) error

	// Idempotency keys for creating calls.
	ReserveIdempotency(ctx context.Context, r *IdempotencyRecord) (*IdempotencyRecord, error)
	CompleteIdempotency(ctx context.Context, r *IdempotencyRecord) error
	ReleaseIdempotency(ctx context.Context, scope, key string) error

	// Backend names the database ("sqlite" or "postgres").
	Backend() string
	// Ping checks the database answers.
	Ping(ctx context.Context) error
	Close() error
}

// ErrInUse: the record is still referenced and cannot be removed.
var ErrInUse = errors.New("in use")

// InUseError says what still refers to a record.
type InUseError struct {
	What  string
	Count int
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("%s is still used by %d device(s); move or delete them first", e.What, e.Count)
}
func (e *InUseError) Unwrap() error { return ErrInUse }
