package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

type keyCreateIn struct {
	Body struct {
		Name      string     `json:"name" minLength:"1" maxLength:"128"`
		Role      model.Role `json:"role" enum:"platform-admin,tenant-admin,operator,viewer,vendor"`
		ExpiresAt *time.Time `json:"expires_at,omitempty"`
	}
}

type keyCreated struct {
	Body struct {
		*model.APIKey
		Secret string `json:"secret" doc:"The key itself. Shown only in this response: store it now."`
	}
}

type keyIDIn struct {
	KeyID string `path:"keyID" maxLength:"64"`
}

type keyList struct {
	Body struct {
		Items      []model.APIKey `json:"items"`
		NextCursor string         `json:"next_cursor,omitempty"`
	}
}

// keyTenant is where key calls act: a platform admin without a named
// tenant manages platform keys.
func keyTenant(ctx context.Context) string { return tenantOf(ctx) }

func (a *API) routesKeys() {
	reg(a, huma.Operation{OperationID: "createAPIKey", Method: http.MethodPost, Path: Prefix + "/api-keys",
		Summary: "Create an API key", Description: "The secret is returned once. A key cannot be given a stronger role than the key creating it.",
		DefaultStatus: http.StatusCreated}, access{perm: authz.KeysWrite},
		func(ctx context.Context, in *keyCreateIn) (*keyCreated, error) {
			secret, k, err := a.Registry.CreateAPIKey(ctx, authz.From(ctx), keyTenant(ctx), in.Body.Name, in.Body.Role, in.Body.ExpiresAt)
			if err != nil {
				return nil, err
			}
			out := &keyCreated{}
			out.Body.APIKey, out.Body.Secret = k, secret
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "listAPIKeys", Method: http.MethodGet, Path: Prefix + "/api-keys",
		Summary: "List API keys (never their secrets)"}, access{perm: authz.KeysRead},
		func(ctx context.Context, in *PageIn) (*keyList, error) {
			items, next, err := a.Store.ListAPIKeys(ctx, keyTenant(ctx), store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &keyList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "revokeAPIKey", Method: http.MethodDelete, Path: Prefix + "/api-keys/{keyID}",
		Summary: "Revoke an API key at once", DefaultStatus: http.StatusNoContent}, access{perm: authz.KeysWrite},
		func(ctx context.Context, in *keyIDIn) (*struct{}, error) {
			return nil, notFoundAs(a.Registry.RevokeAPIKey(ctx, authz.From(ctx), keyTenant(ctx), in.KeyID), "active API key", in.KeyID)
		})
}
