package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/commands"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

type commandView struct {
	model.Command
	TimeoutSeconds int64 `json:"timeout_seconds"`
}

func commandOf(c *model.Command) commandView {
	return commandView{Command: *c, TimeoutSeconds: int64(c.Timeout / time.Second)}
}

type commandCreateIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	Body     struct {
		Name             string `json:"name" minLength:"1" maxLength:"64" doc:"What to do, e.g. reboot."`
		Params           any    `json:"params,omitempty" doc:"Any JSON value (at most 16 KiB), passed to the device."`
		TimeoutSeconds   int    `json:"timeout_seconds,omitempty" minimum:"0" maximum:"86400" doc:"How long the device has to answer once it got the command (default 30)."`
		ExpiresInSeconds int    `json:"expires_in_seconds,omitempty" minimum:"0" maximum:"2592000" doc:"A command not delivered by then expires (default 3600)."`
	}
}

type commandOut struct{ Body commandView }

type commandIDIn struct {
	DeviceID  string `path:"deviceID" maxLength:"64"`
	CommandID string `path:"commandID" maxLength:"64"`
}

type commandListIn struct {
	DeviceID string `path:"deviceID" maxLength:"64"`
	PageIn
}

type commandList struct {
	Body struct {
		Items      []commandView `json:"items"`
		NextCursor string        `json:"next_cursor,omitempty"`
	}
}

func (a *API) routesCommands() {
	reg(a, huma.Operation{OperationID: "createCommand", Method: http.MethodPost, Path: Prefix + "/devices/{deviceID}/commands",
		Summary: "Send a command to a device", DefaultStatus: http.StatusCreated,
		Description: "Published to the device at once when it is connected, otherwise when it next connects, " +
			"unless it expired first. The answer is the queued command; poll it for the result."},
		access{perm: authz.DevicesLifecycle, tenant: true},
		func(ctx context.Context, in *commandCreateIn) (*commandOut, error) {
			var params json.RawMessage
			if in.Body.Params != nil {
				b, err := json.Marshal(in.Body.Params)
				if err != nil {
					return nil, err
				}
				params = b
			}
			c, err := a.Connectivity.Commands.Create(ctx, authz.From(ctx), tenantOf(ctx), in.DeviceID, commands.Input{
				Name: in.Body.Name, Params: params, Timeout: time.Duration(in.Body.TimeoutSeconds) * time.Second,
				ExpiresIn: time.Duration(in.Body.ExpiresInSeconds) * time.Second})
			if err != nil {
				return nil, connErr(err, in.DeviceID)
			}
			return &commandOut{Body: commandOf(c)}, nil
		})
	reg(a, huma.Operation{OperationID: "listCommands", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/commands",
		Summary: "List a device's commands, newest first"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *commandListIn) (*commandList, error) {
			if _, err := a.Store.GetDevice(ctx, tenantOf(ctx), in.DeviceID); err != nil {
				return nil, notFoundAs(err, "device", in.DeviceID)
			}
			items, next, err := a.Store.ListCommands(ctx, tenantOf(ctx), in.DeviceID, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &commandList{}
			out.Body.Items = make([]commandView, len(items))
			for i := range items {
				out.Body.Items[i] = commandOf(&items[i])
			}
			out.Body.NextCursor = next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getCommand", Method: http.MethodGet, Path: Prefix + "/devices/{deviceID}/commands/{commandID}",
		Summary: "Read a command, its state and result"},
		access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *commandIDIn) (*commandOut, error) {
			c, err := a.Connectivity.Commands.Get(ctx, tenantOf(ctx), in.DeviceID, in.CommandID)
			if err != nil {
				return nil, notFoundAs(err, "command", in.CommandID)
			}
			return &commandOut{Body: commandOf(c)}, nil
		})
}
