package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestTenantWall aims every operation of the OpenAPI document at tenant A's
// resources with tenant B's tenant-admin key. The route list comes from the
// served document, so a new route is checked without touching this test
// (and fails it if it needs a fixture the test does not have yet).
func TestTenantWall(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		hook := sink(t)
		a := newFixture(t, srv, "tenant-a", hook)
		b := newFixture(t, srv, "tenant-b", hook)
		bkey := b.tenant.Admin.Secret
		ops := operations(t, srv)
		before := snapshot(t, srv, a.tenant.ID)
		secrets := a.secrets()

		t.Run("every operation", func(t *testing.T) {
			var streams []operation
			for _, o := range ops {
				if o.Stream {
					streams = append(streams, o)
					continue
				}
				r := request(t, o, a, bkey)
				res := srv.Do(t, r)
				resource := hasPathParams(o)
				switch {
				case res.Status == http.StatusNotFound || res.Status == http.StatusForbidden:
				case resource:
					t.Errorf("%s aimed at A's resource with B's key: want 404 or 403, got %s", o, res)
				case is2xx(res.Status):
				case res.Status == http.StatusUnprocessableEntity && len(leaks([]byte(reqText(r)), "", secrets)) > 0:
					// The body named one of A's resources and was refused
					// (e.g. "product … does not exist in this tenant").
				default:
					t.Errorf("%s with B's key: want 2xx, 403 or 404, got %s", o, res)
				}
				if l := leaks(res.Raw, reqText(r), secrets); len(l) > 0 {
					t.Errorf("%s with B's key leaks A's %q: %s", o, l, res)
				}
			}
			if len(streams) != 1 {
				t.Errorf("want exactly one event-stream operation, found %d:%s", len(streams), fmtOps(streams))
			}
		})

		// B's key naming tenant A is refused before anything runs, on
		// every route that takes a key (the stream included).
		t.Run("X-Steward-Tenant of another tenant", func(t *testing.T) {
			for _, o := range ops {
				if o.Public {
					continue
				}
				r := request(t, o, b, bkey)
				r.Tenant = a.tenant.ID
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				r.Context = ctx
				res, err := srv.Send(r)
				cancel()
				if err != nil {
					t.Errorf("%s with X-Steward-Tenant %s: %v (a stream that opened?)", o, a.tenant.ID, err)
					continue
				}
				if res.Status != http.StatusNotFound && res.Status != http.StatusForbidden {
					t.Errorf("%s with B's key and X-Steward-Tenant of A: want 404 or 403, got %s", o, res)
				}
				if l := leaks(res.Raw, reqText(r)+" "+a.tenant.ID, secrets); len(l) > 0 {
					t.Errorf("%s leaks A's %q: %s", o, l, res)
				}
			}
		})

		// A is exactly as it was: nothing B did reached it.
		sameSnapshot(t, "tenant A after B's calls", before, snapshot(t, srv, a.tenant.ID))

		// The event stream is per tenant: A's stream sees A's change, B's
		// sees none of A's events, only its own.
		t.Run("events", func(t *testing.T) {
			as := srv.Events(t, testserver.StreamOpts{Key: a.tenant.Admin.Secret})
			bs := srv.Events(t, testserver.StreamOpts{Key: bkey})
			foreign := func(ev testserver.SSEEvent) bool {
				return ev.Event.TenantID != b.tenant.ID || len(leaks([]byte(ev.Data), "", secrets)) > 0
			}
			d := srv.CreateDevice(t, a.tenant.ID, a.product.ID)
			if _, ok := as.Until(10*time.Second, func(ev testserver.SSEEvent) bool { return ev.Event.Subject == d.ID }); !ok {
				t.Fatalf("A's stream did not receive device.created of %s", d.ID)
			}
			// Give B's stream the same chance to (wrongly) see it.
			got, _ := bs.Until(200*time.Millisecond, foreign)
			// Events arrive in bus order: once B's own later event is
			// there, anything of A's would have come before it.
			own := srv.CreateDevice(t, b.tenant.ID, b.product.ID)
			more, ok := bs.Until(10*time.Second, func(ev testserver.SSEEvent) bool { return ev.Event.Subject == own.ID || foreign(ev) })
			got = append(got, more...)
			for _, ev := range got {
				if foreign(ev) {
					t.Fatalf("B's stream received %s %s of tenant %s: %s", ev.Event.Type, ev.Event.Subject, ev.Event.TenantID, ev.Data)
				}
			}
			if !ok {
				t.Fatalf("B's stream did not receive B's own device.created of %s", own.ID)
			}

			// Replaying history (from the first event on the bus) shows B
			// only its own past, up to the same marker.
			for _, o := range []testserver.StreamOpts{{Key: bkey, LastEventID: "1"}, {Key: bkey, After: "1"}} {
				replay := srv.Events(t, o)
				old, ok := replay.Until(10*time.Second, func(ev testserver.SSEEvent) bool { return ev.Event.Subject == own.ID || foreign(ev) })
				for _, ev := range old {
					if foreign(ev) {
						t.Fatalf("B's replayed stream (%+v) holds %s %s of tenant %s", o, ev.Event.Type, ev.Event.Subject, ev.Event.TenantID)
					}
				}
				if !ok || len(old) < 5 {
					t.Fatalf("B's replayed stream (%+v) ended after %d events without reaching %s", o, len(old), own.ID)
				}
				replay.Close()
			}
		})
	})
}

// TestEveryRouteIsDocumented makes sure the OpenAPI document the wall and
// role tests walk holds every API route the router serves: a route added
// outside huma (or hidden from the document) would escape them.
func TestEveryRouteIsDocumented(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	documented := map[string]bool{}
	for _, o := range operations(t, srv) {
		documented[o.Method+" "+o.Path] = true
	}
	// Everything under /api/ must be documented, except the document
	// itself and its viewers. Other edges mounted beside the API (metrics,
	// the dashboard, device enrollment) have their own tests.
	undocumented := func(method, route string) bool {
		return !strings.HasPrefix(route, "/api/") || strings.HasPrefix(route, api+"/openapi") ||
			strings.HasPrefix(route, api+"/docs") || strings.HasPrefix(route, api+"/schemas/")
	}
	n := 0
	err := chi.Walk(srv.Platform.API.Router(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		n++
		if !documented[method+" "+route] && !undocumented(method, route) {
			t.Errorf("%s %s is served but not in the OpenAPI document", method, route)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < len(documented) {
		t.Fatalf("the router lists %d routes, fewer than the %d documented operations", n, len(documented))
	}
}
