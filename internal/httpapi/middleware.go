package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/store"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyLogger
	keyAuthErr
)

// TenantHeader is how a platform admin names the tenant a call acts in.
const TenantHeader = "X-Steward-Tenant"

func requestID(ctx context.Context) string {
	s, _ := ctx.Value(keyRequestID).(string)
	return s
}

func logFrom(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(keyLogger).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// requestID keeps a caller's X-Request-ID when it is sane, or makes one,
// and puts a logger carrying it into the context.
func (a *API) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if id == "" || len(id) > 64 || strings.ContainsAny(id, " \r\n\t") {
			id = ids.New("req")
		}
		w.Header().Set("X-Request-ID", id)
		ctx := context.WithValue(r.Context(), keyRequestID, id)
		ctx = context.WithValue(ctx, keyLogger, a.Log.With("request_id", id))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// Flush keeps Server-Sent Events streaming through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg *prometheus.Registry) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "steward_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code."}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "steward_http_request_duration_seconds",
			Help: "HTTP request latency by route pattern and method.", Buckets: prometheus.DefBuckets}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// observe logs every request and counts it by route pattern (not raw path,
// which would make one series per device).
func (a *API) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		d := time.Since(start)
		a.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
		a.metrics.duration.WithLabelValues(route, r.Method).Observe(d.Seconds())
		level := slog.LevelInfo
		if sw.status >= 500 {
			level = slog.LevelError
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", sw.status, "bytes", sw.bytes,
			"duration_ms", float64(d.Microseconds()) / 1000}
		if p := authz.From(r.Context()); p != nil {
			attrs = append(attrs, "key", p.KeyID)
		}
		logFrom(r.Context()).Log(r.Context(), level, "http", attrs...)
	})
}

func (a *API) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				logFrom(r.Context()).Error("panic", "value", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeProblem(w, r, http.StatusInternalServerError, "internal error (request id "+requestID(r.Context())+")")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// writeProblem answers outside huma (middleware) in the same format.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	body, _ := jsonMarshal(huma.NewError(status, detail))
	w.Write(body)
}

// authenticate turns a bearer key into a principal. A request without a
// key goes on (public routes); a request with a bad key is refused here,
// so no handler ever sees it.
func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if h == "" {
			next.ServeHTTP(w, r)
			return
		}
		presented, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="steward"`)
			writeProblem(w, r, http.StatusUnauthorized, "Authorization must be \"Bearer <API key>\"")
			return
		}
		p, err := a.principal(r.Context(), strings.TrimSpace(presented))
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="steward", error="invalid_token"`)
			logFrom(r.Context()).Info("authentication failed", "reason", err.Error())
			writeProblem(w, r, http.StatusUnauthorized, "the API key is not valid (unknown, revoked or expired); create a new one")
			return
		}
		next.ServeHTTP(w, r.WithContext(authz.With(r.Context(), p)))
	})
}

func (a *API) principal(ctx context.Context, presented string) (*authz.Principal, error) {
	prefix, err := authz.ParseKey(presented)
	if err != nil {
		return nil, err
	}
	k, err := a.Store.GetAPIKeyByPrefix(ctx, prefix)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, authz.ErrBadKey
		}
		return nil, err
	}
	t := now()
	if err := authz.CheckKey(presented, k, t); err != nil {
		return nil, err
	}
	// Last-used is informative; record it at most once a minute per key.
	if k.LastUsed == nil || t.Sub(*k.LastUsed) > time.Minute {
		if err := a.Store.TouchAPIKey(ctx, k.ID, t); err != nil {
			logFrom(ctx).Warn("recording key use", "err", err)
		}
	}
	return &authz.Principal{KeyID: k.ID, TenantID: k.TenantID, Role: k.Role, Name: k.Name}, nil
}

// authorize checks the operation's permission and settles which tenant the
// call acts in, before the handler runs.
func (a *API) authorize(ctx huma.Context, next func(huma.Context)) {
	acc, _ := ctx.Operation().Metadata["access"].(access)
	p := authz.From(ctx.Context())
	if p == nil {
		ctx.SetHeader("WWW-Authenticate", `Bearer realm="steward"`)
		huma.WriteErr(a.huma, ctx, http.StatusUnauthorized, "this call needs an API key: send \"Authorization: Bearer <key>\"")
		return
	}
	if !authz.Allowed(p.Role, acc.perm) {
		huma.WriteErr(a.huma, ctx, http.StatusForbidden, fmt.Sprintf("role %s may not %s", p.Role, acc.perm))
		return
	}
	eff := *p
	named := ctx.Header(TenantHeader)
	switch {
	case p.Platform() && named != "":
		if _, err := a.Store.GetTenant(ctx.Context(), named); err != nil {
			huma.WriteErr(a.huma, ctx, http.StatusNotFound, "tenant "+named+" (from "+TenantHeader+") does not exist")
			return
		}
		eff.TenantID = named
	case p.Platform() && acc.tenant:
		huma.WriteErr(a.huma, ctx, http.StatusBadRequest, "platform admin keys must name the tenant in the "+TenantHeader+" header for this call")
		return
	case !p.Platform() && named != "" && named != p.TenantID:
		// A tenant key cannot step into another tenant; say not found, so
		// the answer does not confirm the tenant exists.
		huma.WriteErr(a.huma, ctx, http.StatusNotFound, "tenant "+named+" not found")
		return
	}
	next(huma.WithContext(ctx, authz.With(ctx.Context(), &eff)))
}

// tenantOf is the tenant the current call acts in.
func tenantOf(ctx context.Context) string {
	if p := authz.From(ctx); p != nil {
		return p.TenantID
	}
	return ""
}
