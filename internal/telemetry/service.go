package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// DefaultRetention is how long points are kept unless a tenant says otherwise.
const DefaultRetention = 30 * 24 * time.Hour

// Query limits.
const (
	MaxBuckets   = 10000
	MaxRawPoints = 10000
	MinRetention = time.Hour
	MaxRetention = 10 * 365 * 24 * time.Hour
)

// InvalidError is a query or setting that cannot be served as asked.
type InvalidError struct{ Field, Message string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

// Service answers telemetry queries and keeps retention.
type Service struct {
	st  store.Store
	log *slog.Logger
	// Default retention for tenants without their own (DefaultRetention).
	Default time.Duration
	now     func() time.Time
}

// NewService returns the telemetry service over st.
func NewService(st store.Store, log *slog.Logger, def time.Duration) *Service {
	if def <= 0 {
		def = DefaultRetention
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, log: log, Default: def, now: func() time.Time { return time.Now().UTC() }}
}

// Latest returns the device's last value per metric.
func (s *Service) Latest(ctx context.Context, tenantID, deviceID string) ([]model.TelemetryPoint, error) {
	if _, err := s.st.GetDevice(ctx, tenantID, deviceID); err != nil {
		return nil, err
	}
	return s.st.LatestTelemetry(ctx, tenantID, deviceID)
}

// Series is a query's answer: buckets when a step was given, points otherwise.
type Series struct {
	Buckets []model.TelemetryBucket
	Points  []model.TelemetryPoint
}

// Query reads one metric in [from, to): raw points (step 0) or buckets of step.
func (s *Service) Query(ctx context.Context, tenantID, deviceID, metric string, from, to time.Time, step time.Duration) (*Series, error) {
	if err := checkName(metric); err != nil {
		return nil, &InvalidError{"metric", err.Error()}
	}
	if !to.After(from) {
		return nil, &InvalidError{"to", "must be after from"}
	}
	if step < 0 {
		return nil, &InvalidError{"step", "must be positive"}
	}
	if step > 0 && to.Sub(from)/step > MaxBuckets {
		return nil, &InvalidError{"step", fmt.Sprintf("gives more than %d buckets for this range; choose a larger step", MaxBuckets)}
	}
	if _, err := s.st.GetDevice(ctx, tenantID, deviceID); err != nil {
		return nil, err
	}
	out := &Series{}
	var err error
	if step > 0 {
		out.Buckets, err = s.st.DownsampleTelemetry(ctx, tenantID, deviceID, metric, from, to, step)
	} else {
		out.Points, err = s.st.QueryTelemetry(ctx, tenantID, deviceID, metric, from, to, MaxRawPoints)
	}
	return out, err
}

// Retention returns the tenant's retention and whether it is the default.
func (s *Service) Retention(ctx context.Context, tenantID string) (time.Duration, bool, error) {
	d, err := s.st.GetTelemetryRetention(ctx, tenantID)
	if err != nil {
		return 0, false, err
	}
	if d == 0 {
		return s.Default, true, nil
	}
	return d, false, nil
}

// SetRetention sets (d > 0) or clears (d == 0) the tenant's retention,
// with an audit record and a telemetry.retention_changed event.
func (s *Service) SetRetention(ctx context.Context, p *authz.Principal, tenantID string, d time.Duration) error {
	if d != 0 && (d < MinRetention || d > MaxRetention) {
		return &InvalidError{"retention", fmt.Sprintf("must be between %s and %d days (or 0 for the platform default)", MinRetention, int(MaxRetention.Hours()/24))}
	}
	return s.st.Update(ctx, func(tx store.Tx) error {
		old, err := tx.GetTelemetryRetention(ctx, tenantID)
		if err != nil {
			return err
		}
		if err := tx.SetTelemetryRetention(ctx, tenantID, d); err != nil {
			return err
		}
		summary := map[string]any{"before_seconds": int64(old.Seconds()), "after_seconds": int64(d.Seconds())}
		if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "telemetry.retention", Target: tenantID,
			Summary: summary}); err != nil {
			return fmt.Errorf("writing the audit record: %w", err)
		}
		return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: "telemetry.retention_changed",
			Subject: tenantID, Time: s.now(), Data: mustJSON(summary)})
	})
}

// Prune deletes, for every tenant, points older than its retention. It
// returns how many points went.
func (s *Service) Prune(ctx context.Context) (int64, error) {
	own, err := s.st.TelemetryRetentions(ctx)
	if err != nil {
		return 0, err
	}
	now := s.now()
	var total int64
	cursor := ""
	for {
		tenants, next, err := s.st.ListTenants(ctx, store.ListOptions{Limit: 500, Cursor: cursor})
		if err != nil {
			return total, err
		}
		for _, t := range tenants {
			keep := s.Default
			if d, ok := own[t.ID]; ok {
				keep = d
			}
			for {
				n, err := s.st.PruneTelemetry(ctx, t.ID, now.Add(-keep), 10000)
				total += n
				if err != nil {
					return total, err
				}
				if n < 10000 {
					break
				}
			}
		}
		if next == "" {
			return total, nil
		}
		cursor = next
	}
}

// RunPruner prunes every interval until ctx ends.
func (s *Service) RunPruner(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.Prune(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("pruning telemetry", "err", err)
		} else if n > 0 {
			s.log.Info("pruned telemetry", "points", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
