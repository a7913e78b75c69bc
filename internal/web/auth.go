package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
)

type loginData struct {
	Email string
	Next  string
	Error string
}

// loginPage shows the sign-in form. The form's CSRF token is paired with a
// short-lived cookie (there is no session yet to hold it).
func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"))
	if visitFrom(r.Context()) != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	d.showLogin(w, r, http.StatusOK, loginData{Next: next})
}

func (d *Dashboard) showLogin(w http.ResponseWriter, r *http.Request, status int, data loginData) {
	token := authz.NewCSRFToken()
	d.setCookie(w, r, loginCSRFCookie, token, "/login", 3600)
	d.render(w, r, status, "login", &view{Title: "Sign in", CSRF: token, Data: data})
}

func (d *Dashboard) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	email := registry.NormalizeEmail(r.PostFormValue("email"))
	password := r.PostFormValue("password")
	next := localPath(r.PostFormValue("next"))
	data := loginData{Email: email, Next: next}
	c, err := r.Cookie(loginCSRFCookie)
	if !sameOrigin(r) || err != nil || !tokenEqual(r.PostFormValue(csrfField), c.Value) {
		d.Log.Warn("refused a sign-in form without a valid CSRF token", "remote", clientIP(r))
		data.Error = "The sign-in form expired or was not sent from this page. Try again."
		d.showLogin(w, r, http.StatusForbidden, data)
		return
	}
	ip := clientIP(r)
	if wait := d.limiter.wait(email, ip); wait > 0 {
		d.Log.Warn("sign-in refused: too many failures", "email", email, "remote", ip)
		mins := int(math.Ceil(wait.Minutes()))
		w.Header().Set("Retry-After", fmt.Sprint(int(math.Ceil(wait.Seconds()))))
		data.Error = fmt.Sprintf("Too many failed sign-ins. Wait %s and try again.", plural(mins, "minute"))
		d.showLogin(w, r, http.StatusTooManyRequests, data)
		return
	}
	u, err := d.Registry.Authenticate(r.Context(), email, password)
	if err != nil {
		if !errors.Is(err, registry.ErrBadCredentials) {
			d.Log.Error("checking a sign-in", "err", err)
			data.Error = "The server could not check your sign-in. Try again shortly."
			d.showLogin(w, r, http.StatusInternalServerError, data)
			return
		}
		d.limiter.failed(email, ip)
		d.Log.Info("sign-in failed", "email", email, "remote", ip)
		data.Error = "Wrong email or password."
		d.showLogin(w, r, http.StatusUnauthorized, data)
		return
	}
	d.limiter.succeeded(email)
	token, id := authz.NewSessionToken()
	now := time.Now().UTC()
	s := &model.Session{ID: id, UserID: u.ID, TenantID: u.TenantID, CSRF: authz.NewCSRFToken(), CreatedAt: now,
		ExpiresAt: now.Add(d.SessionIdle), LastSeen: now}
	if err := d.Store.CreateSession(r.Context(), s); err != nil {
		d.Log.Error("creating a session", "err", err)
		data.Error = "The server could not sign you in. Try again shortly."
		d.showLogin(w, r, http.StatusInternalServerError, data)
		return
	}
	if err := d.Registry.RecordSignIn(r.Context(), u, ip); err != nil {
		d.Log.Warn("recording a sign-in in the audit log", "err", err)
	}
	d.Log.Info("signed in", "user", u.ID, "remote", ip)
	d.setCookie(w, r, loginCSRFCookie, "", "/login", -1)
	d.setCookie(w, r, d.sessionCookieName(r), token, "/", 0)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	v := visitFrom(r.Context())
	if err := d.Store.DeleteSession(r.Context(), v.sess.ID); err != nil {
		d.Log.Warn("ending a session", "err", err)
	}
	d.setCookie(w, r, d.sessionCookieName(r), "", "/", -1)
	d.redirect(w, r, "/login", "ok", "You are signed out.")
}

// home sends people where they start: the fleet overview, or the tenant
// list for a platform admin who has not picked a tenant.
func (d *Dashboard) home(w http.ResponseWriter, r *http.Request) {
	v := visitFrom(r.Context())
	if v.tenant == nil && v.platform() {
		http.Redirect(w, r, "/tenants", http.StatusSeeOther)
		return
	}
	if v.tenant != nil && v.tenant.Kind == model.TenantHousehold {
		http.Redirect(w, r, "/home", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/fleet", http.StatusSeeOther)
}

func (d *Dashboard) accountPage(w http.ResponseWriter, r *http.Request) {
	d.render(w, r, http.StatusOK, "account", &view{Title: "Your account", Nav: "account",
		Data: map[string]any{"MinPassword": registry.MinPasswordLen}})
}

func (d *Dashboard) accountPassword(w http.ResponseWriter, r *http.Request) {
	v := visitFrom(r.Context())
	if r.PostFormValue("password") != r.PostFormValue("confirm") {
		d.redirect(w, r, "/account", "error", "The two new passwords differ.")
		return
	}
	err := d.Registry.SetPassword(r.Context(), v.p, v.user.TenantID, v.user.ID, r.PostFormValue("current"),
		r.PostFormValue("password"), v.sess.ID)
	if err != nil {
		d.redirect(w, r, "/account", "error", d.explain(err))
		return
	}
	d.redirect(w, r, "/account", "ok", "Your password is changed. Your other sessions were signed out.")
}

// explain turns a domain error into a sentence for the page; unexpected
// errors are logged and described vaguely.
func (d *Dashboard) explain(err error) string {
	var inv *registry.InvalidError
	var forb *registry.ForbiddenError
	switch {
	case errors.As(err, &inv):
		return capitalize(strings.ReplaceAll(inv.Field, "_", " ")) + " " + inv.Message + "."
	case errors.As(err, &forb):
		return capitalize(forb.Message) + "."
	case registry.IsNotFound(err):
		return "It no longer exists."
	}
	if m, ok := domainMessage(err); ok {
		return m
	}
	msg := err.Error()
	if isUserError(err) {
		return capitalize(msg) + "."
	}
	d.Log.Error("dashboard action failed", "err", err)
	return "The server could not do this. The log has the details."
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
