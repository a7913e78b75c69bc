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

type webhookCreateIn struct {
	Body struct {
		URL   string   `json:"url" minLength:"1" maxLength:"2048" doc:"Endpoint that receives POSTed events (https)."`
		Types []string `json:"types,omitempty" maxItems:"64" doc:"Event types to send; empty = all; \"device.*\" = a family."`
	}
}

type webhookCreated struct {
	Body struct {
		*model.Webhook
		Secret string `json:"secret" doc:"HMAC-SHA256 signing secret, shown only in this response. Check the Steward-Signature header (t=<unix>,v1=<hex of HMAC over \"<t>.<body>\">)."`
	}
}

type webhookIDIn struct {
	WebhookID string `path:"webhookID" maxLength:"64"`
}

type webhookOut struct{ Body *model.Webhook }

type webhookList struct {
	Body struct {
		Items []model.Webhook `json:"items"`
	}
}

type deliveriesIn struct {
	WebhookID string `path:"webhookID" maxLength:"64"`
	PageIn
}

type deliveryList struct {
	Body struct {
		Items      []model.WebhookDelivery `json:"items"`
		NextCursor string                  `json:"next_cursor,omitempty"`
	}
}

func (a *API) routesWebhooks() {
	reg(a, huma.Operation{OperationID: "createWebhook", Method: http.MethodPost, Path: Prefix + "/webhooks",
		Summary: "Subscribe an endpoint to events", DefaultStatus: http.StatusCreated},
		access{perm: authz.WebhooksWrite, tenant: true},
		func(ctx context.Context, in *webhookCreateIn) (*webhookCreated, error) {
			w, err := a.Registry.CreateWebhook(ctx, authz.From(ctx), tenantOf(ctx),
				registry.WebhookInput{URL: in.Body.URL, Types: in.Body.Types}, a.AllowHTTPWebhooks)
			if err != nil {
				return nil, err
			}
			out := &webhookCreated{}
			out.Body.Webhook, out.Body.Secret = w, w.Secret
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "listWebhooks", Method: http.MethodGet, Path: Prefix + "/webhooks",
		Summary: "List webhook subscriptions"}, access{perm: authz.WebhooksRead, tenant: true},
		func(ctx context.Context, _ *struct{}) (*webhookList, error) {
			items, err := a.Store.ListWebhooks(ctx, tenantOf(ctx))
			if err != nil {
				return nil, err
			}
			out := &webhookList{}
			out.Body.Items = nonNil(items)
			return out, nil
		})
	reg(a, huma.Operation{OperationID: "getWebhook", Method: http.MethodGet, Path: Prefix + "/webhooks/{webhookID}",
		Summary: "Get a webhook subscription"}, access{perm: authz.WebhooksRead, tenant: true},
		func(ctx context.Context, in *webhookIDIn) (*webhookOut, error) {
			w, err := a.Store.GetWebhook(ctx, tenantOf(ctx), in.WebhookID)
			if err != nil {
				return nil, notFoundAs(err, "webhook", in.WebhookID)
			}
			return &webhookOut{w}, nil
		})
	reg(a, huma.Operation{OperationID: "deleteWebhook", Method: http.MethodDelete, Path: Prefix + "/webhooks/{webhookID}",
		Summary: "Delete a webhook subscription and its delivery log", DefaultStatus: http.StatusNoContent},
		access{perm: authz.WebhooksWrite, tenant: true},
		func(ctx context.Context, in *webhookIDIn) (*struct{}, error) {
			return nil, notFoundAs(a.Registry.DeleteWebhook(ctx, authz.From(ctx), tenantOf(ctx), in.WebhookID), "webhook", in.WebhookID)
		})
	reg(a, huma.Operation{OperationID: "listWebhookDeliveries", Method: http.MethodGet, Path: Prefix + "/webhooks/{webhookID}/deliveries",
		Summary: "A subscription's delivery log, newest first"}, access{perm: authz.WebhooksRead, tenant: true},
		func(ctx context.Context, in *deliveriesIn) (*deliveryList, error) {
			if _, err := a.Store.GetWebhook(ctx, tenantOf(ctx), in.WebhookID); err != nil {
				return nil, notFoundAs(err, "webhook", in.WebhookID)
			}
			items, next, err := a.Store.ListDeliveries(ctx, tenantOf(ctx), in.WebhookID, store.ListOptions{Limit: in.Limit, Cursor: in.Cursor})
			if err != nil {
				return nil, err
			}
			out := &deliveryList{}
			out.Body.Items, out.Body.NextCursor = nonNil(items), next
			return out, nil
		})
}
