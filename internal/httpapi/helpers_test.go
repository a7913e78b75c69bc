package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

const api = testserver.APIPrefix

// eachBackend runs fn in parallel subtests against a fresh server on SQLite
// and on PostgreSQL (skipped without a server, unless CI=true).
func eachBackend(t *testing.T, fn func(t *testing.T, srv *testserver.Server), opts ...func(*testserver.Options)) {
	t.Helper()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			o := testserver.Options{Postgres: backend == "postgres"}
			for _, f := range opts {
				f(&o)
			}
			fn(t, testserver.Start(t, o))
		})
	}
}

// ---- a tenant with one of everything ----
//
// The tenant-wall, viewer and pagination tests walk every operation of the
// served OpenAPI document. When you add a route, they fail until this file
// knows how to aim it at a real resource:
//   - a new kind of resource: create one in fixture.fill (only when the
//     server documents its creating operation) and name its path
//     parameter in fixture.pathID;
//   - a route with a request body: a valid body in fixture.validBody;
//   - a required query parameter: a value in fixture.queryValue.

// fixture is a tenant holding one resource of every kind, made through the
// API, so every route has a real ID of the right kind to aim at.
type fixture struct {
	srv     *testserver.Server
	tenant  *testserver.Tenant
	product model.Product // in use by device
	spare   model.Product // used by nothing: deletable
	device  model.Device  // manufactured (after claimed and back), member of group
	other   model.Device  // a second device, not in the group
	group   model.Group   // static
	webhook struct {
		ID, Secret string
	}
	operator testserver.Key
	viewer   testserver.Key
	user     struct {
		ID, Email string
	}
	// identity resources, when the server documents them
	identity  testserver.IdentityFixture
	claimCode string
	commandID string // a command queued for device
	hookURL   string
	// security engine resources, when the server documents them (security_test.go)
	sec securityFixture
	// update service resources, when the server documents them (ota_test.go)
	ota otaFixture
	// end-of-life and discovery resources, when the server documents them (lifecycle_test.go)
	life lifecycleFixture
	// an active behaviour alarm of device, when the server documents alarms (alarms_test.go)
	alarmID string
	alarm2  string // a second alarm (lists page through two)
}

// sink is an endpoint that accepts every webhook delivery.
func sink(t *testing.T) string {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hs.Close)
	return hs.URL + "/hook"
}

// newFixture makes a tenant named name with one of everything.
func newFixture(t *testing.T, srv *testserver.Server, name, hookURL string) *fixture {
	t.Helper()
	f := &fixture{srv: srv, tenant: srv.CreateTenant(t, name), hookURL: hookURL}
	f.fill(t)
	return f
}

// fill (re)creates the resources of f inside f.tenant.
func (f *fixture) fill(t *testing.T) {
	t.Helper()
	srv, tid, key := f.srv, f.tenant.ID, f.tenant.Admin.Secret
	f.product = srv.CreateProduct(t, tid)
	f.spare = srv.CreateProduct(t, tid)
	f.device = srv.CreateDevice(t, tid, f.product.ID, testserver.DeviceOpts{Tags: []string{"fixture"}, FirmwareVersion: "1.2.3"})
	f.other = srv.CreateDevice(t, tid, f.product.ID)
	for _, to := range []string{"claimed", "manufactured"} {
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + f.device.ID + "/transitions",
			Key: key, Body: map[string]any{"to": to, "reason": "fixture"}})
	}
	res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/groups", Key: key,
		Body: map[string]any{"name": srv.Unique("group"), "kind": "static"}})
	res.Into(t, &f.group)
	srv.Must(t, http.StatusNoContent, testserver.Req{Method: http.MethodPost, Path: api + "/groups/" + f.group.ID + "/members",
		Key: key, Body: map[string]any{"add": []string{f.device.ID}}})
	res = srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/webhooks", Key: key,
		Body: map[string]any{"url": f.hookURL, "types": []string{"device.*"}}})
	f.webhook.ID, f.webhook.Secret = res.Str("id"), res.Str("secret")
	f.operator = srv.CreateKeyAs(t, key, "", model.RoleOperator, nil)
	f.viewer = srv.CreateKeyAs(t, key, "", model.RoleViewer, nil)
	if documented(t, srv, "createUser") {
		f.user.Email = strings.ToLower(srv.Unique("user")) + "@example.com"
		res = srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/users", Key: key,
			Body: map[string]any{"email": f.user.Email, "role": "operator", "password": "fixture password 123"}})
		f.user.ID = res.Str("id")
	}
	if documented(t, srv, "createManufacturerCA") {
		// A manufacturer CA on the spare product, a bootstrap token, a
		// token for device, a certificate of a third (enrolled) device.
		f.identity = srv.NewIdentityFixture(t, tid, f.spare.ID, f.device,
			model.Device{ProductID: f.product.ID, Serial: srv.Unique("ENR")})
		f.claimCode = f.identity.ClaimCode
		// A renewal gives the enrolled device a second certificate (its
		// certificate list pages through two).
		e := f.identity.Enrolled
		if _, err := srv.ESTClient(&e.TLS).SimpleReenroll(context.Background(), testserver.NewCSR(e.Key, "")); err != nil {
			t.Fatalf("renewing the fixture's certificate: %v", err)
		}
	}
	if documented(t, srv, "importSBOM") {
		f.fillSecurity(t)
	}
	if documented(t, srv, "createArtifact") {
		f.fillOTA(t)
	}
	if documented(t, srv, "reportNeighbours") {
		f.fillLifecycle(t)
	}
	if documented(t, srv, "listAlarms") {
		f.fillAlarms(t)
	}
	if documented(t, srv, "createCommand") {
		res = srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + f.device.ID + "/commands",
			Key: key, Body: map[string]any{"name": "reboot"}})
		f.commandID = res.Str("id")
		// A second, so the device's command list pages through two.
		srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + f.device.ID + "/commands",
			Key: key, Body: map[string]any{"name": "ping"}})
	}
}

// documented reports whether the server's OpenAPI document has the operation.
func documented(t *testing.T, srv *testserver.Server, opID string) bool {
	t.Helper()
	for _, o := range cachedOperations(t, srv) {
		if o.ID == opID {
			return true
		}
	}
	return false
}

// pathID is the fixture's ID for a path parameter; ok is false for a
// parameter this test does not know yet.
func (f *fixture) pathID(param string) (string, bool) {
	switch param {
	case "tenantID":
		return f.tenant.ID, true
	case "productID":
		return f.spare.ID, true
	case "deviceID":
		return f.device.ID, true
	case "groupID":
		return f.group.ID, true
	case "keyID":
		return f.operator.ID, true
	case "webhookID":
		return f.webhook.ID, true
	case "userID":
		return f.user.ID, true
	case "caID":
		return f.identity.CAID, true
	case "bootstrapTokenID":
		return f.identity.BootstrapTokenID, true
	case "serial":
		return f.identity.CertSerial, true
	case "commandID":
		return f.commandID, true
	case "firmwareVersion":
		return fixtureFirmware, true
	case "advisoryID":
		return f.sec.advisories[0], true
	case "findingID":
		return f.sec.findingID, true
	case "artifactID":
		return f.ota.artifactID, true
	case "mac":
		return f.life.mac, true
	case "alarmID":
		return f.alarmID, true
	case "campaignID":
		return f.ota.campaignID, true
	}
	return "", false
}

// pathIDFor is pathID for one operation: a few aim at another resource of
// the same kind.
func (f *fixture) pathIDFor(o operation, param string) (string, bool) {
	switch {
	case param == "deviceID" && o.ID == "releaseDevice":
		return f.life.releasable, true // only a device claimed from its maker goes back
	case param == "campaignID" && o.ID == "resumeCampaign":
		return f.ota.pausedID, true // only a paused campaign resumes
	case param == "deviceID" && o.ID == "listDeviceCertificates" && f.identity.Enrolled != nil:
		return f.identity.Enrolled.DeviceID, true // the device with certificates
	}
	return f.pathID(param)
}

// queryValue is the fixture's value for a query parameter that names a
// resource, or that an operation requires.
func (f *fixture) queryValue(param string) (string, bool) {
	switch param {
	case "product_id":
		return f.product.ID, true
	case "group_id":
		return f.group.ID, true
	case "metric":
		return "temperature", true
	}
	return "", false
}

// validBody is a body the operation accepts when aimed at f's resources;
// ok is false for an operation this test does not know yet.
func (f *fixture) validBody(opID string) (any, bool) {
	u := f.srv.Unique
	switch opID {
	case "createTenant":
		return map[string]any{"name": u("tenant"), "kind": "household"}, true
	case "createProduct":
		return map[string]any{"vendor": "Acme", "model": u("model")}, true
	case "updateProduct":
		return map[string]any{"vendor": "Acme", "model": u("model"), "hardware_revision": "B"}, true
	case "createDevice":
		return map[string]any{"product_id": f.product.ID, "serial": u("SN")}, true
	case "updateDevice":
		return map[string]any{"name": "renamed", "tags": []string{"x"}}, true
	case "transitionDevice":
		return map[string]any{"to": "claimed", "reason": "test"}, true
	case "createGroup":
		return map[string]any{"name": u("group"), "kind": "static"}, true
	case "changeGroupMembers":
		return map[string]any{"add": []string{f.other.ID}}, true
	case "createAPIKey":
		return map[string]any{"name": u("key"), "role": "viewer"}, true
	case "createWebhook":
		return map[string]any{"url": f.hookURL, "types": []string{"device.*"}}, true
	case "createUser":
		return map[string]any{"email": strings.ToLower(u("user")) + "@example.com", "role": "viewer", "password": "a long enough password"}, true
	case "updateUser":
		return map[string]any{"name": "Renamed"}, true
	case "setUserPassword":
		return map[string]any{"password": "another long password"}, true
	case "createManufacturerCA":
		return map[string]any{"name": u("factory"), "certificate": testserver.NewCAPEM()}, true
	case "uploadDeviceKeys":
		return map[string]any{"devices": []map[string]any{{"serial": u("KEY"), "public_key": testserver.NewPublicKeyPEM()}}}, true
	case "claimDevice":
		return map[string]any{"code": f.claimCode}, true
	case "createBootstrapToken":
		return map[string]any{"name": u("bootstrap"), "product_id": f.product.ID, "ttl": "1h"}, true
	case "revokeCertificate":
		return map[string]any{"reason": "key_compromise", "note": "test"}, true
	case "createCommand":
		return map[string]any{"name": "reboot", "params": map[string]any{"delay": 1}}, true
	case "patchTwinDesired":
		return map[string]any{"led": "on"}, true
	case "putTwinDesired":
		return map[string]any{"led": "off", "interval": 30}, true
	case "setTelemetryRetention":
		return map[string]any{"retention_seconds": 7 * 24 * 3600}, true
	}
	if opID == "acknowledgeAlarm" {
		return map[string]any{"note": "looked at it"}, true
	}
	if b, ok := f.securityBody(opID); ok {
		return b, true
	}
	if b, ok := f.lifecycleBody(opID); ok {
		return b, true
	}
	if b, ok := f.otaBody(opID); ok {
		return b, true
	}
	return nil, false
}

// secrets are values that must never reach another tenant: IDs and secrets.
func (f *fixture) secrets() []string {
	s := []string{f.tenant.ID, f.product.ID, f.spare.ID, f.device.ID, f.other.ID, f.group.ID, f.webhook.ID, f.webhook.Secret,
		f.device.Serial, f.other.Serial, f.user.ID, f.user.Email, f.identity.CAID, f.identity.BootstrapTokenID, f.identity.CertSerial}
	if f.commandID != "" {
		s = append(s, f.commandID)
	}
	s = append(s, f.sec.secrets()...)
	s = append(s, f.ota.secrets()...)
	if f.life.releasable != "" {
		s = append(s, f.life.releasable, f.life.mac)
	}
	if f.alarmID != "" {
		s = append(s, f.alarmID)
	}
	if f.identity.Enrolled != nil {
		s = append(s, f.identity.Enrolled.DeviceID)
	}
	for _, k := range []testserver.Key{f.tenant.Admin, f.operator, f.viewer} {
		s = append(s, k.ID, k.Prefix, k.Secret)
	}
	return s
}

// ---- the OpenAPI document ----

type param struct {
	Name     string `json:"name"`
	In       string `json:"in"`
	Required bool   `json:"required"`
	Schema   struct {
		Enum []any `json:"enum"`
	} `json:"schema"`
}

type operation struct {
	Method, Path string
	ID           string
	Params       []param
	HasBody      bool
	Public       bool // no security requirement
	Stream       bool // answers text/event-stream
}

func (o operation) String() string { return o.Method + " " + o.Path + " (" + o.ID + ")" }

func (o operation) mutating() bool {
	switch o.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// operations reads every operation from the served OpenAPI document.
func operations(t *testing.T, srv *testserver.Server) []operation {
	t.Helper()
	res := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/openapi.json"})
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	res.Into(t, &doc)
	var ops []operation
	for path, item := range doc.Paths {
		var shared []param
		if raw, ok := item["parameters"]; ok {
			json.Unmarshal(raw, &shared)
		}
		for method, raw := range item {
			m := strings.ToUpper(method)
			switch m {
			case "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE":
			default:
				continue
			}
			var op struct {
				OperationID string                `json:"operationId"`
				Parameters  []param               `json:"parameters"`
				RequestBody json.RawMessage       `json:"requestBody"`
				Security    []map[string][]string `json:"security"`
				Responses   map[string]struct {
					Content map[string]json.RawMessage `json:"content"`
				} `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("OpenAPI %s %s: %v", m, path, err)
			}
			o := operation{Method: m, Path: path, ID: op.OperationID, Params: append(slices.Clone(shared), op.Parameters...),
				HasBody: len(op.RequestBody) > 0 && string(op.RequestBody) != "null", Public: len(op.Security) == 0}
			for _, r := range op.Responses {
				if _, ok := r.Content["text/event-stream"]; ok {
					o.Stream = true
				}
			}
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	if len(ops) < 10 {
		t.Fatalf("the OpenAPI document lists only %d operations", len(ops))
	}
	return ops
}

var pathParamRe = regexp.MustCompile(`\{([^}]+)\}`)

// target fills an operation's path and ID-like query parameters with f's
// IDs. Unknown path parameters fail the test: a new kind of resource needs
// a fixture before the walls can be checked for it.
func target(t *testing.T, o operation, f *fixture) string {
	t.Helper()
	p := pathParamRe.ReplaceAllStringFunc(o.Path, func(m string) string {
		name := m[1 : len(m)-1]
		id, ok := f.pathIDFor(o, name)
		if !ok {
			t.Errorf("%s: unknown path parameter {%s}: teach fixture.pathID which resource it names", o, name)
			return "unknown"
		}
		return url.PathEscape(id)
	})
	q := url.Values{}
	for _, prm := range o.Params {
		if prm.In != "query" {
			continue
		}
		if id, ok := f.queryValue(prm.Name); ok {
			q.Set(prm.Name, id)
		} else if prm.Required {
			t.Errorf("%s: required query parameter %q has no test value", o, prm.Name)
		}
	}
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

// request builds the call of o aimed at f's resources, with a valid body.
func request(t *testing.T, o operation, f *fixture, key string) testserver.Req {
	t.Helper()
	r := testserver.Req{Method: o.Method, Path: target(t, o, f), Key: key}
	if o.HasBody {
		b, ok := f.validBody(o.ID)
		if !ok {
			t.Errorf("%s takes a body but fixture.validBody has none for it: add a valid one", o)
		}
		r.Body = b
	}
	return r
}

func hasPathParams(o operation) bool { return strings.Contains(o.Path, "{") }

// ---- database snapshots ----

// snapshot dumps everything the store holds for the tenants (and the
// platform's tenants, keys and audit heads) in a comparable form, plus the
// answer of every documented list route (GET without path parameters) as
// the platform admin in each tenant and on the platform, so resources this
// file does not know yet are compared too. Fields named last_* (last use of
// a key, last sign-in …) are left out: reading records them.
func snapshot(t *testing.T, srv *testserver.Server, tenants ...string) string {
	t.Helper()
	return storeSnapshot(t, srv, tenants...) + "\n" + listSnapshot(t, srv, tenants...)
}

var opsCache sync.Map // *testserver.Server → []operation

func cachedOperations(t *testing.T, srv *testserver.Server) []operation {
	t.Helper()
	if v, ok := opsCache.Load(srv); ok {
		return v.([]operation)
	}
	ops := operations(t, srv)
	opsCache.Store(srv, ops)
	return ops
}

func listSnapshot(t *testing.T, srv *testserver.Server, tenants ...string) string {
	t.Helper()
	var b strings.Builder
	for _, tenant := range append([]string{""}, tenants...) {
		for _, o := range cachedOperations(t, srv) {
			if o.Method != http.MethodGet || o.Stream || o.Public || hasPathParams(o) {
				continue
			}
			res := srv.Do(t, testserver.Req{Method: http.MethodGet, Path: o.Path + "?limit=1000", Key: srv.AdminKey, Tenant: tenant})
			if res.Status == http.StatusUnprocessableEntity {
				res = srv.Do(t, testserver.Req{Method: http.MethodGet, Path: o.Path, Key: srv.AdminKey, Tenant: tenant})
			}
			body, _ := json.MarshalIndent(dropLast(res.JSON, append([]string{""}, tenants...)), "", " ")
			fmt.Fprintf(&b, "%s as platform admin in %q: %d\n%s\n", o, tenant, res.Status, body)
		}
	}
	return b.String()
}

// dropLast removes fields named last_* from decoded JSON, and list
// elements of tenants other than those given (platform-wide answers such
// as the audit check of every chain).
func dropLast(v any, tenants []string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if strings.HasPrefix(k, "last_") {
				delete(x, k)
				continue
			}
			x[k] = dropLast(e, tenants)
		}
	case []any:
		out := x[:0]
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				if tid, ok := m["tenant_id"].(string); ok && !slices.Contains(tenants, tid) {
					continue
				}
			}
			out = append(out, dropLast(e, tenants))
		}
		return out
	}
	return v
}

func storeSnapshot(t *testing.T, srv *testserver.Server, tenants ...string) string {
	t.Helper()
	ctx := context.Background()
	st := srv.Platform.Store
	all := store.ListOptions{Limit: 1000}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
	}
	keys := func(tid string) []model.APIKey {
		ks, _, err := st.ListAPIKeys(ctx, tid, all)
		must(err)
		for i := range ks {
			ks[i].LastUsed = nil
		}
		return ks
	}
	out := map[string]any{}
	ts, _, err := st.ListTenants(ctx, all)
	must(err)
	allHeads, err := st.AuditHeads(ctx)
	must(err)
	// The platform chain and the chains of the tenants asked about.
	var heads []store.AuditHead
	for _, h := range allHeads {
		if h.TenantID == "" || slices.Contains(tenants, h.TenantID) {
			heads = append(heads, h)
		}
	}
	out["platform"] = map[string]any{"tenants": ts, "keys": keys(""), "audit_heads": heads}
	for _, tid := range tenants {
		m := map[string]any{}
		ps, _, err := st.ListProducts(ctx, tid, all)
		must(err)
		m["products"] = ps
		ds, _, err := st.QueryDevices(ctx, tid, model.DeviceQuery{}, model.Page{Limit: 1000})
		must(err)
		m["devices"] = ds
		trs := map[string]any{}
		for _, d := range ds {
			tr, _, err := st.ListTransitions(ctx, tid, d.ID, all)
			must(err)
			trs[d.ID] = tr
		}
		m["transitions"] = trs
		gs, _, err := st.ListGroups(ctx, tid, all)
		must(err)
		members := map[string][]string{}
		for _, g := range gs {
			if g.Kind != model.GroupStatic {
				continue
			}
			ms, _, err := st.QueryDevices(ctx, tid, model.DeviceQuery{GroupID: g.ID}, model.Page{Limit: 1000})
			must(err)
			for _, d := range ms {
				members[g.ID] = append(members[g.ID], d.ID)
			}
		}
		m["groups"], m["members"] = gs, members
		ws, err := st.ListWebhooks(ctx, tid)
		must(err)
		secrets := map[string]string{}
		for _, w := range ws {
			secrets[w.ID] = w.Secret
		}
		m["webhooks"], m["webhook_secrets"] = ws, secrets
		m["keys"] = keys(tid)
		au, err := st.ListAudit(ctx, tid, 0, 10000)
		must(err)
		m["audit"] = au
		out[tid] = m
	}
	b, err := json.MarshalIndent(out, "", " ")
	must(err)
	return string(b)
}

// sameSnapshot fails the test when two snapshots differ, showing where.
func sameSnapshot(t *testing.T, what, before, after string) {
	t.Helper()
	if before == after {
		return
	}
	a, b := strings.Split(before, "\n"), strings.Split(after, "\n")
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo := max(0, i-8)
	t.Errorf("%s: the database changed; first difference at line %d:\nbefore:\n%s\nafter:\n%s", what, i+1,
		strings.Join(a[lo:min(len(a), i+8)], "\n"), strings.Join(b[lo:min(len(b), i+8)], "\n"))
}

// leaks returns the secrets found in body that the request did not carry itself.
func leaks(body []byte, req string, secrets []string) []string {
	var out []string
	for _, s := range secrets {
		if s != "" && strings.Contains(string(body), s) && !strings.Contains(req, s) {
			out = append(out, s)
		}
	}
	return out
}

func reqText(r testserver.Req) string {
	b, _ := json.Marshal(r.Body)
	return r.Path + " " + string(b)
}

func is2xx(code int) bool { return code >= 200 && code < 300 }

func fmtOps(ops []operation) string {
	var b strings.Builder
	for _, o := range ops {
		fmt.Fprintf(&b, "\n  %s", o)
	}
	return b.String()
}

// auditTrail is the tenant's whole audit chain, read from the store.
func auditTrail(t *testing.T, srv *testserver.Server, tenantID string) []model.AuditRecord {
	t.Helper()
	recs, err := srv.Platform.Store.ListAudit(context.Background(), tenantID, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
