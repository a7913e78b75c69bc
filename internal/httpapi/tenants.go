package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

type tenantOut struct{ Body *model.Tenant }

type tenantList struct {
	Body struct {
		Items      []model.Tenant `json:"items"`
		NextCursor string         `json:"next_cursor,omitempty" doc:"Pass as cursor to get the next page; absent on the last page."`
	}
}

// PageIn is the page of a list. It is exported because huma reads the
// parameters of embedded structs only when their type is exported: an
// embedded unexported one is silently ignored.
type PageIn struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size."`
	Cursor string `query:"cursor" maxLength:"1024" doc:"next_cursor of the previous page."`
}

type tenantCreateIn struct {
	Body struct {
		Name string           `json:"name" minLength:"1" maxLength:"128" doc:"Unique display name."`
		Kind model.TenantKind `json:"kind" enum:"enterprise,household,vendor"`
	}
}

type tenantIDIn struct {
	TenantID string `path:"tenantID" maxLength:"64"`
}

func (a *API) routesTenants() {
	reg(a, huma.Operation{OperationID: "createTenant", Method: http.MethodPost, Path: Prefix + "/tenants",
		Summary: "Create a tenant (platform admins)", DefaultStatus: http.StatusCreated},
		access{perm: authz.TenantsWrite},
		func(ctx context.Context, in *tenantCreateIn) (*tenantOut, error) {
			t, err := a.Registry.CreateTenant(ctx, authz.From(ctx), in.Body.Name, in.Body.Kind)
			if err != nil {
				return nil, err
			}
			return &tenantOut{t}, nil
		})
	reg(a, huma.Operation{OperationID: "listTenants", Method: http.MethodGet, Path: Prefix + "/tenants",
		Summary: "List tenants: all of them for platform admins, the key's own otherwise"},
		access{perm: authz.TenantsRead},
		func(ctx context.Context, in *PageIn) (*tenantList, error) {
			out := &tenantList{}
			p := authz.From(ctx)
			if !p.Platform() {
				t, err := a.Store.GetTenant(ctx, p.TenantID)
				if err != nil {
					return nil, err
				}
				out.Body.Items = []model.Tenant{*t}
				return out, nil
			}
			items, next, err := a.Store.ListTenants(ctx, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getTenant", Method: http.MethodGet, Path: Prefix + "/tenants/{tenantID}",
		Summary: "Get a tenant"}, access{perm: authz.TenantsRead},
		func(ctx context.Context, in *tenantIDIn) (*tenantOut, error) {
			p := authz.From(ctx)
			if !p.Platform() && in.TenantID != p.TenantID {
				return nil, huma.Error404NotFound("tenant " + in.TenantID + " not found")
			}
			t, err := a.Store.GetTenant(ctx, in.TenantID)
			if err != nil {
				return nil, err
			}
			return &tenantOut{t}, nil
		})
}

// nonNil makes empty lists encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
