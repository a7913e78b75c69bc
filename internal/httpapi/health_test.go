package httpapi_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestHealthAndMetrics: liveness and readiness answer without a key, and
// /metrics exposes the request counter labelled by route pattern (not by
// raw path, which would make a series per device).
func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		h := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: "/healthz"})
		if h.Str("status") != "ok" || h.Str("version") != "test" {
			t.Errorf("/healthz: %s", h)
		}
		r := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: "/readyz"})
		if r.Str("status") != "ready" || r.Str("store") != srv.Backend() {
			t.Errorf("/readyz: %s, want ready on %s", r, srv.Backend())
		}
		if id := r.Header.Get("X-Request-ID"); id == "" {
			t.Errorf("no X-Request-ID on answers")
		}
		// A sane caller request ID is kept, a hostile one replaced.
		kept := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: "/healthz", Header: map[string]string{"X-Request-ID": "trace-123"}})
		if kept.Header.Get("X-Request-ID") != "trace-123" {
			t.Errorf("X-Request-ID trace-123 came back as %q", kept.Header.Get("X-Request-ID"))
		}

		ten := srv.CreateTenant(t, "metrics")
		p := srv.CreateProduct(t, ten.ID)
		d := srv.CreateDevice(t, ten.ID, p.ID)
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + d.ID, Key: ten.Admin.Secret})
		srv.Must(t, http.StatusNotFound, testserver.Req{Method: http.MethodGet, Path: api + "/devices/dev_nope", Key: ten.Admin.Secret})

		m := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: "/metrics"})
		if m.Status != http.StatusOK || !strings.HasPrefix(m.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("/metrics: %d %s", m.Status, m.Header.Get("Content-Type"))
		}
		text := string(m.Raw)
		for _, re := range []string{
			`(?m)^# TYPE steward_http_requests_total counter$`,
			`(?m)^steward_http_requests_total\{code="200",method="GET",route="/healthz"\} [1-9]`,
			`(?m)^steward_http_requests_total\{code="200",method="GET",route="/api/v1/devices/\{deviceID\}"\} 1$`,
			`(?m)^steward_http_requests_total\{code="404",method="GET",route="/api/v1/devices/\{deviceID\}"\} 1$`,
			`(?m)^steward_http_requests_total\{code="201",method="POST",route="/api/v1/devices"\} 1$`,
			`(?m)^steward_http_request_duration_seconds_bucket\{`,
			`(?m)^go_goroutines `,
			`(?m)^# TYPE steward_telemetry_points_written_total counter$`,
			`(?m)^steward_telemetry_points_dropped_total 0$`,
		} {
			if !regexp.MustCompile(re).MatchString(text) {
				t.Errorf("/metrics has no line matching %s", re)
			}
		}
		if strings.Contains(text, d.ID) || strings.Contains(text, "dev_nope") {
			t.Errorf("/metrics carries a raw device ID: routes must be patterns")
		}
	})
}
