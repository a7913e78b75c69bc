package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
)

type groupCreateIn struct {
	Body struct {
		Name        string             `json:"name" minLength:"1" maxLength:"128"`
		Kind        model.GroupKind    `json:"kind" enum:"static,dynamic"`
		Query       *model.DeviceQuery `json:"query,omitempty" doc:"For dynamic groups: the fleet query whose matches are the members."`
		Description string             `json:"description,omitempty" maxLength:"1024"`
	}
}

type groupIDIn struct {
	GroupID string `path:"groupID" maxLength:"64"`
}

type groupOut struct{ Body *model.Group }

type groupList struct {
	Body struct {
		Items      []model.Group `json:"items"`
		NextCursor string        `json:"next_cursor,omitempty"`
	}
}

type membersIn struct {
	GroupID string `path:"groupID" maxLength:"64"`
	Body    struct {
		Add    []string `json:"add,omitempty" maxItems:"1000" doc:"Device IDs to add."`
		Remove []string `json:"remove,omitempty" maxItems:"1000" doc:"Device IDs to remove."`
	}
}

type groupDevicesIn struct {
	GroupID string `path:"groupID" maxLength:"64"`
	Limit   int    `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor  string `query:"cursor" maxLength:"1024"`
}

func (a *API) routesGroups() {
	reg(a, huma.Operation{OperationID: "createGroup", Method: http.MethodPost, Path: Prefix + "/groups",
		Summary: "Create a static or dynamic device group", DefaultStatus: http.StatusCreated},
		access{perm: authz.GroupsWrite, tenant: true},
		func(ctx context.Context, in *groupCreateIn) (*groupOut, error) {
			b := in.Body
			g, err := a.Registry.CreateGroup(ctx, authz.From(ctx), tenantOf(ctx), registry.GroupInput{
				Name: b.Name, Kind: b.Kind, Query: b.Query, Description: b.Description})
			if err != nil {
				return nil, err
			}
			return &groupOut{g}, nil
		})
	reg(a, huma.Operation{OperationID: "listGroups", Method: http.MethodGet, Path: Prefix + "/groups",
		Summary: "List device groups"}, access{perm: authz.GroupsRead, tenant: true},
		func(ctx context.Context, in *PageIn) (*groupList, error) {
			items, next, err := a.Store.ListGroups(ctx, tenantOf(ctx), store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &groupList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getGroup", Method: http.MethodGet, Path: Prefix + "/groups/{groupID}",
		Summary: "Get a group"}, access{perm: authz.GroupsRead, tenant: true},
		func(ctx context.Context, in *groupIDIn) (*groupOut, error) {
			g, err := a.Store.GetGroup(ctx, tenantOf(ctx), in.GroupID)
			if err != nil {
				return nil, notFoundAs(err, "group", in.GroupID)
			}
			return &groupOut{g}, nil
		})
	reg(a, huma.Operation{OperationID: "deleteGroup", Method: http.MethodDelete, Path: Prefix + "/groups/{groupID}",
		Summary: "Delete a group (its devices stay)", DefaultStatus: http.StatusNoContent},
		access{perm: authz.GroupsWrite, tenant: true},
		func(ctx context.Context, in *groupIDIn) (*struct{}, error) {
			return nil, notFoundAs(a.Registry.DeleteGroup(ctx, authz.From(ctx), tenantOf(ctx), in.GroupID), "group", in.GroupID)
		})
	reg(a, huma.Operation{OperationID: "changeGroupMembers", Method: http.MethodPost, Path: Prefix + "/groups/{groupID}/members",
		Summary: "Add or remove devices of a static group", DefaultStatus: http.StatusNoContent},
		access{perm: authz.GroupsWrite, tenant: true},
		func(ctx context.Context, in *membersIn) (*struct{}, error) {
			err := a.Registry.SetGroupMembers(ctx, authz.From(ctx), tenantOf(ctx), in.GroupID, in.Body.Add, in.Body.Remove)
			return nil, notFoundAs(err, "group", in.GroupID)
		})
	reg(a, huma.Operation{OperationID: "listGroupDevices", Method: http.MethodGet, Path: Prefix + "/groups/{groupID}/devices",
		Summary: "List a group's devices"}, access{perm: authz.DevicesRead, tenant: true},
		func(ctx context.Context, in *groupDevicesIn) (*deviceList, error) {
			items, next, err := a.Store.QueryDevices(ctx, tenantOf(ctx), model.DeviceQuery{GroupID: in.GroupID},
				model.Page{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, notFoundAs(err, "group", in.GroupID)
			}
			out := &deviceList{}
			out.Body.Items = make([]deviceView, len(items))
			for i := range items {
				out.Body.Items[i] = *view(&items[i])
			}
			out.Body.NextCursor = next
			return out, nil
		})
}
