package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

type tenantsData struct {
	Tenants []model.Tenant
	Next    string
	Kinds   []model.TenantKind
}

// tenantsPage lists the tenants for a platform admin to pick from or add to.
func (d *Dashboard) tenantsPage(w http.ResponseWriter, r *http.Request) {
	v := visitFrom(r.Context())
	if !v.platform() {
		d.fail(w, r, http.StatusForbidden, "Only platform admins see every tenant.")
		return
	}
	ts, _, err := d.Store.ListTenants(r.Context(), listAll)
	if err != nil {
		d.internal(w, r, err)
		return
	}
	d.render(w, r, http.StatusOK, "tenants", &view{Title: "Tenants", Nav: "tenants", Data: tenantsData{Tenants: ts,
		Next: localPath(r.URL.Query().Get("next")), Kinds: []model.TenantKind{model.TenantEnterprise, model.TenantHousehold, model.TenantVendor}}})
}

func (d *Dashboard) tenantCreate(w http.ResponseWriter, r *http.Request) {
	if !d.allowed(w, r, authz.TenantsWrite) {
		return
	}
	v := visitFrom(r.Context())
	t, err := d.Registry.CreateTenant(r.Context(), v.p, strings.TrimSpace(r.PostFormValue("name")), model.TenantKind(r.PostFormValue("kind")))
	if err != nil {
		d.redirect(w, r, "/tenants", "error", d.explain(err))
		return
	}
	if err := d.Store.SetSessionTenant(r.Context(), v.sess.ID, t.ID); err != nil {
		d.internal(w, r, err)
		return
	}
	d.redirect(w, r, "/fleet", "ok", "Tenant "+t.Name+" is created; you are looking at it now.")
}

// tenantSwitch changes the tenant a platform admin looks at ("" = the
// platform itself).
func (d *Dashboard) tenantSwitch(w http.ResponseWriter, r *http.Request) {
	v := visitFrom(r.Context())
	if !v.platform() {
		d.fail(w, r, http.StatusForbidden, "Only platform admins switch tenants.")
		return
	}
	id := r.PostFormValue("tenant")
	next := localPath(r.PostFormValue("next"))
	if id != "" {
		if _, err := d.Store.GetTenant(r.Context(), id); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				d.redirect(w, r, "/tenants", "error", "That tenant does not exist.")
				return
			}
			d.internal(w, r, err)
			return
		}
	}
	if err := d.Store.SetSessionTenant(r.Context(), v.sess.ID, id); err != nil {
		d.internal(w, r, err)
		return
	}
	if id == "" {
		next = "/tenants"
	} else if next == "/" || next == "/tenants" || strings.HasPrefix(next, "/devices/") || strings.HasPrefix(next, "/settings/webhooks/") {
		// A page about one record of the old tenant means nothing in the new one.
		next = "/fleet"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}
