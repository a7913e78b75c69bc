package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestViewerCannotChangeAnything calls every mutating operation of the
// OpenAPI document with a viewer key of the tenant that owns the resources,
// with valid bodies: each is refused with 403 and nothing changes.
// A control run then shows the same calls succeed for an admin, so the
// 403s are about the role and not about a wrong request.
func TestViewerCannotChangeAnything(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		hook := sink(t)
		f := newFixture(t, srv, "viewer", hook)
		var mutating []operation
		for _, o := range operations(t, srv) {
			if o.mutating() {
				mutating = append(mutating, o)
			}
		}
		if len(mutating) < 8 {
			t.Fatalf("only %d mutating operations in the OpenAPI document:%s", len(mutating), fmtOps(mutating))
		}

		before := snapshot(t, srv, f.tenant.ID)
		for _, o := range mutating {
			r := request(t, o, f, f.viewer.Secret)
			res := srv.Do(t, r)
			if res.Status != http.StatusForbidden {
				t.Errorf("%s as viewer: want 403, got %s", o, res)
				continue
			}
			if p := res.Problem(); p.Status != http.StatusForbidden || p.Detail == "" {
				t.Errorf("%s as viewer: want a 403 problem naming the refusal, got %s", o, res)
			}
		}
		sameSnapshot(t, "after the viewer's calls", before, snapshot(t, srv, f.tenant.ID))

		// Control: the same requests, each on fresh resources, succeed for
		// the tenant's admin (or the platform admin, for platform calls).
		t.Run("control", func(t *testing.T) {
			ctl := newFixture(t, srv, "control", hook)
			call := func(o operation) *testserver.Resp {
				r := request(t, o, ctl, ctl.tenant.Admin.Secret)
				res := srv.Do(t, r)
				if res.Status == http.StatusForbidden {
					r.Key, r.Tenant = srv.AdminKey, ctl.tenant.ID
					res = srv.Do(t, r)
				}
				return res
			}
			for _, o := range mutating {
				records := auditTotal(t, srv)
				res := call(o)
				if !is2xx(res.Status) {
					// An earlier call may have used up the resource
					// (deleted, moved on, single use): try on fresh ones.
					ctl.fill(t)
					records = auditTotal(t, srv)
					res = call(o)
				}
				if !is2xx(res.Status) {
					t.Errorf("%s as admin: want 2xx (the body or target of the test is not valid), got %s", o, res)
					continue
				}
				// Every change is audited.
				if auditTotal(t, srv) == records {
					t.Errorf("%s as admin: %d, but no audit record was written", o, res.Status)
				}
			}
		})
	})
}

// auditTotal is the number of audit records in every chain.
func auditTotal(t *testing.T, srv *testserver.Server) int64 {
	t.Helper()
	heads, err := srv.Platform.Store.AuditHeads(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, h := range heads {
		n += h.Seq
	}
	return n
}
