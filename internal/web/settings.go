package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
)

// settingsHome opens the first settings page the role may see.
func (d *Dashboard) settingsHome(w http.ResponseWriter, r *http.Request) {
	v := visitFrom(r.Context())
	switch {
	case v.can(authz.KeysRead):
		http.Redirect(w, r, "/settings/keys", http.StatusSeeOther)
	case v.can(authz.WebhooksRead):
		http.Redirect(w, r, "/settings/webhooks", http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/account", http.StatusSeeOther)
	}
}

// ---- API keys ----

type keysData struct {
	Keys    []model.APIKey
	Roles   []model.Role
	Created *model.APIKey
	Secret  string
}

func (d *Dashboard) keysPage(w http.ResponseWriter, r *http.Request) {
	if !d.allowed(w, r, authz.KeysRead) {
		return
	}
	d.showKeys(w, r, http.StatusOK, keysData{})
}

func (d *Dashboard) showKeys(w http.ResponseWriter, r *http.Request, status int, data keysData) {
	ctx := r.Context()
	v := visitFrom(ctx)
	keys, _, err := d.Store.ListAPIKeys(ctx, v.tenantID(), listAll)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	data.Keys = keys
	data.Roles = roleChoices(v.user.Role, v.tenantID())
	d.render(w, r, status, "keys", &view{Title: "API keys", Nav: "settings", Data: data})
}

func (d *Dashboard) keyCreate(w http.ResponseWriter, r *http.Request) {
	if !d.allowed(w, r, authz.KeysWrite) {
		return
	}
	v := visitFrom(r.Context())
	var expires *time.Time
	if days, err := strconv.Atoi(r.PostFormValue("expires_days")); err == nil && days > 0 {
		t := time.Now().UTC().Add(time.Duration(days) * 24 * time.Hour).Truncate(time.Second)
		expires = &t
	}
	secret, k, err := d.Registry.CreateAPIKey(r.Context(), v.p, v.tenantID(), strings.TrimSpace(r.PostFormValue("name")),
		model.Role(r.PostFormValue("role")), expires)
	if err != nil {
		d.redirect(w, r, "/settings/keys", "error", d.explain(err))
		return
	}
	// The secret is shown on this answer only: it is not stored.
	d.showKeys(w, r, http.StatusCreated, keysData{Created: k, Secret: secret})
}

func (d *Dashboard) keyRevoke(w http.ResponseWriter, r *http.Request) {
	if !d.allowed(w, r, authz.KeysWrite) {
		return
	}
	v := visitFrom(r.Context())
	err := d.Registry.RevokeAPIKey(r.Context(), v.p, v.tenantID(), chi.URLParam(r, "keyID"))
	if err != nil {
		d.redirect(w, r, "/settings/keys", "error", d.explain(err))
		return
	}
	d.redirect(w, r, "/settings/keys", "ok", "The key is revoked: calls with it are refused from now on.")
}

// ---- webhooks ----

type webhooksData struct {
	Webhooks []model.Webhook
	Created  *model.Webhook
}

func (d *Dashboard) webhooksPage(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.WebhooksRead) {
		return
	}
	d.showWebhooks(w, r, http.StatusOK, webhooksData{})
}

func (d *Dashboard) showWebhooks(w http.ResponseWriter, r *http.Request, status int, data webhooksData) {
	ctx := r.Context()
	hooks, err := d.Store.ListWebhooks(ctx, visitFrom(ctx).tenantID())
	if err != nil {
		d.internal(w, r, err)
		return
	}
	data.Webhooks = hooks
	d.render(w, r, status, "webhooks", &view{Title: "Webhooks", Nav: "settings", Data: data})
}

func (d *Dashboard) webhookCreate(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.WebhooksWrite) {
		return
	}
	v := visitFrom(r.Context())
	types := strings.FieldsFunc(r.PostFormValue("types"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' })
	hook, err := d.Registry.CreateWebhook(r.Context(), v.p, v.tenantID(),
		registry.WebhookInput{URL: strings.TrimSpace(r.PostFormValue("url")), Types: types}, d.AllowHTTPWebhooks)
	if err != nil {
		d.redirect(w, r, "/settings/webhooks", "error", d.explain(err))
		return
	}
	d.showWebhooks(w, r, http.StatusCreated, webhooksData{Created: hook})
}

func (d *Dashboard) webhookDelete(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.WebhooksWrite) {
		return
	}
	v := visitFrom(r.Context())
	if err := d.Registry.DeleteWebhook(r.Context(), v.p, v.tenantID(), chi.URLParam(r, "webhookID")); err != nil {
		d.redirect(w, r, "/settings/webhooks", "error", d.explain(err))
		return
	}
	d.redirect(w, r, "/settings/webhooks", "ok", "The webhook is deleted with its delivery log.")
}

type webhookData struct {
	Webhook    *model.Webhook
	Deliveries []model.WebhookDelivery
	NextURL    string
}

func (d *Dashboard) webhookPage(w http.ResponseWriter, r *http.Request) {
	if !d.inTenant(w, r) || !d.allowed(w, r, authz.WebhooksRead) {
		return
	}
	ctx := r.Context()
	tid := visitFrom(ctx).tenantID()
	hook, err := d.Store.GetWebhook(ctx, tid, chi.URLParam(r, "webhookID"))
	if errors.Is(err, store.ErrNotFound) {
		d.notFound(w, r)
		return
	}
	if err != nil {
		d.internal(w, r, err)
		return
	}
	ds, next, err := d.Store.ListDeliveries(ctx, tid, hook.ID, store.ListOptions{Limit: 100, Cursor: r.URL.Query().Get("cursor")})
	if err != nil && !errors.Is(err, store.ErrBadCursor) {
		d.internal(w, r, err)
		return
	}
	data := webhookData{Webhook: hook, Deliveries: ds}
	if next != "" {
		data.NextURL = "/settings/webhooks/" + url.PathEscape(hook.ID) + "?cursor=" + url.QueryEscape(next)
	}
	d.render(w, r, http.StatusOK, "webhook", d.live(r, &view{Title: "Webhook deliveries", Nav: "settings", Data: data}))
}

// ---- users ----

type usersData struct {
	Users     []model.User
	Roles     []model.Role
	Created   *model.User
	Password  string
	MinLength int
}

func (d *Dashboard) usersPage(w http.ResponseWriter, r *http.Request) {
	if !d.allowed(w, r, authz.UsersRead) {
		return
	}
	d.showUsers(w, r, http.StatusOK, usersData{})
}

func (d *Dashboard) showUsers(w http.ResponseWriter, r *http.Request, status int, data usersData) {
	ctx := r.Context()
	v := visitFrom(ctx)
	users, _, err := d.Store.ListUsers(ctx, v.tenantID(), listAll)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	data.Users, data.Roles, data.MinLength = users, roleChoices(v.user.Role, v.tenantID()), registry.MinPasswordLen
	d.render(w, r, status, "users", &view{Title: "Users", Nav: "settings", Data: data})
}

func (d *Dashboard) userCreate(w http.ResponseWriter, r *http.Request) {
	if !d.allowed(w, r, authz.UsersWrite) {
		return
	}
	v := visitFrom(r.Context())
	u, pw, err := d.Registry.CreateUser(r.Context(), v.p, v.tenantID(), registry.UserInput{
		Email: r.PostFormValue("email"), Name: strings.TrimSpace(r.PostFormValue("name")),
		Role: model.Role(r.PostFormValue("role")), Password: r.PostFormValue("password")})
	if err != nil {
		d.redirect(w, r, "/settings/users", "error", d.explain(err))
		return
	}
	d.showUsers(w, r, http.StatusCreated, usersData{Created: u, Password: pw})
}

func (d *Dashboard) userDisable(w http.ResponseWriter, r *http.Request) {
	d.userSetDisabled(w, r, true)
}
func (d *Dashboard) userEnable(w http.ResponseWriter, r *http.Request) {
	d.userSetDisabled(w, r, false)
}

func (d *Dashboard) userSetDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	if !d.allowed(w, r, authz.UsersWrite) {
		return
	}
	v := visitFrom(r.Context())
	u, err := d.Registry.UpdateUser(r.Context(), v.p, v.tenantID(), chi.URLParam(r, "userID"), registry.UserPatch{Disabled: &disabled})
	if err != nil {
		d.redirect(w, r, "/settings/users", "error", d.explain(err))
		return
	}
	msg := fmt.Sprintf("%s is enabled again.", u.Email)
	if disabled {
		msg = fmt.Sprintf("%s is disabled and signed out everywhere.", u.Email)
	}
	d.redirect(w, r, "/settings/users", "ok", msg)
}
