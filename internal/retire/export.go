package retire

import (
	"context"
	"errors"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// ExportFormat names the export document's format and version.
const ExportFormat = "steward-device-export/1"

// MaxExportPoints caps the telemetry points of one export; past it the
// document says it was truncated (the newest points are the ones left
// out: export before retention or use the telemetry API for more).
const MaxExportPoints = 500_000

// DeviceExport is everything a tenant holds about one device, as JSON.
type DeviceExport struct {
	Format       string                     `json:"format"`
	ExportedAt   time.Time                  `json:"exported_at"`
	Device       model.Device               `json:"device"`
	Product      *model.Product             `json:"product,omitempty"`
	Transitions  []model.Transition         `json:"transitions"`
	Certificates []model.Certificate        `json:"certificates"`
	Twin         *model.Twin                `json:"twin,omitempty"`
	Telemetry    map[string][]ExportedPoint `json:"telemetry"`
	Commands     []model.Command            `json:"commands"`
	Findings     []model.Finding            `json:"findings"`
	Flows        []model.ObservedFlow       `json:"flows"`
	Counts       map[string]int             `json:"counts"`
	Truncated    bool                       `json:"truncated,omitempty" doc:"More telemetry points than an export holds."`
}

// ExportedPoint is one telemetry value.
type ExportedPoint struct {
	Time  time.Time `json:"ts"`
	Value any       `json:"value"`
}

// BuildExport reads the device's data of the tenant.
func BuildExport(ctx context.Context, r store.Reader, tenantID, deviceID string, now time.Time) (*DeviceExport, error) {
	d, err := r.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return nil, err
	}
	x := &DeviceExport{Format: ExportFormat, ExportedAt: now, Device: *d, Transitions: []model.Transition{},
		Certificates: []model.Certificate{}, Telemetry: map[string][]ExportedPoint{}, Commands: []model.Command{},
		Findings: []model.Finding{}, Flows: []model.ObservedFlow{}, Counts: map[string]int{}}
	if p, err := r.DeviceProduct(ctx, tenantID, deviceID); err == nil {
		x.Product = p
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err := pageAll(func(o store.ListOptions) (string, error) {
		ts, next, err := r.ListTransitions(ctx, tenantID, deviceID, o)
		x.Transitions = append(x.Transitions, ts...)
		return next, err
	}); err != nil {
		return nil, err
	}
	if err := pageAll(func(o store.ListOptions) (string, error) {
		cs, next, err := r.ListCertificates(ctx, tenantID, deviceID, o)
		x.Certificates = append(x.Certificates, cs...)
		return next, err
	}); err != nil {
		return nil, err
	}
	if tw, err := r.GetTwin(ctx, tenantID, deviceID); err == nil {
		x.Twin = tw
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err := pageAll(func(o store.ListOptions) (string, error) {
		cs, next, err := r.ListCommands(ctx, tenantID, deviceID, o)
		x.Commands = append(x.Commands, cs...)
		return next, err
	}); err != nil {
		return nil, err
	}
	if err := pageAll(func(o store.ListOptions) (string, error) {
		fs, next, err := r.ListFindings(ctx, tenantID, model.FindingQuery{ResourceID: deviceID, Now: now}, o)
		x.Findings = append(x.Findings, fs...)
		return next, err
	}); err != nil {
		return nil, err
	}
	if err := pageAll(func(o store.ListOptions) (string, error) {
		fs, next, err := r.ListObservedFlows(ctx, tenantID, deviceID, o)
		x.Flows = append(x.Flows, fs...)
		return next, err
	}); err != nil {
		return nil, err
	}
	latest, err := r.LatestTelemetry(ctx, tenantID, deviceID)
	if err != nil {
		return nil, err
	}
	points, until := 0, now.Add(time.Second)
	for _, l := range latest {
		from := time.Unix(0, 0).UTC()
		for !x.Truncated {
			batch := min(10_000, MaxExportPoints-points)
			if batch == 0 {
				x.Truncated = true
				break
			}
			ps, err := r.QueryTelemetry(ctx, tenantID, deviceID, l.Metric, from, until, batch)
			if err != nil {
				return nil, err
			}
			for _, p := range ps {
				x.Telemetry[l.Metric] = append(x.Telemetry[l.Metric], ExportedPoint{Time: p.Time, Value: p.Value()})
			}
			points += len(ps)
			if len(ps) < batch {
				break
			}
			from = ps[len(ps)-1].Time.Add(time.Microsecond)
		}
	}
	x.Counts = map[string]int{"transitions": len(x.Transitions), "certificates": len(x.Certificates), "telemetry_points": points,
		"commands": len(x.Commands), "findings": len(x.Findings), "flows": len(x.Flows)}
	return x, nil
}

func pageAll(fn func(store.ListOptions) (string, error)) error {
	cursor := ""
	for {
		next, err := fn(store.ListOptions{Limit: 1000, Cursor: cursor})
		if err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}
