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

type userCreateIn struct {
	Body struct {
		Email    string     `json:"email" minLength:"3" maxLength:"254" doc:"Sign-in name; unique on the platform, stored lower-cased."`
		Name     string     `json:"name,omitempty" maxLength:"128" doc:"Display name; default: the email."`
		Role     model.Role `json:"role" enum:"platform-admin,tenant-admin,operator,viewer,vendor"`
		Password string     `json:"password,omitempty" maxLength:"256" doc:"Initial password (at least 12 characters). Omit it to have one generated and returned once."`
	}
}

type userCreated struct {
	Body struct {
		*model.User
		Password string `json:"password,omitempty" doc:"The generated password, when none was given. Shown only in this response."`
	}
}

type userIDIn struct {
	UserID string `path:"userID" maxLength:"64"`
}

type userOut struct{ Body *model.User }

type userPatchIn struct {
	UserID string `path:"userID" maxLength:"64"`
	Body   struct {
		Name     *string     `json:"name,omitempty" maxLength:"128"`
		Role     *model.Role `json:"role,omitempty" enum:"platform-admin,tenant-admin,operator,viewer,vendor"`
		Disabled *bool       `json:"disabled,omitempty" doc:"true signs the user out everywhere and refuses new sign-ins."`
	}
}

type userPasswordIn struct {
	UserID string `path:"userID" maxLength:"64"`
	Body   struct {
		Password string `json:"password" minLength:"1" maxLength:"256" doc:"The new password (at least 12 characters)."`
	}
}

type userList struct {
	Body struct {
		Items      []model.User `json:"items"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}
}

// Users sign in to the dashboard. Like API keys they belong to the tenant
// the call acts in; a platform admin without X-Steward-Tenant manages the
// platform's own users.
func (a *API) routesUsers() {
	reg(a, huma.Operation{OperationID: "createUser", Method: http.MethodPost, Path: Prefix + "/users",
		Summary: "Create a dashboard user", DefaultStatus: http.StatusCreated,
		Description: "A user cannot be given a stronger role than the caller's. Without a password one is generated and returned once."},
		access{perm: authz.UsersWrite},
		func(ctx context.Context, in *userCreateIn) (*userCreated, error) {
			b := in.Body
			u, pw, err := a.Registry.CreateUser(ctx, authz.From(ctx), tenantOf(ctx), registry.UserInput{
				Email: b.Email, Name: b.Name, Role: b.Role, Password: b.Password})
			if err != nil {
				return nil, err
			}
			out := &userCreated{}
			out.Body.User, out.Body.Password = u, pw
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "listUsers", Method: http.MethodGet, Path: Prefix + "/users",
		Summary: "List dashboard users"}, access{perm: authz.UsersRead},
		func(ctx context.Context, in *PageIn) (*userList, error) {
			items, next, err := a.Store.ListUsers(ctx, tenantOf(ctx), store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &userList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getUser", Method: http.MethodGet, Path: Prefix + "/users/{userID}",
		Summary: "Get a dashboard user"}, access{perm: authz.UsersRead},
		func(ctx context.Context, in *userIDIn) (*userOut, error) {
			u, err := a.Store.GetUser(ctx, tenantOf(ctx), in.UserID)
			if err != nil {
				return nil, notFoundAs(err, "user", in.UserID)
			}
			return &userOut{u}, nil
		})
	reg(a, huma.Operation{OperationID: "updateUser", Method: http.MethodPatch, Path: Prefix + "/users/{userID}",
		Summary:     "Rename a user, change its role, or disable or enable it",
		Description: "Disabling a user or changing its role ends its sessions."},
		access{perm: authz.UsersWrite},
		func(ctx context.Context, in *userPatchIn) (*userOut, error) {
			b := in.Body
			u, err := a.Registry.UpdateUser(ctx, authz.From(ctx), tenantOf(ctx), in.UserID, registry.UserPatch{
				Name: b.Name, Role: b.Role, Disabled: b.Disabled})
			if err != nil {
				return nil, notFoundAs(err, "user", in.UserID)
			}
			return &userOut{u}, nil
		})
	reg(a, huma.Operation{OperationID: "setUserPassword", Method: http.MethodPut, Path: Prefix + "/users/{userID}/password",
		Summary: "Set a user's password", DefaultStatus: http.StatusNoContent,
		Description: "Ends every session of the user."},
		access{perm: authz.UsersWrite},
		func(ctx context.Context, in *userPasswordIn) (*struct{}, error) {
			err := a.Registry.SetPassword(ctx, authz.From(ctx), tenantOf(ctx), in.UserID, "", in.Body.Password, "")
			return nil, notFoundAs(err, "user", in.UserID)
		})
}
