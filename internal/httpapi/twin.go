package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/commands"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/telemetry"
	"github.com/steward-iot/steward/internal/twin"
)

// Connectivity are the device messaging services behind the twin,
// command and telemetry routes (twin.go, commands.go, telemetry.go).
type Connectivity struct {
	Twin      *twin.Service
	Commands  *commands.Service
	Telemetry *telemetry.Service
	// Connection reports a device's live MQTT connection on this node.
	Connection func(tenantID, deviceID string) broker.Connection
}

// routesConnectivity registers the twin, command and telemetry routes
// when the platform provides the services.
func (a *API) routesConnectivity() {
	if a.Connectivity.Twin == nil {
		return
	}
	a.routesTwin()
	a.routesCommands()
	a.routesTelemetry()
}

// connErr maps the connectivity services' errors onto problem answers.
func connErr(err error, deviceID string) error {
	var ti *twin.InvalidError
	var tc *twin.ConflictError
	var ci *commands.InvalidError
	var te *telemetry.InvalidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ti):
		return huma.Error422UnprocessableEntity(ti.Error(), &huma.ErrorDetail{Location: "body", Message: ti.Message})
	case errors.As(err, &tc):
		return huma.Error409Conflict(tc.Error())
	case errors.As(err, &ci):
		return huma.Error422UnprocessableEntity(ci.Error(), &huma.ErrorDetail{Location: "body." + ci.Field, Message: ci.Message})
	case errors.As(err, &te):
		return huma.Error422UnprocessableEntity(te.Error(), &huma.ErrorDetail{Location: "query." + te.Field, Message: te.Message})
	}
	return notFoundAs(err, "device", deviceID)
}

type twinDoc struct {
	Version   int64          `json:"version" doc:"Increases by one on every change; 0 = never set."`
	State     map[string]any `json:"state"`
	UpdatedAt *time.Time     `json:"updated_at,omitempty"`
}

type twinView struct {
	DeviceID string         `json:"device_id"`
	Desired  twinDoc        `json:"desired"`
	Reported twinDoc        `json:"reported"`
	Delta    map[string]any `json:"delta" doc:"Desired values the device has not reported yet."`
}

type twinOut struct {
	ETag string `header:"ETag" doc:"The desired version; send it back in If-Match to change desired safely."`
	Body *twinView
}

func twinOutOf(tw *model.Twin) *twinOut {
	v := &twinView{DeviceID: tw.DeviceID, Delta: twin.Delta(tw),
		Desired:  twinDoc{Version: tw.DesiredVersion, UpdatedAt: tw.DesiredAt},
		Reported: twinDoc{Version: tw.ReportedVersion, UpdatedAt: tw.ReportedAt}}
	json.Unmarshal(tw.Desired, &v.Desired.State)
	json.Unmarshal(tw.Reported, &v.Reported.State)
	if v.Desired.State == nil {
		v.Desired.State = map[string]any{}
	}
	if v.Reported.State == nil {
		v.Reported.State = map[string]any{}
	}
	return &twinOut{ETag: etag(tw.DesiredVersion), Body: v}
}

type twinSetIn struct {
	DeviceID string         `path:"deviceID" maxLength:"64"`
	IfMatch  string         `header:"If-Match" doc:"ETag (desired version) from a previous read; the change is refused with 409 if desired changed since."`
	Body     map[string]any `doc:"A JSON object (at most 32 KiB, 8 levels)."`
}

func (a *API) routesTwin() {
	reg(a, huma.Operation{OperationID: "getTwin", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/twin",
		Summary: "Read a device's desired and reported state and their delta"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *deviceIDIn) (*twinOut, error) {
			tw, err := a.Connectivity.Twin.Get(ctx, tenantOf(ctx), in.DeviceID)
			if err != nil {
				return nil, connErr(err, in.DeviceID)
			}
			return twinOutOf(tw), nil
		})
	set := func(merge bool) func(context.Context, *twinSetIn) (*twinOut, error) {
		return func(ctx context.Context, in *twinSetIn) (*twinOut, error) {
			ifv := int64(-1)
			if in.IfMatch != "" {
				v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(in.IfMatch, "W/"), `"`), 10, 64)
				if err != nil || v < 0 {
					return nil, huma.Error400BadRequest("If-Match must be an ETag this API returned, such as \"3\"")
				}
				ifv = v
			}
			doc, err := json.Marshal(in.Body)
			if err != nil {
				return nil, err
			}
			tw, err := a.Connectivity.Twin.SetDesired(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID, doc, merge, ifv)
			if err != nil {
				return nil, connErr(err, in.DeviceID)
			}
			return twinOutOf(tw), nil
		}
	}
	reg(a, huma.Operation{OperationID: "patchTwinDesired", Method: http.MethodPatch, Path: Prefix + "/devices/{deviceID}/twin/desired",
		Summary:     "Merge a patch into the desired state (RFC 7396: null removes a member)",
		Description: "The device receives the new desired document and the delta over MQTT (docs/protocol.md)."},
		access{perm: authz.DevicesWrite, tenant: true}, set(true))
	reg(a, huma.Operation{OperationID: "putTwinDesired", Method: http.MethodPut, Path: Prefix + "/devices/{deviceID}/twin/desired",
		Summary: "Replace the desired state"},
		access{perm: authz.DevicesWrite, tenant: true}, set(false))
	reg(a, huma.Operation{OperationID: "getDeviceConnection", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/connection",
		Summary: "Whether the device is connected to this node's MQTT broker"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *deviceIDIn) (*struct{ Body broker.Connection }, error) {
			if _, err := a.Store.GetDevice(ctx, tenantOf(ctx), in.DeviceID); err != nil {
				return nil, notFoundAs(err, "device", in.DeviceID)
			}
			out := &struct{ Body broker.Connection }{}
			if a.Connectivity.Connection != nil {
				out.Body = a.Connectivity.Connection(tenantOf(ctx), in.DeviceID)
			}
			return out, nil
		})
}
