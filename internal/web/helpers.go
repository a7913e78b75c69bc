package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/lifecycle"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

var allStates = lifecycle.States()

// listAll is a page large enough for the short lists the dashboard shows
// whole (tenants in the switcher, products in the filter bar).
var listAll = store.ListOptions{Limit: 1000}

func sortedPairs(m map[string]string) []kvPair {
	out := make([]kvPair, 0, len(m))
	for k, v := range m {
		out = append(out, kvPair{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// isUserError reports whether err's message is written for the person
// who asked (a refused transition, a taken name, a stale form).
func isUserError(err error) bool {
	var ill *lifecycle.IllegalTransitionError
	var conflict *store.ConflictError
	var inUse *store.InUseError
	return errors.As(err, &ill) || errors.As(err, &conflict) || errors.As(err, &inUse) || errors.Is(err, store.ErrStale)
}

// allowed checks perm for the visit and answers 403 when it is missing.
// Hidden buttons are a courtesy; this check is the rule.
func (d *Dashboard) allowed(w http.ResponseWriter, r *http.Request, perm authz.Permission) bool {
	v := visitFrom(r.Context())
	if v.can(perm) {
		return true
	}
	d.Log.Warn("refused a dashboard action the role does not allow", "user", v.user.ID, "role", v.user.Role,
		"permission", perm, "path", r.URL.Path)
	d.fail(w, r, http.StatusForbidden, "Your role ("+roleLabel(v.user.Role)+") may not do this.")
	return false
}

// inTenant makes sure the visit acts in a tenant; a platform admin who
// has not picked one is sent to the tenant list.
func (d *Dashboard) inTenant(w http.ResponseWriter, r *http.Request) bool {
	v := visitFrom(r.Context())
	if v.tenant != nil {
		return true
	}
	if r.Method == http.MethodGet {
		d.redirect(w, r, "/tenants?next="+url.QueryEscape(r.URL.RequestURI()), "error", "Pick a tenant first: this page shows one tenant's data.")
	} else {
		d.fail(w, r, http.StatusBadRequest, "Pick a tenant first.")
	}
	return false
}

// actors turns audit actors ("user:usr_…", "key:key_…") into names, with
// one lookup per distinct actor.
type actors struct {
	ctx    context.Context
	st     store.Reader
	tenant string
	names  map[string]string
}

func newActors(ctx context.Context, st store.Reader, tenant string) *actors {
	return &actors{ctx: ctx, st: st, tenant: tenant, names: map[string]string{"system": "system"}}
}

// Name is a person-readable name for actor.
func (a *actors) Name(actor string) string {
	if n, ok := a.names[actor]; ok {
		return n
	}
	kind, id, _ := strings.Cut(actor, ":")
	n := actor
	switch kind {
	case "user":
		for _, t := range []string{a.tenant, ""} {
			if u, err := a.st.GetUser(a.ctx, t, id); err == nil {
				n = u.Name
				if u.Name != u.Email {
					n += " <" + u.Email + ">"
				}
				break
			}
		}
	case "key":
		for _, t := range []string{a.tenant, ""} {
			if k, err := a.st.GetAPIKey(a.ctx, t, id); err == nil {
				n = "API key “" + k.Name + "”"
				break
			}
		}
		if id == "bootstrap" {
			n = "first start"
		}
	}
	a.names[actor] = n
	return n
}

// roleChoices are the roles a user may hand out in a tenant ("" = platform).
func roleChoices(own model.Role, tenant string) []model.Role {
	if tenant == "" {
		return []model.Role{model.RolePlatformAdmin}
	}
	all := []model.Role{model.RoleTenantAdmin, model.RoleOperator, model.RoleViewer, model.RoleVendor}
	var out []model.Role
	for _, r := range all {
		if own == model.RolePlatformAdmin || own == model.RoleTenantAdmin || r == model.RoleViewer {
			out = append(out, r)
		}
	}
	return out
}

// serves opens a tenant page or form that needs perm and a service that
// may not be configured (available): false when it has answered already
// (not signed in to a tenant, not allowed, or not found).
func (d *Dashboard) serves(w http.ResponseWriter, r *http.Request, perm authz.Permission, available bool) bool {
	if !d.inTenant(w, r) || !d.allowed(w, r, perm) {
		return false
	}
	if !available {
		d.notFound(w, r)
		return false
	}
	return true
}

// nextPage is the address of a list's next page: path with q's
// parameters and cursor; "" when there is no next page.
func nextPage(path string, q url.Values, cursor string) string {
	if cursor == "" {
		return ""
	}
	nv := url.Values{}
	for k, v := range q {
		nv[k] = v
	}
	nv.Set("cursor", cursor)
	return path + "?" + nv.Encode()
}
