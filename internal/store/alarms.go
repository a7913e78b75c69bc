package store

import (
	"context"

	"github.com/steward-iot/steward/internal/model"
)

// AlarmReader reads behaviour alarms; every read takes the tenant.
type AlarmReader interface {
	GetAlarm(ctx context.Context, tenantID, id string) (*model.Alarm, error)
	// ListAlarms pages the tenant's alarms matching q, newest first.
	ListAlarms(ctx context.Context, tenantID string, q model.AlarmQuery, o ListOptions) ([]model.Alarm, string, error)
	// OpenAlarm is the device's open (active or acknowledged) alarm of a
	// kind; ErrNotFound when there is none.
	OpenAlarm(ctx context.Context, tenantID, deviceID string, kind model.AlarmKind) (*model.Alarm, error)
	// OpenAlarms lists every open alarm of every tenant, oldest first, after
	// the ID given (at most limit): a detector starting up takes them over.
	OpenAlarms(ctx context.Context, afterID string, limit int) ([]model.Alarm, error)
}

// AlarmWriter changes alarms inside a transaction, beside their audit
// records and events.
type AlarmWriter interface {
	// CreateAlarm stores a new alarm; ErrConflict when the device already
	// has an open alarm of the same kind.
	CreateAlarm(ctx context.Context, a *model.Alarm) error
	// UpdateAlarm writes an alarm's severity, state, title, last raised,
	// count, evidence, acknowledgement, cleared time and mitigation.
	UpdateAlarm(ctx context.Context, a *model.Alarm) error
}
