package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/netpolicy"
	"github.com/steward-iot/steward/internal/store"
)

type mudPutIn struct {
	ProductID string `path:"productID" maxLength:"64"`
	RawBody   []byte `contentType:"application/json" doc:"The MUD file (RFC 8520, JSON: ietf-mud:mud and ietf-access-control-list:acls)."`
}

type mudOut struct{ Body *model.MUDProfile }

type mudIn struct {
	ProductID string `path:"productID" maxLength:"64"`
}

type flowReportIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	Body     struct {
		Flows []flowBody `json:"flows" minItems:"1" maxItems:"1000"`
	}
}

type flowBody struct {
	Direction     string     `json:"direction" enum:"from-device,to-device" doc:"Who opened the flow: the device (from-device) or the remote end."`
	Protocol      string     `json:"protocol" minLength:"1" maxLength:"8" doc:"tcp, udp, icmp or an IP protocol number."`
	RemoteHost    string     `json:"remote_host,omitempty" maxLength:"253" doc:"The DNS name the device looked up for the remote end, when known."`
	RemoteAddress string     `json:"remote_address,omitempty" maxLength:"64" doc:"The remote IP address."`
	RemotePort    int        `json:"remote_port,omitempty" minimum:"0" maximum:"65535"`
	LocalPort     int        `json:"local_port,omitempty" minimum:"0" maximum:"65535"`
	Bytes         int64      `json:"bytes,omitempty" minimum:"0"`
	Packets       int64      `json:"packets,omitempty" minimum:"0"`
	FirstSeen     *time.Time `json:"first_seen,omitempty"`
	LastSeen      *time.Time `json:"last_seen,omitempty" doc:"Default: now."`
}

type flowReportOut struct{ Body *netpolicy.ReportResult }

type flowListIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	PageIn
}

type flowList struct {
	Body struct {
		Items      []model.ObservedFlow `json:"items"`
		NextCursor string               `json:"next_cursor,omitempty"`
	}
}

type textOut struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

func (a *API) routesNetPolicy() {
	np := a.Security.Policy
	tag := []string{"network policy"}
	reg(a, huma.Operation{OperationID: "importMUD", Method: http.MethodPut, Path: Prefix + "/products/{productID}/mud",
		Summary: "Import a product's MUD file (RFC 8520)", Tags: tag, MaxBodyBytes: netpolicy.MaxMUDBytes, SkipValidateBody: true,
		Description: "The body is the MUD file itself. Its accepting ACEs become the flows the product's devices may take " +
			"part in; anything else a gateway reports is outside the profile and becomes a finding. When the product names " +
			"a mud_url, the file's mud-url must be the same. A malformed file or one that is not a MUD file is refused " +
			"and nothing changes."},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *mudPutIn) (*mudOut, error) {
			p, err := np.ImportMUD(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.ProductID, in.RawBody)
			if err != nil {
				return nil, notFoundAs(secErr(err), "product", in.ProductID)
			}
			return &mudOut{p}, nil
		})
	reg(a, huma.Operation{OperationID: "getMUD", Method: http.MethodGet, Path: Prefix + "/products/{productID}/mud",
		Summary: "Get a product's MUD profile and the flows it allows", Tags: tag}, access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *mudIn) (*mudOut, error) {
			p, err := a.Store.GetMUDProfile(ctx, tenantOf(ctx), in.ProductID)
			if err != nil {
				return nil, notFoundAs(err, "MUD profile of product", in.ProductID)
			}
			return &mudOut{p}, nil
		})
	reg(a, huma.Operation{OperationID: "deleteMUD", Method: http.MethodDelete, Path: Prefix + "/products/{productID}/mud",
		Summary: "Delete a product's MUD profile", Tags: tag, DefaultStatus: http.StatusNoContent},
		access{perm: authz.ProductsWrite, tenant: true},
		func(ctx context.Context, in *mudIn) (*struct{}, error) {
			return nil, notFoundAs(np.DeleteMUD(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.ProductID), "MUD profile of product", in.ProductID)
		})
	reg(a, huma.Operation{OperationID: "exportNFTables", Method: http.MethodGet, Path: Prefix + "/products/{productID}/mud/nftables",
		Summary: "A product's MUD profile as nftables rules for a gateway", Tags: tag,
		Description: "An nftables script (`nft -f`) with a table for the product: fill its devices_v4/devices_v6 sets with " +
			"the devices' addresses and each host_N set with what its DNS name resolves to."},
		access{perm: authz.ProductsRead, tenant: true},
		func(ctx context.Context, in *mudIn) (*textOut, error) {
			p, err := a.Store.GetMUDProfile(ctx, tenantOf(ctx), in.ProductID)
			if err != nil {
				return nil, notFoundAs(err, "MUD profile of product", in.ProductID)
			}
			return &textOut{ContentType: "text/plain; charset=utf-8", Body: []byte(netpolicy.NFTables(p))}, nil
		})
	reg(a, huma.Operation{OperationID: "reportFlows", Method: http.MethodPost, Path: Prefix + "/devices/{deviceID}/flows",
		Summary: "Report flows a gateway or agent observed for a device", Tags: tag,
		Description: "Each flow is checked against the MUD profile of the device's product and stored with its verdict; " +
			"flows outside the profile become findings (network.flow_outside_profile) at once. Report aggregated flows " +
			"periodically (every report is audited), at most 1000 per call."},
		access{perm: authz.DevicesWrite, tenant: true},
		func(ctx context.Context, in *flowReportIn) (*flowReportOut, error) {
			flows := make([]model.ObservedFlow, len(in.Body.Flows))
			for i, f := range in.Body.Flows {
				flows[i] = model.ObservedFlow{Direction: f.Direction, Protocol: f.Protocol, RemoteHost: f.RemoteHost,
					RemoteAddress: f.RemoteAddress, RemotePort: f.RemotePort, LocalPort: f.LocalPort, Bytes: f.Bytes, Packets: f.Packets}
				if f.FirstSeen != nil {
					flows[i].FirstSeen = *f.FirstSeen
				}
				if f.LastSeen != nil {
					flows[i].LastSeen = *f.LastSeen
				}
			}
			res, err := np.ReportFlows(ctx, authz.From(ctx).Actor(), tenantOf(ctx), in.DeviceID, flows)
			if err != nil {
				return nil, notFoundAs(secErr(err), "device", in.DeviceID)
			}
			return &flowReportOut{res}, nil
		})
	reg(a, huma.Operation{OperationID: "listFlows", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/flows",
		Summary: "List the flows observed for a device, with their verdicts", Tags: tag}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *flowListIn) (*flowList, error) {
			items, next, err := a.Store.ListObservedFlows(ctx, tenantOf(ctx), in.DeviceID, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, notFoundAs(err, "device", in.DeviceID)
			}
			out := &flowList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
}
