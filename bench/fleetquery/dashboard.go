package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/steward-iot/steward/bench/internal/fleet"
	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/web"
)

// dashboardTarget is the p95 the dashboard's device list must render in.
const dashboardTarget = 300 * time.Millisecond

// dashboardViews are the device-list pages an operator opens most, as the
// filter bar builds them.
var dashboardViews = []struct {
	key, name string
	params    func(r *rand.Rand, ds *fleet.Dataset) url.Values
}{
	{"d1", "device list, first page", func(*rand.Rand, *fleet.Dataset) url.Values { return url.Values{} }},
	{"d2", "device list, state filter", func(r *rand.Rand, _ *fleet.Dataset) url.Values {
		s := []string{"active", "quarantined", "suspended", "end_of_support"}[r.IntN(4)]
		return url.Values{"state": {s}}
	}},
	{"d3", "device list, product + firmware range", func(r *rand.Rand, ds *fleet.Dataset) url.Values {
		lo := r.IntN(len(fleet.FirmwareVersions) - 1)
		hi := min(lo+1+r.IntN(8), len(fleet.FirmwareVersions)-1)
		return url.Values{"product_id": {ds.T1Prods[r.IntN(len(ds.T1Prods))]},
			"min_version": {fleet.FirmwareVersions[lo]}, "max_version": {fleet.FirmwareVersions[hi]}}
	}},
	{"d4", "device list, tag, sorted by last seen", func(r *rand.Rand, _ *fleet.Dataset) url.Values {
		return url.Values{"tag": {"prod"}, "sort": {"last_seen"}, "order": {"desc"}}
	}},
	{"d5", "device list, serial prefix, 200 per page", func(r *rand.Rand, ds *fleet.Dataset) url.Values {
		d := &ds.Devices[ds.T1[r.IntN(len(ds.T1))]]
		return url.Values{"serial_prefix": {d.Serial[:min(len(d.Serial), 6)]}, "limit": {"200"}}
	}},
}

// measureDashboard renders the device list through the real dashboard
// handler (templates, session check, fleet query) for a signed-in viewer.
func measureDashboard(ctx context.Context, db *sqlstore.DB, ds *fleet.Dataset, o benchOpts, label string, logw io.Writer) ([]*result, error) {
	tenant := ds.Tenants[0].ID
	reg := registry.New(db)
	admin := &authz.Principal{KeyID: "fleetquery", Role: model.RolePlatformAdmin}
	u, _, err := reg.CreateUser(ctx, admin, tenant, registry.UserInput{Email: "viewer-" + fleet.RandHex(4) + "@bench.example",
		Role: model.RoleViewer})
	if err != nil {
		return nil, fmt.Errorf("creating the dashboard user: %w", err)
	}
	token, id := authz.NewSessionToken()
	now := time.Now()
	if err := db.CreateSession(ctx, &model.Session{ID: id, UserID: u.ID, TenantID: tenant, CSRF: fleet.RandHex(16),
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now}); err != nil {
		return nil, err
	}
	d, err := web.New(web.Deps{Registry: reg, Store: db, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	// The session cookie as the browser would send it (plain HTTP).
	probe := httptest.NewRequest(http.MethodGet, "/devices", nil)
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, probe)
	cookieName := "steward_session"
	if rec.Code != http.StatusSeeOther && rec.Code != http.StatusFound {
		return nil, fmt.Errorf("dashboard without a session answered %d, want a redirect to sign-in", rec.Code)
	}
	var out []*result
	warm := min(10, max(2, o.reps/10))
	for vi, v := range dashboardViews {
		r := rand.New(rand.NewPCG(o.seed, uint64(100+vi)))
		res := &result{Key: v.key, Name: v.name + " (rendered)", Target: dashboardTarget}
		start := time.Now()
		for i := -warm; i < o.reps; i++ {
			if i >= 0 && time.Since(start) > o.maxTime {
				res.Truncated = true
				break
			}
			if i == 0 {
				start = time.Now()
			}
			req := httptest.NewRequest(http.MethodGet, "/devices?"+v.params(r, ds).Encode(), nil).WithContext(ctx)
			req.AddCookie(&http.Cookie{Name: cookieName, Value: token})
			rec := httptest.NewRecorder()
			t0 := time.Now()
			d.ServeHTTP(rec, req)
			el := time.Since(t0)
			if rec.Code != http.StatusOK {
				return nil, fmt.Errorf("%s %s: status %d: %.200s", label, v.key, rec.Code, rec.Body.String())
			}
			if i >= 0 {
				res.Samples = append(res.Samples, el)
				res.Rows += strings.Count(rec.Body.String(), `<td data-label="Serial"><a href="/devices/`)
			}
		}
		fmt.Fprintf(logw, "%s: %-50s n=%-4d p95=%7.2f ms\n", label, res.Name, len(res.Samples), ms(res.pct(0.95)))
		out = append(out, res)
	}
	return out, nil
}
