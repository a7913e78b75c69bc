package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestPagination walks every documented list that takes limit and cursor,
// one item per page, in every sort order it offers, and checks that the
// pages put together are exactly the list read in one page: nothing lost,
// nothing twice, same order.
func TestPagination(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFixture(t, srv, "pages", sink(t))
		// Devices with ties and gaps in the sort keys.
		members := []string{f.other.ID}
		for _, fw := range []string{"1.10.0", "1.2.0", "1.2.0", "", "2.0.0-rc1"} {
			d := srv.CreateDevice(t, f.tenant.ID, f.product.ID, testserver.DeviceOpts{FirmwareVersion: fw})
			members = append(members, d.ID)
		}
		key := f.tenant.Admin.Secret
		srv.Must(t, http.StatusNoContent, testserver.Req{Method: http.MethodPost, Path: api + "/groups/" + f.group.ID + "/members",
			Key: key, Body: map[string]any{"add": members}})
		srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/groups", Key: key,
			Body: map[string]any{"name": "recent", "kind": "dynamic", "query": map[string]any{"min_version": "1.2"}}})
		srv.CreateTenant(t, "second")
		if documented(t, srv, "createUser") {
			srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/users", Key: key,
				Body: map[string]any{"email": "second@example.com", "role": "viewer"}})
		}
		// A webhook with a delivery log that holds still: three product
		// events, all delivered, before the walk.
		res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/webhooks", Key: key,
			Body: map[string]any{"url": f.hookURL, "types": []string{"product.created"}}})
		f.webhook.ID = res.Str("id")
		for range 3 {
			srv.CreateProduct(t, f.tenant.ID)
		}
		testserver.Eventually(t, 15*time.Second, func() bool {
			r := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/webhooks/" + f.webhook.ID + "/deliveries", Key: key})
			n := 0
			for _, it := range r.Items() {
				if it["status"] == "delivered" {
					n++
				}
			}
			return n == 3
		}, "the webhook deliveries did not settle at 3 delivered")
		walked := 0
		for _, o := range operations(t, srv) {
			if o.Method != http.MethodGet || o.Stream || !hasParam(o, "limit") || !hasParam(o, "cursor") {
				continue
			}
			sorts := []string{""}
			if p, ok := paramOf(o, "sort"); ok {
				sorts = enumOf(p)
			}
			orders := []string{""}
			if p, ok := paramOf(o, "order"); ok {
				orders = enumOf(p)
			}
			for _, sort := range sorts {
				for _, order := range orders {
					q := url.Values{}
					if sort != "" {
						q.Set("sort", sort)
					}
					if order != "" {
						q.Set("order", order)
					}
					walk(t, srv, o, f, q)
					walked++
				}
			}
		}
		if walked < 8 {
			t.Fatalf("only %d paginated lists walked", walked)
		}
	})
}

func walk(t *testing.T, srv *testserver.Server, o operation, f *fixture, q url.Values) {
	t.Helper()
	base := pathParamRe.ReplaceAllStringFunc(o.Path, func(m string) string {
		id, _ := f.pathIDFor(o, m[1:len(m)-1])
		return id
	})
	key, tenant := f.tenant.Admin.Secret, ""
	if o.ID == "listTenants" {
		key = srv.AdminKey // a tenant key sees one tenant
	}
	get := func(q url.Values) *testserver.Resp {
		return srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: base + "?" + q.Encode(), Key: key, Tenant: tenant})
	}
	all := url.Values{}
	for k, v := range q {
		all[k] = v
	}
	all.Set("limit", "1000")
	whole := get(all)
	if whole.Str("next_cursor") != "" {
		t.Fatalf("%s %v: a next_cursor after the last page", o, q)
	}
	want := itemKeys(whole)
	if len(want) < 2 {
		t.Fatalf("%s %v: %d items; the fixture should give at least 2 to page through", o, q, len(want))
	}
	var got []string
	page := url.Values{}
	for k, v := range q {
		page[k] = v
	}
	page.Set("limit", "1")
	for i := 0; ; i++ {
		if i > len(want)+1 {
			t.Fatalf("%s %v: paging does not end (%d pages for %d items)", o, q, i, len(want))
		}
		res := get(page)
		got = append(got, itemKeys(res)...)
		next := res.Str("next_cursor")
		if next == "" {
			break
		}
		page.Set("cursor", next)
	}
	if len(got) != len(want) {
		t.Fatalf("%s %v: one per page gives %d items, one page gives %d:\npaged: %v\nwhole: %v", o, q, len(got), len(want), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s %v: item %d differs paged and whole:\npaged: %v\nwhole: %v", o, q, i, got, want)
		}
	}
}

// itemKeys identifies the items of a list answer (by id, or whole).
func itemKeys(r *testserver.Resp) []string {
	var out []string
	for _, it := range r.Items() {
		if id, ok := it["id"]; ok {
			b, _ := json.Marshal(id)
			out = append(out, string(b))
			continue
		}
		b, _ := json.Marshal(it)
		out = append(out, string(b))
	}
	return out
}

func hasParam(o operation, name string) bool {
	_, ok := paramOf(o, name)
	return ok
}

func paramOf(o operation, name string) (param, bool) {
	for _, p := range o.Params {
		if p.Name == name && p.In == "query" {
			return p, true
		}
	}
	return param{}, false
}

func enumOf(p param) []string {
	var out []string
	for _, v := range p.Schema.Enum {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return []string{""}
	}
	return out
}
