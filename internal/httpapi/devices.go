package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/lifecycle"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
)

// deviceView is a device plus what a client needs to act on it.
type deviceView struct {
	model.Device
	AllowedTransitions []model.State `json:"allowed_transitions" doc:"States this device may move to next."`
}

func view(d *model.Device) *deviceView {
	return &deviceView{Device: *d, AllowedTransitions: nonNil(lifecycle.Next(d.State))}
}

type deviceOut struct {
	ETag string `header:"ETag" doc:"The device's version; send it back in If-Match to update safely."`
	Body *deviceView
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

type deviceCreateIn struct {
	Body struct {
		ProductID       string            `json:"product_id" minLength:"1" maxLength:"64"`
		Serial          string            `json:"serial" minLength:"1" maxLength:"128"`
		Name            string            `json:"name,omitempty" maxLength:"128"`
		State           model.State       `json:"state,omitempty" enum:"manufactured,claimed,provisioned,active" doc:"Initial state; default manufactured."`
		Tags            []string          `json:"tags,omitempty" maxItems:"32"`
		Attributes      map[string]string `json:"attributes,omitempty"`
		FirmwareVersion string            `json:"firmware_version,omitempty" maxLength:"64"`
	}
}

type deviceIDIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
}

type devicePatchIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	IfMatch  string `header:"If-Match" doc:"ETag from a previous read; the update is refused with 412 if the device changed since."`
	Body     struct {
		Name            *string            `json:"name,omitempty" maxLength:"128"`
		Tags            *[]string          `json:"tags,omitempty" maxItems:"32"`
		Attributes      *map[string]string `json:"attributes,omitempty"`
		FirmwareVersion *string            `json:"firmware_version,omitempty" maxLength:"64"`
	}
}

type transitionIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	Body     struct {
		To     model.State `json:"to" enum:"manufactured,claimed,provisioned,active,quarantined,suspended,end_of_support,decommissioned"`
		Reason string      `json:"reason" minLength:"1" maxLength:"1024" doc:"Why; kept in the audit trail."`
	}
}

type transitionOut struct {
	Body struct {
		Device     *deviceView       `json:"device"`
		Transition *model.Transition `json:"transition"`
	}
}

type transitionListIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	PageIn
}

type transitionList struct {
	Body struct {
		Items      []model.Transition `json:"items"`
		NextCursor string             `json:"next_cursor,omitempty"`
	}
}

type deviceListIn struct {
	ProductID       string   `query:"product_id" maxLength:"64"`
	State           []string `query:"state" doc:"Comma-separated lifecycle states."`
	Tag             []string `query:"tag" doc:"Comma-separated tags; the device must carry all of them."`
	Attr            []string `query:"attr,explode" doc:"key=value; repeat for several."`
	FirmwareVersion string   `query:"firmware_version" maxLength:"64" doc:"Exact firmware version."`
	MinVersion      string   `query:"min_version" maxLength:"64" doc:"Firmware version at least this (numeric per component)."`
	MaxVersion      string   `query:"max_version" maxLength:"64" doc:"Firmware version below this."`
	SeenAfter       string   `query:"seen_after" doc:"RFC 3339 time."`
	SeenBefore      string   `query:"seen_before" doc:"RFC 3339 time."`
	NeverSeen       bool     `query:"never_seen" doc:"Only devices that never connected."`
	GroupID         string   `query:"group_id" maxLength:"64"`
	SerialPrefix    string   `query:"serial_prefix" maxLength:"128"`
	Sort            string   `query:"sort" enum:"id,serial,last_seen,firmware_version,created_at" default:"id"`
	Order           string   `query:"order" enum:"asc,desc" default:"asc"`
	Limit           int      `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor          string   `query:"cursor" maxLength:"1024"`
}

// query turns the parameters into a fleet query, naming a bad one.
func (in *deviceListIn) query() (model.DeviceQuery, error) {
	q := model.DeviceQuery{ProductID: in.ProductID, Tags: in.Tag, FirmwareVersion: in.FirmwareVersion,
		MinVersion: in.MinVersion, MaxVersion: in.MaxVersion, NeverSeen: in.NeverSeen, GroupID: in.GroupID,
		SerialPrefix: in.SerialPrefix}
	bad := func(loc, msg string) error {
		return huma.Error422UnprocessableEntity(loc+": "+msg, &huma.ErrorDetail{Location: "query." + loc, Message: msg})
	}
	for _, s := range in.State {
		if !model.State(s).Known() {
			return q, bad("state", fmt.Sprintf("%q is not a lifecycle state", s))
		}
		q.States = append(q.States, model.State(s))
	}
	for _, kv := range in.Attr {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return q, bad("attr", fmt.Sprintf("%q must be key=value", kv))
		}
		if q.Attrs == nil {
			q.Attrs = map[string]string{}
		}
		q.Attrs[k] = v
	}
	for _, t := range []struct {
		name string
		val  string
		dst  **time.Time
	}{{"seen_after", in.SeenAfter, &q.SeenAfter}, {"seen_before", in.SeenBefore, &q.SeenBefore}} {
		if t.val == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.val)
		if err != nil {
			return q, bad(t.name, fmt.Sprintf("%q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", t.val))
		}
		*t.dst = &v
	}
	// Name the parameter at fault, not "query" as a whole.
	for _, v := range []struct{ name, val string }{{"min_version", in.MinVersion}, {"max_version", in.MaxVersion}} {
		if _, err := model.VersionKey(v.val); v.val != "" && err != nil {
			return q, bad(v.name, err.Error())
		}
	}
	for _, tag := range in.Tag {
		if err := model.ValidTag(tag); err != nil {
			return q, bad("tag", err.Error())
		}
	}
	if err := q.Validate(); err != nil {
		return q, bad("query", err.Error())
	}
	return q, nil
}

type deviceList struct {
	Body struct {
		Items      []deviceView `json:"items"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}
}

type fleetSummary struct {
	Body struct {
		Total   int64                 `json:"total"`
		ByState map[model.State]int64 `json:"by_state"`
	}
}

func (a *API) routesDevices() {
	reg(a, huma.Operation{OperationID: "createDevice", Method: http.MethodPost, Path: Prefix + "/devices",
		Summary: "Register a device", DefaultStatus: http.StatusCreated},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *deviceCreateIn) (*deviceOut, error) {
			b := in.Body
			d, err := a.Registry.CreateDevice(ctx, authz.From(ctx), tenantOf(ctx), registry.DeviceInput{
				ProductID: b.ProductID, Serial: b.Serial, Name: b.Name, State: b.State, Tags: b.Tags,
				Attributes: b.Attributes, FirmwareVersion: b.FirmwareVersion})
			if err != nil {
				return nil, err
			}
			return &deviceOut{ETag: etag(d.Version), Body: view(d)}, nil
		})
	reg(a, huma.Operation{OperationID: "listDevices", Method: http.MethodGet, Path: Prefix + "/devices",
		Summary: "Query the fleet", Description: "Filters combine with AND. Pages are keyset-based: follow next_cursor."},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *deviceListIn) (*deviceList, error) {
			q, err := in.query()
			if err != nil {
				return nil, err
			}
			items, next, err := a.Store.QueryDevices(ctx, tenantOf(ctx), q, model.Page{Limit: in.Limit, Cursor: in.Cursor,
				Sort: model.SortField(in.Sort), Desc: in.Order == "desc"})
			if err != nil {
				return nil, err
			}
			out := &deviceList{}
			out.Body.Items = make([]deviceView, len(items))
			for i := range items {
				out.Body.Items[i] = *view(&items[i])
			}
			out.Body.NextCursor = next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "fleetSummary", Method: http.MethodGet, Path: Prefix + "/fleet/summary",
		Summary: "Count devices by lifecycle state"}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, _ *struct{}) (*fleetSummary, error) {
			m, err := a.Store.CountDevicesByState(ctx, tenantOf(ctx))
			if err != nil {
				return nil, err
			}
			out := &fleetSummary{}
			out.Body.ByState = map[model.State]int64{}
			for _, s := range lifecycle.States() {
				out.Body.ByState[s] = m[s]
				out.Body.Total += m[s]
			}
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getDevice", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}",
		Summary: "Get a device"}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *deviceIDIn) (*deviceOut, error) {
			d, err := a.Store.GetDevice(ctx, tenantOf(ctx), in.DeviceID)
			if err != nil {
				return nil, notFoundAs(err, "device", in.DeviceID)
			}
			return &deviceOut{ETag: etag(d.Version), Body: view(d)}, nil
		})
	reg(a, huma.Operation{OperationID: "updateDevice", Method: http.MethodPatch, Path: Prefix + "/devices/{deviceID}",
		Summary: "Change a device's name, tags, attributes or firmware version"},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *devicePatchIn) (*deviceOut, error) {
			var ifv int64
			if in.IfMatch != "" {
				v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(in.IfMatch, "W/"), `"`), 10, 64)
				if err != nil || v <= 0 {
					return nil, huma.Error400BadRequest("If-Match must be an ETag this API returned, such as \"3\"")
				}
				ifv = v
			}
			b := in.Body
			d, err := a.Registry.UpdateDevice(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID, registry.DevicePatch{
				Name: b.Name, Tags: b.Tags, Attributes: b.Attributes, FirmwareVersion: b.FirmwareVersion}, ifv)
			if err != nil {
				return nil, notFoundAs(err, "device", in.DeviceID)
			}
			return &deviceOut{ETag: etag(d.Version), Body: view(d)}, nil
		})
	reg(a, huma.Operation{OperationID: "deleteDevice", Method: http.MethodDelete, Path: Prefix + "/devices/{deviceID}",
		Summary: "Erase a manufactured or decommissioned device", DefaultStatus: http.StatusNoContent},
		access{perm: authz.DevicesLifecycle, tenant: true},
		func(ctx context.Context, in *deviceIDIn) (*struct{}, error) {
			return nil, notFoundAs(a.Registry.DeleteDevice(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID), "device", in.DeviceID)
		})
	reg(a, huma.Operation{OperationID: "transitionDevice", Method: http.MethodPost, Path: Prefix + "/devices/{deviceID}/transitions",
		Summary:     "Move a device to another lifecycle state",
		Description: "Refused with 409 when the lifecycle does not allow it; the error names the current state and the allowed ones."},
		access{perm: authz.DevicesLifecycle, tenant: true},
		func(ctx context.Context, in *transitionIn) (*transitionOut, error) {
			d, tr, err := a.Registry.Transition(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID, in.Body.To, in.Body.Reason)
			if err != nil {
				return nil, notFoundAs(err, "device", in.DeviceID)
			}
			out := &transitionOut{}
			out.Body.Device, out.Body.Transition = view(d), tr
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "listDeviceTransitions", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/transitions",
		Summary: "A device's lifecycle history"}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *transitionListIn) (*transitionList, error) {
			if _, err := a.Store.GetDevice(ctx, tenantOf(ctx), in.DeviceID); err != nil {
				return nil, notFoundAs(err, "device", in.DeviceID)
			}
			items, next, err := a.Store.ListTransitions(ctx, tenantOf(ctx), in.DeviceID, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &transitionList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
}
