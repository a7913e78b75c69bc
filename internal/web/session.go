package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Cookie names. Over HTTPS the session cookie takes the __Host- prefix,
// which browsers only accept when Secure, host-only and Path=/.
const (
	sessionCookie       = "steward_session"
	secureSessionCookie = "__Host-steward_session"
	loginCSRFCookie     = "steward_login"
	flashCookie         = "steward_flash"
	csrfField           = "csrf"
)

// touchEvery bounds how often a session's activity is written.
const touchEvery = time.Minute

type ctxKey int

const ctxVisit ctxKey = iota

// visit is who is looking at a page: the signed-in user, its session and
// the tenant it acts in.
type visit struct {
	sess *model.Session
	user *model.User
	// tenant is where the user acts: its own for tenant users, the one a
	// platform admin picked, or nil for a platform admin at platform level.
	tenant *model.Tenant
	p      *authz.Principal
}

func visitFrom(ctx context.Context) *visit {
	v, _ := ctx.Value(ctxVisit).(*visit)
	return v
}

// can reports whether the user's role holds perm.
func (v *visit) can(perm authz.Permission) bool { return v != nil && authz.Allowed(v.user.Role, perm) }

// tenantID is the tenant the visit acts in ("" = platform).
func (v *visit) tenantID() string {
	if v.tenant == nil {
		return ""
	}
	return v.tenant.ID
}

func (v *visit) platform() bool { return v.user.Role == model.RolePlatformAdmin }

func (d *Dashboard) secure(r *http.Request) bool { return d.SecureCookies || r.TLS != nil }

func (d *Dashboard) sessionCookieName(r *http.Request) string {
	if d.secure(r) {
		return secureSessionCookie
	}
	return sessionCookie
}

// setCookie writes a cookie with the attributes every dashboard cookie
// shares: HttpOnly, SameSite=Lax, Secure over HTTPS.
func (d *Dashboard) setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge, HttpOnly: true,
		Secure: d.secure(r), SameSite: http.SameSiteLaxMode})
}

// session finds the request's session, if any, and puts the visit into
// the request context. Invalid, expired or orphaned sessions are dropped.
func (d *Dashboard) session(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, staticPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		c, err := r.Cookie(d.sessionCookieName(r))
		if err != nil || c.Value == "" || len(c.Value) > 128 {
			next.ServeHTTP(w, r)
			return
		}
		v, err := d.loadVisit(r.Context(), c.Value)
		if err != nil {
			if !errors.Is(err, errNoSession) {
				d.Log.Error("loading a session", "err", err)
				d.fail(w, r, http.StatusInternalServerError, "The server could not check your session. Try again shortly.")
				return
			}
			d.setCookie(w, r, d.sessionCookieName(r), "", "/", -1)
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxVisit, v)))
	})
}

var errNoSession = errors.New("no valid session")

func (d *Dashboard) loadVisit(ctx context.Context, token string) (*visit, error) {
	id := authz.SessionID(token)
	s, err := d.Store.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if now.After(s.ExpiresAt) || now.After(s.CreatedAt.Add(d.SessionMax)) {
		d.Store.DeleteSession(ctx, id)
		return nil, errNoSession
	}
	u, err := d.Store.GetUser(ctx, s.TenantID, s.UserID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Disabled()) {
		d.Store.DeleteSession(ctx, id)
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	v := &visit{sess: s, user: u}
	tenant := u.TenantID
	if u.Role == model.RolePlatformAdmin {
		tenant = s.ViewTenant
	}
	if tenant != "" {
		t, err := d.Store.GetTenant(ctx, tenant)
		switch {
		case err == nil:
			v.tenant = t
		case errors.Is(err, store.ErrNotFound) && u.Role == model.RolePlatformAdmin:
			// The tenant looked at is gone: back to platform level.
		default:
			return nil, err
		}
	}
	v.p = &authz.Principal{UserID: u.ID, TenantID: v.tenantID(), Role: u.Role, Name: u.Email}
	if now.Sub(s.LastSeen) > touchEvery {
		exp := now.Add(d.SessionIdle)
		if end := s.CreatedAt.Add(d.SessionMax); exp.After(end) {
			exp = end
		}
		if err := d.Store.TouchSession(ctx, id, now, exp); err != nil && !errors.Is(err, store.ErrNotFound) {
			d.Log.Warn("recording session activity", "err", err)
		}
	}
	return v, nil
}

// signedIn wraps a handler that needs a signed-in user. Pages send others
// to the sign-in form; changes (POST) also need the session's CSRF token
// and must come from this site.
func (d *Dashboard) signedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := visitFrom(r.Context())
		if v == nil {
			if r.Method == http.MethodGet && r.URL.Path != "/ui/events" {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			if r.URL.Path == "/ui/events" {
				http.Error(w, "sign in first", http.StatusUnauthorized)
				return
			}
			d.flash(w, r, "error", "Your session has ended. Sign in again.")
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				d.Log.Warn("refused a cross-site form post", "path", r.URL.Path, "origin", r.Header.Get("Origin"),
					"user", v.user.ID)
				d.fail(w, r, http.StatusForbidden, "This form was sent from another site, so it was refused.")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if !tokenEqual(r.PostFormValue(csrfField), v.sess.CSRF) {
				d.Log.Warn("refused a form post without a valid CSRF token", "path", r.URL.Path, "user", v.user.ID)
				d.fail(w, r, http.StatusForbidden, "This form has expired or was not sent from this dashboard. "+
					"Reload the page and try again.")
				return
			}
		}
		h(w, r)
	}
}

func tokenEqual(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// sameOrigin refuses requests a browser marks as coming from another
// site: by Sec-Fetch-Site, Origin or, without those, Referer. Requests
// without any of them (old clients, scripts) rely on the CSRF token.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return false
	}
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return true
	}
	if src == "null" {
		return false
	}
	u, err := url.Parse(src)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// clientIP is the peer address; a proxy in front would make every client
// look the same, so X-Forwarded-For is deliberately not trusted here.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// localPath accepts a redirect target only when it stays on this site.
func localPath(p string) string {
	if p == "" || p[0] != '/' || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return "/"
	}
	return p
}
