package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// ConnectivityReader reads device twins, commands and telemetry. Every
// method takes the tenant and puts it into the query.
type ConnectivityReader interface {
	// GetTwin returns the device's twin; documents never set are {} with
	// version 0. ErrNotFound when the device is not in the tenant.
	GetTwin(ctx context.Context, tenantID, deviceID string) (*model.Twin, error)

	GetCommand(ctx context.Context, tenantID, id string) (*model.Command, error)
	// ListCommands lists a device's commands, newest first.
	ListCommands(ctx context.Context, tenantID, deviceID string, o ListOptions) ([]model.Command, string, error)
	// PendingCommands returns the device's commands that still wait for
	// delivery or an answer (queued or sent) and are not due at now,
	// oldest first.
	PendingCommands(ctx context.Context, tenantID, deviceID string, now time.Time, limit int) ([]model.Command, error)

	// LatestTelemetry returns the newest point of each of the device's
	// metrics, by metric name.
	LatestTelemetry(ctx context.Context, tenantID, deviceID string) ([]model.TelemetryPoint, error)
	// QueryTelemetry returns the points of one metric with from <= time <
	// to, oldest first, at most limit.
	QueryTelemetry(ctx context.Context, tenantID, deviceID, metric string, from, to time.Time, limit int) ([]model.TelemetryPoint, error)
	// DownsampleTelemetry aggregates the numeric (and boolean, as 0/1)
	// points of one metric with from <= time < to into buckets of step,
	// the first starting at from; empty buckets are left out.
	DownsampleTelemetry(ctx context.Context, tenantID, deviceID, metric string, from, to time.Time, step time.Duration) ([]model.TelemetryBucket, error)
	// GetTelemetryRetention returns the tenant's own retention, 0 when it
	// uses the platform default.
	GetTelemetryRetention(ctx context.Context, tenantID string) (time.Duration, error)
}

// ConnectivityWriter changes twins and commands inside a transaction,
// beside their audit records and events.
type ConnectivityWriter interface {
	// PutTwinDesired stores doc as the device's desired document if its
	// desired version is still fromVersion, and makes it fromVersion+1;
	// ErrStale otherwise, ErrNotFound when the device is not in the tenant.
	PutTwinDesired(ctx context.Context, tenantID, deviceID string, doc json.RawMessage, fromVersion int64, at time.Time) error
	// PutTwinReported is PutTwinDesired for the reported document.
	PutTwinReported(ctx context.Context, tenantID, deviceID string, doc json.RawMessage, fromVersion int64, at time.Time) error

	// CreateCommand stores a new command (status queued).
	CreateCommand(ctx context.Context, c *model.Command) error
	// UpdateCommand writes c's status, sent time, attempts, completion,
	// result and error if the stored command is still in one of from;
	// ErrStale otherwise.
	UpdateCommand(ctx context.Context, c *model.Command, from ...model.CommandStatus) error

	// SetTelemetryRetention sets the tenant's retention; 0 returns it to
	// the platform default.
	SetTelemetryRetention(ctx context.Context, tenantID string, d time.Duration) error
}

// Connectivity is what the device edge writes outside transactions:
// telemetry (high volume, not audited) and the platform-wide sweeps.
type Connectivity interface {
	// WriteTelemetry stores points of any tenants in one transaction and
	// moves the last values forward. Writing the same (tenant, device,
	// metric, time) again overwrites, so a redelivered message is harmless.
	WriteTelemetry(ctx context.Context, points []model.TelemetryPoint) error
	// PruneTelemetry deletes up to limit of the tenant's points older than
	// before (and last values older than before) and returns how many
	// points went.
	PruneTelemetry(ctx context.Context, tenantID string, before time.Time, limit int) (int64, error)
	// TelemetryRetentions lists the tenants with their own retention.
	TelemetryRetentions(ctx context.Context) (map[string]time.Duration, error)
	// DueCommands returns commands of every tenant that are queued past
	// their expiry or sent past their timeout at now, oldest due first.
	DueCommands(ctx context.Context, now time.Time, limit int) ([]model.Command, error)
}
