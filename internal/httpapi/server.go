// Package httpapi is the REST edge: handlers under /api/v1, the OpenAPI
// document, problem+json errors, API key authentication, idempotency keys,
// Server-Sent Events, health and metrics.
//
// Routing uses huma on chi: huma derives the OpenAPI document, request
// validation (types, unknown fields, body size) and RFC 9457 errors from the
// Go types of each handler, so the document cannot drift from the code;
// chi carries the plain-HTTP middleware (request IDs, logging, metrics,
// authentication, idempotency) and non-JSON routes such as /metrics.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humachi"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
)

// Prefix is where the API lives.
const Prefix = "/api/v1"

// Deps are what the API needs from the platform.
type Deps struct {
	Registry *registry.Service
	Store    store.Store
	Bus      *bus.Bus
	Log      *slog.Logger
	Metrics  *prometheus.Registry
	// Ready reports whether the platform can serve (database, bus).
	Ready func(ctx context.Context) error
	// AllowHTTPWebhooks permits http:// webhook URLs (dev mode, tests).
	AllowHTTPWebhooks bool
	Version           string
	// Identity is the device PKI (manufacturer CAs, claims, tokens, certificates).
	Identity *identity.Service
	// Connectivity: twins, commands, telemetry (twin.go).
	Connectivity Connectivity
	// Security: vulnerabilities, network policy, findings (findings.go).
	Security Security
	// OTA: artifacts and update metadata (ota.go).
	OTA OTA
	// Lifecycle: decommission, export, release and unmanaged devices (lifecycle.go).
	Lifecycle Lifecycle
}

// API is the mounted REST API.
type API struct {
	Deps
	huma    huma.API
	router  chi.Router
	metrics *httpMetrics
	// streams is cancelled when the server shuts down (see CloseStreams).
	streams      context.Context
	closeStreams context.CancelFunc
}

// New builds the handler for the whole HTTP surface of the API.
func New(d Deps) *API {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Metrics == nil {
		d.Metrics = prometheus.NewRegistry()
	}
	a := &API{Deps: d, router: chi.NewRouter(), metrics: newHTTPMetrics(d.Metrics)}
	a.streams, a.closeStreams = context.WithCancel(context.Background())
	a.router.Use(a.requestID, a.observe, a.recoverer, a.authenticate, a.idempotency)

	cfg := huma.DefaultConfig("Steward API", d.Version)
	cfg.Info.Description = "Managed IoT platform: tenants, products, devices and their lifecycle, " +
		"fleet queries, groups, API keys, audit log, events and webhooks. Authenticate with " +
		"`Authorization: Bearer <API key>`. Platform admins act inside a tenant by naming it in the " +
		"`X-Steward-Tenant` header. Creating calls honour `Idempotency-Key`."
	cfg.OpenAPIPath = Prefix + "/openapi"
	cfg.DocsPath = Prefix + "/docs"
	cfg.SchemasPath = Prefix + "/schemas"
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"apiKey": {Type: "http", Scheme: "bearer", Description: "An API key: stw_<prefix>_<secret>"},
	}
	// Problem details say where the schema is; no $schema link in bodies.
	cfg.CreateHooks = nil
	a.huma = humachi.New(a.router, cfg)

	a.routesHealth()
	a.routesTenants()
	a.routesProducts()
	a.routesDevices()
	a.routesGroups()
	a.routesKeys()
	a.routesAudit()
	a.routesWebhooks()
	a.routesEvents()
	a.routesIdentity()
	a.routesConnectivity()
	a.routesUsers()
	a.routesSecurity()
	a.routesOTA()
	a.routesLifecycle()
	a.routesCampaigns()
	a.router.Handle("/metrics", promhttp.HandlerFor(d.Metrics, promhttp.HandlerOpts{Registry: d.Metrics}))
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// Router lets other edges (the dashboard) mount beside the API.
func (a *API) Router() chi.Router { return a.router }

// OpenAPI returns the document the server serves.
func (a *API) OpenAPI() *huma.OpenAPI { return a.huma.OpenAPI() }

// access describes who may call an operation.
type access struct {
	perm authz.Permission
	// tenant: the call acts inside one tenant (the key's, or the one a
	// platform admin names).
	tenant bool
	// public: no key needed (health).
	public bool
}

// reg registers one operation with its access rule; every route goes
// through here so none can be added without one.
func reg[I, O any](a *API, op huma.Operation, acc access, h func(context.Context, *I) (*O, error)) {
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata["access"] = acc
	if !acc.public {
		op.Security = []map[string][]string{{"apiKey": {}}}
		op.Middlewares = append(op.Middlewares, a.authorize)
	}
	if op.Tags == nil {
		op.Tags = []string{tagOf(op.Path)}
	}
	huma.Register(a.huma, op, func(ctx context.Context, in *I) (*O, error) {
		out, err := h(ctx, in)
		if err != nil {
			return nil, apiErr(ctx, err)
		}
		return out, nil
	})
}

func tagOf(path string) string {
	rest, ok := strings.CutPrefix(path, Prefix+"/")
	if !ok {
		return "health"
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] == '/' {
			return rest[:i]
		}
	}
	return rest
}

// now is the API's clock.
func now() time.Time { return time.Now().UTC() }
