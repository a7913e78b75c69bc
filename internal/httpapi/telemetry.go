package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
)

type telemetryValue struct {
	Metric string    `json:"metric"`
	Time   time.Time `json:"ts"`
	Value  any       `json:"value" doc:"A number, string or boolean."`
}

type telemetryLatestOut struct {
	Body struct {
		Items []telemetryValue `json:"items"`
	}
}

type telemetryQueryIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	Metric   string `query:"metric" required:"true" minLength:"1" maxLength:"128"`
	From     string `query:"from" doc:"RFC 3339; default: 24 h before to."`
	To       string `query:"to" doc:"RFC 3339, exclusive; default: now."`
	Step     string `query:"step" doc:"Bucket size as a duration (30s, 5m, 1h) or seconds; empty: the raw points (at most 10000)."`
}

type telemetryQueryOut struct {
	Body struct {
		Metric      string                  `json:"metric"`
		From        time.Time               `json:"from"`
		To          time.Time               `json:"to"`
		StepSeconds float64                 `json:"step_seconds,omitempty"`
		Buckets     []model.TelemetryBucket `json:"buckets,omitempty" doc:"avg/min/max/count per step of numeric and boolean (0/1) points; empty steps are left out."`
		Points      []telemetryValue        `json:"points,omitempty"`
	}
}

type retentionOut struct {
	Body struct {
		RetentionSeconds int64 `json:"retention_seconds"`
		Default          bool  `json:"default" doc:"True when the tenant uses the platform default."`
	}
}

type retentionIn struct {
	Body struct {
		RetentionSeconds int64 `json:"retention_seconds" minimum:"0" doc:"How long points are kept; 0 returns to the platform default."`
	}
}

func (a *API) routesTelemetry() {
	reg(a, huma.Operation{OperationID: "latestTelemetry", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/telemetry/latest",
		Summary: "The last value of each of a device's metrics"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *deviceIDIn) (*telemetryLatestOut, error) {
			pts, err := a.Connectivity.Telemetry.Latest(ctx, tenantOf(ctx), in.DeviceID)
			if err != nil {
				return nil, connErr(err, in.DeviceID)
			}
			out := &telemetryLatestOut{}
			out.Body.Items = make([]telemetryValue, len(pts))
			for i := range pts {
				out.Body.Items[i] = telemetryValue{Metric: pts[i].Metric, Time: pts[i].Time, Value: pts[i].Value()}
			}
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "queryTelemetry", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/telemetry",
		Summary: "Read one metric over a time range, raw or downsampled"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *telemetryQueryIn) (*telemetryQueryOut, error) {
			bad := func(field, msg string) error {
				return huma.Error422UnprocessableEntity(field+": "+msg, &huma.ErrorDetail{Location: "query." + field, Message: msg})
			}
			to := now()
			if in.To != "" {
				v, err := time.Parse(time.RFC3339Nano, in.To)
				if err != nil {
					return nil, bad("to", fmt.Sprintf("%q is not an RFC 3339 time", in.To))
				}
				to = v
			}
			from := to.Add(-24 * time.Hour)
			if in.From != "" {
				v, err := time.Parse(time.RFC3339Nano, in.From)
				if err != nil {
					return nil, bad("from", fmt.Sprintf("%q is not an RFC 3339 time", in.From))
				}
				from = v
			}
			var step time.Duration
			if in.Step != "" {
				if n, err := strconv.ParseFloat(in.Step, 64); err == nil {
					step = time.Duration(n * float64(time.Second))
				} else if d, err := time.ParseDuration(in.Step); err == nil {
					step = d
				} else {
					return nil, bad("step", fmt.Sprintf("%q is not a duration such as 5m or a number of seconds", in.Step))
				}
				if step < time.Millisecond {
					return nil, bad("step", "must be at least 1ms")
				}
			}
			s, err := a.Connectivity.Telemetry.Query(ctx, tenantOf(ctx), in.DeviceID, in.Metric, from, to, step)
			if err != nil {
				return nil, connErr(err, in.DeviceID)
			}
			out := &telemetryQueryOut{}
			out.Body.Metric, out.Body.From, out.Body.To = in.Metric, from.UTC(), to.UTC()
			if step > 0 {
				out.Body.StepSeconds = step.Seconds()
				out.Body.Buckets = nonNil(s.Buckets)
			} else {
				out.Body.Points = make([]telemetryValue, len(s.Points))
				for i := range s.Points {
					out.Body.Points[i] = telemetryValue{Metric: s.Points[i].Metric, Time: s.Points[i].Time, Value: s.Points[i].Value()}
				}
			}
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getTelemetryRetention", Method: http.MethodGet, Path: Prefix + "/telemetry/retention",
		Summary: "How long the tenant's telemetry is kept"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, _ *struct{}) (*retentionOut, error) {
			d, def, err := a.Connectivity.Telemetry.Retention(ctx, tenantOf(ctx))
			if err != nil {
				return nil, err
			}
			out := &retentionOut{}
			out.Body.RetentionSeconds, out.Body.Default = int64(d/time.Second), def
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "setTelemetryRetention", Method: http.MethodPut, Path: Prefix + "/telemetry/retention",
		Summary: "Set how long the tenant's telemetry is kept (tenant admins)"},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *retentionIn) (*retentionOut, error) {
			p := authz.From(ctx)
			if !p.Platform() && p.Role != model.RoleTenantAdmin {
				return nil, huma.Error403Forbidden(fmt.Sprintf("role %s may not change the retention; tenant admins may", p.Role))
			}
			if err := a.Connectivity.Telemetry.SetRetention(ctx, p, tenantOf(ctx), time.Duration(in.Body.RetentionSeconds)*time.Second); err != nil {
				return nil, connErr(err, "")
			}
			d, def, err := a.Connectivity.Telemetry.Retention(ctx, tenantOf(ctx))
			if err != nil {
				return nil, err
			}
			out := &retentionOut{}
			out.Body.RetentionSeconds, out.Body.Default = int64(d/time.Second), def
			return out, nil
		})
}
