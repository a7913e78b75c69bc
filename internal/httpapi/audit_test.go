package httpapi_test

import (
	"bytes"
	"context"
	"database/sql"
	"net/http"
	"strconv"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestAuditTrail makes a series of changes (and refused attempts) through
// the API and checks that each change left exactly one audit record, in
// the tenant's own chain, naming who did it and to what; that refused
// calls left none; and that the chain verifies — until a record is altered
// behind the API's back.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		ten := srv.CreateTenant(t, "audit") // tenant.create, plus apikey.create for its admin key
		key := ten.Admin.Secret
		viewer := srv.CreateKeyAs(t, key, "", model.RoleViewer, nil) // apikey.create
		type expect struct{ action, target, actor string }
		want := []expect{
			{"tenant.create", ten.ID, ""},
			{"apikey.create", ten.Admin.ID, ""},
			{"apikey.create", viewer.ID, "key:" + ten.Admin.ID},
		}
		do := func(status int, r testserver.Req) *testserver.Resp {
			t.Helper()
			if r.Key == "" {
				r.Key = key
			}
			return srv.Must(t, status, r)
		}
		changed := func(action, target string) {
			want = append(want, expect{action, target, "key:" + ten.Admin.ID})
		}
		post := func(path string, body any, status int, hdr ...string) *testserver.Resp {
			r := testserver.Req{Method: http.MethodPost, Path: api + path, Body: body}
			if len(hdr) == 2 {
				r.Header = map[string]string{hdr[0]: hdr[1]}
			}
			return do(status, r)
		}

		prod := post("/products", map[string]any{"vendor": "Acme", "model": "A1"}, 201, "Idempotency-Key", "p-1")
		changed("product.create", prod.Str("id"))
		post("/products", map[string]any{"vendor": "Acme", "model": "A1"}, 201, "Idempotency-Key", "p-1") // replay: no record
		spare := post("/products", map[string]any{"vendor": "Acme", "model": "A2"}, 201)
		changed("product.create", spare.Str("id"))
		do(200, testserver.Req{Method: http.MethodPut, Path: api + "/products/" + prod.Str("id"),
			Body: map[string]any{"vendor": "Acme", "model": "A1", "hardware_revision": "2"}})
		changed("product.update", prod.Str("id"))
		d1 := post("/devices", map[string]any{"product_id": prod.Str("id"), "serial": "AUD-1"}, 201)
		changed("device.create", d1.Str("id"))
		d2 := post("/devices", map[string]any{"product_id": prod.Str("id"), "serial": "AUD-2"}, 201)
		changed("device.create", d2.Str("id"))
		do(200, testserver.Req{Method: http.MethodPatch, Path: api + "/devices/" + d1.Str("id"), Body: map[string]any{"name": "one"},
			Header: map[string]string{"If-Match": d1.Header.Get("ETag")}})
		changed("device.update", d1.Str("id"))
		for _, to := range []string{"claimed", "provisioned"} {
			post("/devices/"+d1.Str("id")+"/transitions", map[string]any{"to": to, "reason": "audit test"}, 200)
			changed("device.transition", d1.Str("id"))
		}
		do(204, testserver.Req{Method: http.MethodDelete, Path: api + "/devices/" + d2.Str("id")})
		changed("device.delete", d2.Str("id"))
		g := post("/groups", map[string]any{"name": "g", "kind": "static"}, 201)
		changed("group.create", g.Str("id"))
		post("/groups/"+g.Str("id")+"/members", map[string]any{"add": []string{d1.Str("id")}}, 204)
		changed("group.members", g.Str("id"))
		do(204, testserver.Req{Method: http.MethodDelete, Path: api + "/groups/" + g.Str("id")})
		changed("group.delete", g.Str("id"))
		w := post("/webhooks", map[string]any{"url": sink(t)}, 201)
		changed("webhook.create", w.Str("id"))
		do(204, testserver.Req{Method: http.MethodDelete, Path: api + "/webhooks/" + w.Str("id")})
		changed("webhook.delete", w.Str("id"))
		k := post("/api-keys", map[string]any{"name": "temp", "role": "operator"}, 201)
		changed("apikey.create", k.Str("id"))
		do(204, testserver.Req{Method: http.MethodDelete, Path: api + "/api-keys/" + k.Str("id")})
		changed("apikey.revoke", k.Str("id"))
		do(204, testserver.Req{Method: http.MethodDelete, Path: api + "/products/" + spare.Str("id")})
		changed("product.delete", spare.Str("id"))
		// The platform admin acting inside the tenant is recorded there, as itself.
		byPlatform := srv.CreateProduct(t, ten.ID)
		want = append(want, expect{"product.create", byPlatform.ID, ""})

		// Refused calls leave no record.
		post("/devices", map[string]any{"product_id": prod.Str("id"), "serial": "AUD-1"}, 409)
		post("/devices/"+d1.Str("id")+"/transitions", map[string]any{"to": "manufactured", "reason": "x"}, 409)
		post("/products", map[string]any{"vendor": "", "model": "x"}, 422)
		do(403, testserver.Req{Method: http.MethodPost, Path: api + "/products", Key: viewer.Secret, Body: map[string]any{"vendor": "v", "model": "m"}})
		do(404, testserver.Req{Method: http.MethodDelete, Path: api + "/devices/dev_missing"})
		do(412, testserver.Req{Method: http.MethodPatch, Path: api + "/devices/" + d1.Str("id"), Body: map[string]any{"name": "x"},
			Header: map[string]string{"If-Match": `"1"`}})
		do(404, testserver.Req{Method: http.MethodDelete, Path: api + "/api-keys/" + k.Str("id")}) // already revoked

		// Read the trail through the API, in small pages.
		var recs []model.AuditRecord
		after := int64(0)
		for {
			res := do(200, testserver.Req{Method: http.MethodGet, Path: api + "/audit?limit=4&after=" + strconv.FormatInt(after, 10),
				Key: viewer.Secret})
			var page struct {
				Items []model.AuditRecord `json:"items"`
				Next  int64               `json:"next_after"`
			}
			res.Into(t, &page)
			recs = append(recs, page.Items...)
			if page.Next == 0 {
				break
			}
			after = page.Next
		}

		counts := func(get func(i int) (string, string), n int) map[string]int {
			m := map[string]int{}
			for i := 0; i < n; i++ {
				a, _ := get(i)
				m[a]++
			}
			return m
		}
		gotCounts := counts(func(i int) (string, string) { return recs[i].Action, recs[i].Target }, len(recs))
		wantCounts := counts(func(i int) (string, string) { return want[i].action, want[i].target }, len(want))
		for a, n := range wantCounts {
			if gotCounts[a] != n {
				t.Errorf("%d %s records, want %d", gotCounts[a], a, n)
			}
		}
		for a, n := range gotCounts {
			if _, ok := wantCounts[a]; !ok {
				t.Errorf("%d unexpected %s records", n, a)
			}
		}
		if len(recs) != len(want) {
			t.Fatalf("%d records, want %d:\n%v", len(recs), len(want), actions(recs))
		}
		for i, r := range recs {
			w := want[i]
			if r.Action != w.action || r.Target != w.target || (w.actor != "" && r.Actor != w.actor) {
				t.Errorf("record %d: %s %s by %s, want %s %s by %s", i+1, r.Action, r.Target, r.Actor, w.action, w.target, w.actor)
			}
			if r.TenantID != ten.ID || r.Seq != int64(i+1) {
				t.Errorf("record %d: tenant %s seq %d", i+1, r.TenantID, r.Seq)
			}
			if i > 0 && !bytes.Equal(r.PrevHash, recs[i-1].Hash) {
				t.Errorf("record %d does not link to record %d", i+1, i)
			}
		}

		verify := func(key, tenant string) (bool, []map[string]any) {
			res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/audit/verify", Key: key, Tenant: tenant})
			var out struct {
				OK     bool             `json:"ok"`
				Chains []map[string]any `json:"chains"`
			}
			res.Into(t, &out)
			return out.OK, out.Chains
		}
		ok, chains := verify(viewer.Secret, "")
		if !ok || len(chains) != 1 || chains[0]["tenant_id"] != ten.ID || chains[0]["records"] != float64(len(want)) {
			t.Fatalf("verify as the tenant: ok=%v chains=%v, want ok with one chain of %d records", ok, chains, len(want))
		}
		if ok, chains := verify(srv.AdminKey, ""); !ok || len(chains) < 2 {
			t.Fatalf("verify as the platform admin: ok=%v chains=%v, want every chain ok", ok, chains)
		}

		// Alter one record behind the API's back: verification must notice.
		tamper(t, srv, `UPDATE audit_log SET actor = 'key:mallory' WHERE tenant_id = '`+ten.ID+`' AND seq = 5`)
		ok, chains = verify(viewer.Secret, "")
		if ok || len(chains) != 1 || chains[0]["ok"] != false || chains[0]["broken_at"] != float64(5) {
			t.Fatalf("verify after tampering with record 5: ok=%v chains=%v, want broken at 5", ok, chains)
		}
	})
}

func actions(recs []model.AuditRecord) string {
	var b strings.Builder
	for _, r := range recs {
		b.WriteString("\n  " + strconv.FormatInt(r.Seq, 10) + " " + r.Action + " " + r.Target)
	}
	return b.String()
}

// tamper runs a statement on the server's database directly.
func tamper(t *testing.T, srv *testserver.Server, stmt string) {
	t.Helper()
	u := srv.Platform.Config.Store.URL
	driver, dsn := "pgx", u
	if p, ok := strings.CutPrefix(u, "sqlite:"); ok {
		driver, dsn = "sqlite", p+"?_pragma=busy_timeout(5000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.ExecContext(context.Background(), stmt)
	if err != nil {
		t.Fatalf("tampering: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tampering changed %d rows", n)
	}
}
