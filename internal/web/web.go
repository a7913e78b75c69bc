// Package web is the dashboard: server-rendered HTML pages (html/template,
// assets embedded in the binary, a little vanilla JavaScript and no build
// step) for operators and households, beside the REST API on the same
// listener.
//
// People sign in with a user account (argon2id password, session cookie,
// CSRF token on every form); what they may do follows the same role table
// as API keys, checked on the server for every action. Live changes come
// over Server-Sent Events from the event bus.
package web

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/alarm"
	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/commands"
	"github.com/steward-iot/steward/internal/defender"
	"github.com/steward-iot/steward/internal/discovery"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/retire"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/telemetry"
	"github.com/steward-iot/steward/internal/twin"
	"github.com/steward-iot/steward/internal/vuln"
)

//go:embed templates static
var assets embed.FS

// Deps are what the dashboard needs from the platform.
type Deps struct {
	Registry *registry.Service
	Store    store.Store
	Bus      *bus.Bus // nil: no live updates
	// The device services; each may be nil, and the dashboard then leaves
	// out the pages and sections built on it.
	Identity  *identity.Service  // claims, certificates
	Twin      *twin.Service      // device twins
	Commands  *commands.Service  // device commands
	Telemetry *telemetry.Service // telemetry charts
	Defender  *defender.Engine   // security findings
	Vulns     *vuln.Service      // advisories affecting the fleet
	OTA       *ota.Service       // update campaigns, release invalidation, consent
	Retire    *retire.Service    // decommissioning
	Discovery *discovery.Service // unmanaged devices
	Alarms    *alarm.Service     // behaviour alarms
	Log       *slog.Logger
	Version   string
	// SecureCookies marks cookies Secure even on plain-HTTP requests (a
	// TLS proxy in front). Requests that arrive over TLS always get it.
	SecureCookies bool
	// AllowHTTPWebhooks permits http:// webhook URLs (dev mode).
	AllowHTTPWebhooks bool
	// Login limits failed sign-ins; zero values take the defaults.
	Login LoginLimits
	// SessionIdle ends a session unused for this long (default 12h);
	// SessionMax ends any session this long after sign-in (default 7 days).
	SessionIdle, SessionMax time.Duration
}

// Dashboard serves the web pages.
type Dashboard struct {
	Deps
	router   chi.Router
	pages    *pages
	limiter  *limiter
	static   http.Handler
	overview figureCache

	// done closes on Close, ending live event streams so that a graceful
	// shutdown does not wait for open browser tabs.
	done      chan struct{}
	closeOnce sync.Once
}

// New builds the dashboard.
func New(d Deps) (*Dashboard, error) {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.SessionIdle <= 0 {
		d.SessionIdle = 12 * time.Hour
	}
	if d.SessionMax <= 0 {
		d.SessionMax = 7 * 24 * time.Hour
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	db := &Dashboard{Deps: d, pages: p, limiter: newLimiter(d.Login), done: make(chan struct{}),
		static: http.StripPrefix(staticPrefix, http.FileServerFS(sub))}
	db.router = db.routes()
	return db, nil
}

// Mount serves the dashboard on r for every path r does not route itself:
// the API keeps its own table of routes (which its OpenAPI document
// describes in full), and the dashboard shares its middleware: request
// IDs, logs, metrics and panic recovery.
func (d *Dashboard) Mount(r chi.Router) { r.NotFound(d.ServeHTTP) }

// ServeHTTP routes a request to a page.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		// An unknown API path gets an API answer, not a web page.
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"type":"https://steward.dev/problems/not-found","title":"Not Found","status":404,"detail":"no such API route"}`))
		return
	}
	if rctx := chi.RouteContext(r.Context()); rctx != nil {
		// Reached as the API router's fallback: route afresh, so the
		// route pattern that metrics and logs record is the page's.
		rctx.Reset()
		rctx.Routes = d.router
	}
	d.router.ServeHTTP(w, r)
}

// Close ends the live event streams.
func (d *Dashboard) Close() { d.closeOnce.Do(func() { close(d.done) }) }

// SweepSessions deletes expired sessions every interval until ctx ends.
func (d *Dashboard) SweepSessions(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := d.Store.DeleteExpiredSessions(ctx, time.Now()); err != nil {
				d.Log.Warn("sweeping expired sessions", "err", err)
			} else if n > 0 {
				d.Log.Debug("swept expired sessions", "count", n)
			}
			d.limiter.prune(time.Now())
		}
	}
}

const staticPrefix = "/static/"

func (d *Dashboard) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(securityHeaders, d.session)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { d.notFound(w, r) })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, r, http.StatusMethodNotAllowed, "This address does not take "+r.Method+" requests.")
	})
	r.Get(staticPrefix+"*", d.serveStatic)
	r.Get("/favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, staticPrefix+"icon.svg", http.StatusMovedPermanently)
	})

	r.Get("/login", d.loginPage)
	r.Post("/login", d.loginSubmit)
	r.Post("/logout", d.signedIn(d.logout))

	r.Get("/", d.signedIn(d.home))
	r.Get("/fleet", d.signedIn(d.fleetPage))
	r.Get("/devices", d.signedIn(d.devicesPage))
	r.Get("/devices/{deviceID}", d.signedIn(d.devicePage))
	r.Post("/devices/{deviceID}/transition", d.signedIn(d.deviceTransition))
	r.Post("/devices/{deviceID}/edit", d.signedIn(d.deviceEdit))
	r.Post("/devices/{deviceID}/twin", d.signedIn(d.twinDesired))
	r.Post("/devices/{deviceID}/commands", d.signedIn(d.commandSend))
	r.Post("/devices/{deviceID}/certificates/{serial}/revoke", d.signedIn(d.certRevoke))
	r.Get("/home", d.signedIn(d.myHome))
	r.Post("/home/claim", d.signedIn(d.claimSubmit))
	r.Get("/findings", d.signedIn(d.findingsPage))
	d.alarmRoutes(r)
	r.Post("/findings/{findingID}/suppress", d.signedIn(d.findingSuppress))
	r.Get("/vulnerabilities", d.signedIn(d.vulnsPage))
	r.Get("/vulnerabilities/{advisoryID}", d.signedIn(d.advisoryPage))
	r.Get("/audit", d.signedIn(d.auditPage))
	d.campaignRoutes(r)
	d.lifecycleRoutes(r)

	r.Get("/settings", d.signedIn(d.settingsHome))
	r.Get("/settings/keys", d.signedIn(d.keysPage))
	r.Post("/settings/keys", d.signedIn(d.keyCreate))
	r.Post("/settings/keys/{keyID}/revoke", d.signedIn(d.keyRevoke))
	r.Get("/settings/webhooks", d.signedIn(d.webhooksPage))
	r.Post("/settings/webhooks", d.signedIn(d.webhookCreate))
	r.Get("/settings/webhooks/{webhookID}", d.signedIn(d.webhookPage))
	r.Post("/settings/webhooks/{webhookID}/delete", d.signedIn(d.webhookDelete))
	r.Get("/settings/users", d.signedIn(d.usersPage))
	r.Post("/settings/users", d.signedIn(d.userCreate))
	r.Post("/settings/users/{userID}/disable", d.signedIn(d.userDisable))
	r.Post("/settings/users/{userID}/enable", d.signedIn(d.userEnable))

	r.Get("/account", d.signedIn(d.accountPage))
	r.Post("/account/password", d.signedIn(d.accountPassword))

	r.Get("/tenants", d.signedIn(d.tenantsPage))
	r.Post("/tenants", d.signedIn(d.tenantCreate))
	r.Post("/tenant", d.signedIn(d.tenantSwitch))

	r.Get("/ui/events", d.signedIn(d.events))
	return r
}

func (d *Dashboard) serveStatic(w http.ResponseWriter, r *http.Request) {
	// Assets are part of the binary: they change only with its version,
	// which the page links carry (?v=…).
	w.Header().Set("Cache-Control", "public, max-age=86400")
	d.static.ServeHTTP(w, r)
}

// securityHeaders keeps pages from being framed, sniffed or extended with
// scripts from anywhere but this server.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, staticPrefix) {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}
