package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/discovery"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/retire"
	"github.com/steward-iot/steward/internal/store"
)

// Lifecycle are the end-of-life and discovery services behind the
// decommission, release, export and neighbour routes (lifecycle.go).
type Lifecycle struct {
	Retire    *retire.Service
	Discovery *discovery.Service
}

type decommissionIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	Body     struct {
		Data   string `json:"data,omitempty" enum:"erase,export,keep" default:"erase" doc:"What happens to the device's telemetry, commands, twin, findings and flows: erase them, export them (returned in this answer) and then erase them, or keep them on the tombstone."`
		Wipe   *bool  `json:"wipe,omitempty" doc:"Send the wipe command first if the device is connected, and wait up to 15 s for its answer (default true)."`
		Reason string `json:"reason,omitempty" maxLength:"1024"`
	}
}

type decommissionOut struct{ Body *retire.Decommissioned }

type releaseIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	Body     *struct {
		Reason string `json:"reason,omitempty" maxLength:"1024"`
	}
}

type releaseOut struct {
	Body struct {
		DeviceID            string                 `json:"device_id"`
		Serial              string                 `json:"serial"`
		ProductID           string                 `json:"product_id"`
		ClaimCode           string                 `json:"claim_code" doc:"The new owner's one-time claim code. Returned this once: hand it on with the device."`
		CertificatesRevoked int                    `json:"certificates_revoked"`
		TokenRevoked        bool                   `json:"token_revoked"`
		Erased              model.DeviceDataCounts `json:"erased"`
	}
}

type exportOut struct{ Body *retire.DeviceExport }

type neighbourListIn struct {
	// Spelled out: huma skips the fields of an embedded unexported struct.
	Limit     int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size."`
	Cursor    string `query:"cursor" maxLength:"1024" doc:"next_cursor of the previous page."`
	Status    string `query:"status" enum:"unmanaged,known,adopted" doc:"Only neighbours with this status."`
	Site      string `query:"site" maxLength:"128" doc:"Only neighbours seen on this site (the reporting device's site attribute)."`
	SeenAfter string `query:"seen_after" format:"date-time" doc:"Only neighbours last seen at or after this time (RFC 3339)."`
}

type neighbourList struct {
	Body struct {
		Items      []model.Neighbour `json:"items"`
		NextCursor string            `json:"next_cursor,omitempty"`
	}
}

type neighbourReportIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	Body     discovery.NeighbourReport
}

type neighbourReportOut struct {
	Body *discovery.NeighbourReportResult
}

type neighbourKnownIn struct {
	MAC  string `path:"mac" maxLength:"32"`
	Body *struct {
		Note string `json:"note,omitempty" maxLength:"1024"`
	}
}

type neighbourOut struct{ Body *model.Neighbour }

type neighbourAdoptIn struct {
	MAC  string `path:"mac" maxLength:"32"`
	Body struct {
		ProductID string `json:"product_id" minLength:"1" maxLength:"64"`
		Serial    string `json:"serial,omitempty" maxLength:"128" doc:"Default: MAC- and the 12 hex digits of the MAC."`
		Name      string `json:"name,omitempty" maxLength:"128" doc:"Default: the hostname it was seen with."`
	}
}

type neighbourAdoptOut struct{ Body *discovery.Adopted }

// routesLifecycle registers decommission, release, export and the
// unmanaged-device routes when the platform provides the services.
func (a *API) routesLifecycle() {
	l := a.Lifecycle
	if l.Retire != nil {
		tag := []string{"lifecycle"}
		reg(a, huma.Operation{OperationID: "decommissionDevice", Method: http.MethodPost, Path: Prefix + "/devices/{deviceID}/decommission",
			Summary: "Decommission a device for good", Tags: tag,
			Description: "Sends the wipe command if the device is connected (and waits briefly for its answer), moves it to " +
				"decommissioned (a tombstone: the row, its lifecycle history and the audit trail stay), revokes every " +
				"certificate and its token, and erases, exports-then-erases or keeps its data. Repeating the call on a " +
				"decommissioned device re-runs the revocation and data steps."},
			access{perm: authz.DevicesLifecycle, tenant: true},
			func(ctx context.Context, in *decommissionIn) (*decommissionOut, error) {
				wipe := in.Body.Wipe == nil || *in.Body.Wipe
				res, err := l.Retire.Decommission(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID,
					retire.Options{Data: in.Body.Data, Wipe: wipe, Reason: in.Body.Reason})
				if err != nil {
					return nil, lifecycleErr(notFoundAs(err, "device", in.DeviceID))
				}
				return &decommissionOut{Body: res}, nil
			})
		reg(a, huma.Operation{OperationID: "exportDevice", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/export",
			Summary: "Export everything the tenant holds about a device (JSON)", Tags: tag,
			Description: "The device, its product, lifecycle history, certificates (without keys), twin, telemetry, " +
				"commands, findings and observed flows in one document (format " + retire.ExportFormat + ")."},
			access{perm: authz.DevicesRead, tenant: true},
			func(ctx context.Context, in *deviceIDIn) (*exportOut, error) {
				x, err := l.Retire.Export(ctx, tenantOf(ctx), in.DeviceID)
				if err != nil {
					return nil, notFoundAs(err, "device", in.DeviceID)
				}
				return &exportOut{Body: x}, nil
			})
	}
	if a.Identity != nil {
		reg(a, huma.Operation{OperationID: "releaseDevice", Method: http.MethodPost, Path: Prefix + "/devices/{deviceID}/release",
			Summary: "Release a device to hand it on to a new owner", Tags: []string{"lifecycle"},
			Description: "Revokes the device's certificates and token, erases this tenant's data about it, clears its name, " +
				"tags and attributes, and hands it back to its product's maker as manufactured with a new one-time claim " +
				"code, returned this once. The new owner claims it with that code; this tenant's keys and users no longer " +
				"reach it, and its old identity no longer connects or enrolls. The audit trail stays here."},
			access{perm: authz.DevicesLifecycle, tenant: true},
			func(ctx context.Context, in *releaseIn) (*releaseOut, error) {
				reason := ""
				if in.Body != nil {
					reason = in.Body.Reason
				}
				code, rel, err := a.Identity.Release(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID, reason)
				if err != nil {
					return nil, idErr(err)
				}
				out := &releaseOut{}
				out.Body.DeviceID, out.Body.Serial, out.Body.ProductID = rel.Device.ID, rel.Device.Serial, rel.Device.ProductID
				out.Body.ClaimCode, out.Body.CertificatesRevoked, out.Body.TokenRevoked = code, rel.CertificatesRevoked, rel.TokenRevoked
				out.Body.Erased = rel.Erased
				return out, nil
			})
	}
	if l.Discovery == nil {
		return
	}
	tag := []string{"neighbours"}
	reg(a, huma.Operation{OperationID: "listNeighbours", Method: http.MethodGet, Path: Prefix + "/neighbours",
		Summary: "Devices seen on the tenant's networks that it does not manage", Tags: tag,
		Description: "Reported by agents and gateways (MQTT d/{id}/security/neighbours or the report route), with the " +
			"MAC's vendor, first and last seen, and the tenant's decision (unmanaged, known, adopted). Ordered by MAC."},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *neighbourListIn) (*neighbourList, error) {
			q := model.NeighbourQuery{Status: model.NeighbourStatus(in.Status), Site: in.Site}
			if in.SeenAfter != "" {
				at, err := time.Parse(time.RFC3339Nano, in.SeenAfter)
				if err != nil {
					return nil, huma.Error422UnprocessableEntity("seen_after: not an RFC 3339 time",
						&huma.ErrorDetail{Location: "query.seen_after", Message: err.Error(), Value: in.SeenAfter})
				}
				q.SeenAfter = &at
			}
			items, next, err := l.Discovery.List(ctx, tenantOf(ctx), q, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, lifecycleErr(err)
			}
			out := &neighbourList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "reportNeighbours", Method: http.MethodPost, Path: Prefix + "/devices/{deviceID}/neighbours",
		Summary: "Report a device's network neighbours", Tags: tag,
		Description: "For gateways that report over HTTP instead of MQTT; same payload and limits as d/{id}/security/neighbours."},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *neighbourReportIn) (*neighbourReportOut, error) {
			res, err := l.Discovery.Report(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.DeviceID, &in.Body)
			if err != nil {
				return nil, lifecycleErr(notFoundAs(err, "device", in.DeviceID))
			}
			return &neighbourReportOut{Body: res}, nil
		})
	reg(a, huma.Operation{OperationID: "markNeighbourKnown", Method: http.MethodPost, Path: Prefix + "/neighbours/{mac}/known",
		Summary: "Mark a neighbour as known (not to be managed)", Tags: tag},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *neighbourKnownIn) (*neighbourOut, error) {
			note := ""
			if in.Body != nil {
				note = in.Body.Note
			}
			n, err := l.Discovery.MarkKnown(ctx, authz.From(ctx), tenantOf(ctx), in.MAC, note)
			if err != nil {
				return nil, lifecycleErr(err)
			}
			return &neighbourOut{Body: n}, nil
		})
	reg(a, huma.Operation{OperationID: "adoptNeighbour", Method: http.MethodPost, Path: Prefix + "/neighbours/{mac}/adopt",
		Summary: "Adopt a neighbour: register it and make its claim code", Tags: tag, DefaultStatus: http.StatusCreated,
		Description: "Registers the neighbour as a manufactured device of the product given, with its MAC as the mac " +
			"attribute, and returns its one-time claim code (this once): claim it with POST /claims, then the device " +
			"enrolls with its serial and the code."},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *neighbourAdoptIn) (*neighbourAdoptOut, error) {
			res, err := l.Discovery.Adopt(ctx, authz.From(ctx), tenantOf(ctx), in.MAC, discovery.AdoptInput{ProductID: in.Body.ProductID,
				Serial: in.Body.Serial, Name: in.Body.Name})
			if err != nil {
				return nil, lifecycleErr(idErr(err))
			}
			return &neighbourAdoptOut{Body: res}, nil
		})
}

// lifecycleErr maps the retire and discovery services' refusals.
func lifecycleErr(err error) error {
	var ri *retire.InvalidError
	var di *discovery.InvalidError
	var dc *discovery.ConflictError
	switch {
	case errors.As(err, &ri):
		return huma.Error422UnprocessableEntity(ri.Error(), &huma.ErrorDetail{Location: "body." + ri.Field, Message: ri.Message})
	case errors.As(err, &di):
		return huma.Error422UnprocessableEntity(di.Error(), &huma.ErrorDetail{Location: "body." + di.Field, Message: di.Message})
	case errors.As(err, &dc):
		return huma.Error409Conflict(dc.Error())
	}
	if _, ok := identity.AsError(err); ok {
		return idErr(err)
	}
	return err
}
