package web

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
)

// pages holds one template set per page: the shared layout and partials
// plus the page's own file.
type pages struct {
	sets map[string]*template.Template
}

func loadPages() (*pages, error) {
	files, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{sets: map[string]*template.Template{}}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/partials.html", f)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		p.sets[name] = t
	}
	return p, nil
}

// view is what every page template gets.
type view struct {
	Title   string
	Nav     string // which navigation entry is current
	Visit   *visit
	CSRF    string
	Flash   *flash
	Tenants []model.Tenant // the tenant switcher's choices (platform admins)
	Version string
	// HasFindings: the security engine is wired in (the Findings page).
	HasFindings bool
	// HasVulns: vulnerability matching is wired in (the Vulnerabilities page).
	HasVulns bool
	// HasCampaigns: the update service is wired in (the Campaigns pages).
	HasCampaigns bool
	// Alarms is the navigation's count of open alarms (livecounts.go).
	Alarms *navAlarms
	Path   string // this page's address, for forms that come back to it
	// Live pages open an event stream that starts after LiveAfter (the
	// bus position when the page was made).
	Live      bool
	LiveAfter uint64
	Data      any
}

// Can reports whether the signed-in user may do perm (e.g. "devices:lifecycle").
func (v *view) Can(perm string) bool { return v.Visit.can(authz.Permission(perm)) }

// User is the signed-in user, or nil.
func (v *view) User() *model.User {
	if v.Visit == nil {
		return nil
	}
	return v.Visit.user
}

// Tenant is the tenant acted in, or nil.
func (v *view) Tenant() *model.Tenant {
	if v.Visit == nil {
		return nil
	}
	return v.Visit.tenant
}

// Platform reports whether the user is a platform admin.
func (v *view) Platform() bool { return v.Visit != nil && v.Visit.platform() }

type flash struct {
	Kind string // "ok" or "error"
	Text string
}

// flash leaves a message for the next page the browser shows (after a
// redirect).
func (d *Dashboard) flash(w http.ResponseWriter, r *http.Request, kind, text string) {
	if len(text) > 500 {
		text = text[:500]
	}
	d.setCookie(w, r, flashCookie, kind+"."+base64.RawURLEncoding.EncodeToString([]byte(text)), "/", 60)
}

func (d *Dashboard) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	d.setCookie(w, r, flashCookie, "", "/", -1)
	kind, enc, ok := strings.Cut(c.Value, ".")
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if !ok || err != nil || (kind != "ok" && kind != "error") || !utf8.Valid(b) {
		return nil
	}
	return &flash{Kind: kind, Text: string(b)}
}

// redirect answers a form with a message and a page to go to (POST,
// redirect, GET: reloading the page does not send the form again).
func (d *Dashboard) redirect(w http.ResponseWriter, r *http.Request, to, kind, text string) {
	if text != "" {
		d.flash(w, r, kind, text)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// render writes a page. The page is made in memory first, so a template
// error becomes a clean error page rather than half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, page string, vw *view) {
	t := d.pages.sets[page]
	if t == nil {
		d.Log.Error("no such page template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	vw.Visit = visitFrom(r.Context())
	vw.Version = d.Version
	vw.HasFindings = d.Defender != nil
	vw.HasVulns = d.Vulns != nil
	vw.HasCampaigns = d.OTA != nil
	vw.Path = r.URL.RequestURI()
	if vw.Visit != nil {
		vw.CSRF = vw.Visit.sess.CSRF
		vw.Alarms = d.openAlarms(r, vw.Visit)
		if vw.Visit.platform() {
			ts, _, err := d.Store.ListTenants(r.Context(), listAll)
			if err != nil {
				d.Log.Warn("listing tenants for the switcher", "err", err)
			}
			vw.Tenants = ts
		}
	}
	if vw.Flash == nil {
		vw.Flash = d.takeFlash(w, r)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", vw); err != nil {
		d.Log.Error("rendering a page", "page", page, "err", err)
		http.Error(w, "internal error while making the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail shows an error page with status.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	d.render(w, r, status, "error", &view{Title: http.StatusText(status), Data: map[string]any{"Status": status, "Message": msg}})
}

func (d *Dashboard) notFound(w http.ResponseWriter, r *http.Request) {
	d.fail(w, r, http.StatusNotFound, "There is nothing at this address. It may have been removed, or it belongs to another tenant.")
}

// ---- template helpers ----

var funcs = template.FuncMap{
	"stateLabel":  stateLabel,
	"stateClass":  func(s model.State) string { return "state-" + string(s) },
	"actionLabel": actionLabel,
	"danger": func(to model.State) bool {
		return to == model.StateDecommissioned || to == model.StateQuarantined || to == model.StateSuspended
	},
	"ago":  ago,
	"when": when,
	"whenPtr": func(t *time.Time) string {
		if t == nil {
			return "never"
		}
		return when(*t)
	},
	"iso":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"cmdLabel":  commandLabel,
	"revoked":   func(t *time.Time) bool { return t != nil },
	"expired":   func(t time.Time) bool { return time.Now().After(t) },
	"short":     func(b []byte) string { return fmt.Sprintf("%x", b[:min(len(b), 6)]) },
	"summary":   summary,
	"join":      strings.Join,
	"roleLabel": roleLabel,
	"states":    func() []model.State { return allStates },
	"has": func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	},
	"kv": func(m map[string]string) []kvPair { return sortedPairs(m) },
	// targetURL is the page about an audit target, when there is one.
	"targetURL": func(target string) string {
		switch {
		case strings.HasPrefix(target, "dev_"):
			return "/devices/" + url.PathEscape(target)
		case strings.HasPrefix(target, "whk_"):
			return "/settings/webhooks/" + url.PathEscape(target)
		}
		return ""
	},
}

func stateLabel(s model.State) string {
	switch s {
	case model.StateEndOfSupport:
		return "end of support"
	case "":
		return "unknown"
	}
	return string(s)
}

func roleLabel(r model.Role) string {
	switch r {
	case model.RolePlatformAdmin:
		return "platform admin"
	case model.RoleTenantAdmin:
		return "tenant admin"
	}
	return string(r)
}

// actionLabel is the button text for moving a device from one state to another.
func actionLabel(from, to model.State) string {
	switch to {
	case model.StateQuarantined:
		return "Quarantine"
	case model.StateActive:
		switch from {
		case model.StateQuarantined:
			return "Release from quarantine"
		case model.StateSuspended:
			return "Resume"
		case model.StateEndOfSupport:
			return "Reactivate"
		}
		return "Activate"
	case model.StateSuspended:
		return "Suspend"
	case model.StateEndOfSupport:
		return "Mark end of support"
	case model.StateDecommissioned:
		return "Decommission"
	case model.StateClaimed:
		if from == model.StateManufactured {
			return "Mark claimed"
		}
		return "Transfer (back to claimed)"
	case model.StateProvisioned:
		return "Mark provisioned"
	case model.StateManufactured:
		return "Return to factory state"
	}
	return "Move to " + stateLabel(to)
}

func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	}
	return plural(int(d/(24*time.Hour)), "day") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// summary shows an audit summary as compact JSON, cut to a readable length.
func summary(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	s := buf.String()
	if len(s) > 160 {
		s = strings.ToValidUTF8(s[:160], "") + "…"
	}
	return s
}

type kvPair struct{ Key, Value string }
