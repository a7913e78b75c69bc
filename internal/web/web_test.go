package web_test

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/testutil/testserver"
	"github.com/steward-iot/steward/internal/web"
)

// client is a browser without JavaScript: it keeps cookies, does not
// follow redirects (so tests see them) and reads CSRF tokens from pages.
type client struct {
	t    *testing.T
	base string
	http *http.Client
	csrf string
}

type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) do(req *http.Request) page {
	c.t.Helper()
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	p := page{status: res.StatusCode, body: string(b), location: res.Header.Get("Location"), header: res.Header}
	if m := csrfRe.FindStringSubmatch(p.body); m != nil {
		c.csrf = html.UnescapeString(m[1])
	}
	return p
}

func (c *client) get(path string) page {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
	return c.do(req)
}

// post sends a form with the last CSRF token seen (unless form has one).
func (c *client) post(path string, form url.Values) page {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", c.csrf)
	}
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

func (c *client) signIn(email, password string) page {
	c.t.Helper()
	c.get("/login")
	p := c.post("/login", url.Values{"email": {email}, "password": {password}})
	if p.status != http.StatusSeeOther {
		c.t.Fatalf("signing in as %s: %d\n%s", email, p.status, p.body)
	}
	return p
}

// flash follows a redirect and returns the message the page shows.
func (c *client) follow(p page) page {
	c.t.Helper()
	if p.status != http.StatusSeeOther {
		c.t.Fatalf("want a redirect, got %d:\n%s", p.status, p.body)
	}
	return c.get(p.location)
}

var flashRe = regexp.MustCompile(`class="flash flash-(ok|error)"[^>]*>([^<]*)<`)

func flash(p page) string {
	if m := flashRe.FindStringSubmatch(p.body); m != nil {
		return m[1] + ": " + html.UnescapeString(m[2])
	}
	return ""
}

// two tenants, each with an admin user and a device; a viewer in A.
type walls struct {
	srv                  *testserver.Server
	a, b                 *testserver.Tenant
	devA, devB           model.Device
	adminA, adminB       string
	viewerA              string
	hookA                string
	adminEmail, adminPwd string
}

func newWalls(t *testing.T, opts ...func(*testserver.Options)) *walls {
	t.Helper()
	var o testserver.Options
	for _, f := range opts {
		f(&o)
	}
	srv := testserver.Start(t, o)
	w := &walls{srv: srv, a: srv.CreateTenant(t, "a"), b: srv.CreateTenant(t, "b")}
	w.devA = srv.CreateDevice(t, w.a.ID, srv.CreateProduct(t, w.a.ID).ID, testserver.DeviceOpts{State: model.StateActive})
	w.devB = srv.CreateDevice(t, w.b.ID, srv.CreateProduct(t, w.b.ID).ID, testserver.DeviceOpts{State: model.StateActive})
	user := func(ten *testserver.Tenant, name string, role model.Role) string {
		email := name + "@" + strings.ToLower(ten.Name) + ".example"
		srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/users",
			Key: ten.Admin.Secret, Body: map[string]any{"email": email, "role": role, "password": password}})
		return email
	}
	w.adminA, w.adminB = user(w.a, "admin", model.RoleTenantAdmin), user(w.b, "admin", model.RoleTenantAdmin)
	w.viewerA = user(w.a, "viewer", model.RoleViewer)
	res := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/webhooks",
		Key: w.a.Admin.Secret, Body: map[string]any{"url": "http://127.0.0.1:9/hook"}})
	w.hookA = res.Str("id")
	return w
}

var postFormRe = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)

// TestEveryFormHasCSRFToken renders every page a tenant admin and a
// platform admin see and checks that each form that posts carries the token.
func TestEveryFormHasCSRFToken(t *testing.T) {
	w := newWalls(t)
	c := newClient(t, w.srv.URL)
	c.signIn(w.adminA, password)
	pages := []string{"/fleet", "/devices", "/devices/" + w.devA.ID, "/audit", "/settings/keys", "/settings/webhooks",
		"/settings/webhooks/" + w.hookA, "/settings/users", "/account", "/home", "/findings", "/vulnerabilities"}
	forms := 0
	check := func(c *client, path string) {
		p := c.get(path)
		if p.status != http.StatusOK {
			t.Errorf("GET %s: %d", path, p.status)
			return
		}
		for _, m := range postFormRe.FindAllStringSubmatch(p.body, -1) {
			if !strings.Contains(strings.ToLower(m[1]), `method="post"`) {
				continue
			}
			forms++
			if !strings.Contains(m[2], `name="csrf"`) {
				t.Errorf("%s: a form without a CSRF token: <form%s>", path, m[1])
			}
		}
		for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options"} {
			if p.header.Get(h) == "" {
				t.Errorf("%s: no %s header", path, h)
			}
		}
		if strings.Contains(p.body, "<script>") || strings.Contains(p.body, " style=") {
			t.Errorf("%s: inline script or style (the CSP forbids them)", path)
		}
	}
	for _, path := range pages {
		check(c, path)
	}
	admin := newClient(t, w.srv.URL)
	admin.signIn(adminCredentials(t, w.srv))
	check(admin, "/tenants")
	admin.post("/tenant", url.Values{"tenant": {w.a.ID}})
	for _, path := range pages {
		check(admin, path)
	}
	if forms < 20 {
		t.Fatalf("only %d post forms found: the check is not looking", forms)
	}
}

func TestSignInAndCookies(t *testing.T) {
	w := newWalls(t)
	c := newClient(t, w.srv.URL)
	login := c.get("/login")
	if login.status != http.StatusOK || !strings.Contains(login.body, `autocomplete="current-password"`) {
		t.Fatalf("sign-in page: %d", login.status)
	}
	// The sign-in form needs its own CSRF pair (cookie + field).
	bare := newClient(t, w.srv.URL)
	if p := bare.post("/login", url.Values{"email": {w.adminA}, "password": {password}, "csrf": {"made-up"}}); p.status != http.StatusForbidden {
		t.Fatalf("sign-in without the form's cookie: %d, want 403", p.status)
	}
	p := c.post("/login", url.Values{"email": {w.adminA}, "password": {password}, "next": {"//evil.example/x"}})
	if p.status != http.StatusSeeOther || p.location != "/" {
		t.Fatalf("sign-in with next=//evil.example: %d to %q, want 303 to /", p.status, p.location)
	}
	var session string
	for _, sc := range p.header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "steward_session=") {
			session = sc
		}
	}
	for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(session, attr) {
			t.Errorf("session cookie %q lacks %s", session, attr)
		}
	}
	if strings.Contains(session, "Secure") {
		t.Errorf("session cookie %q is Secure on plain HTTP: the browser would drop it", session)
	}
	// Wrong passwords are told apart from nothing.
	other := newClient(t, w.srv.URL)
	other.get("/login")
	for _, email := range []string{w.adminA, "nobody@nowhere.example"} {
		p := other.post("/login", url.Values{"email": {email}, "password": {"not the password"}})
		if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "Wrong email or password.") {
			t.Fatalf("wrong password for %s: %d", email, p.status)
		}
	}
	// Unknown API paths stay API answers.
	if res := c.get("/api/v1/no-such-thing"); res.status != http.StatusNotFound || !strings.Contains(res.header.Get("Content-Type"), "problem+json") {
		t.Fatalf("unknown API path: %d %s", res.status, res.header.Get("Content-Type"))
	}
}

// TestSecureCookiesBehindTLS runs the dashboard alone, told that a TLS
// proxy is in front: every cookie is Secure, the session one __Host-.
func TestSecureCookiesBehindTLS(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "s.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.New(st)
	if _, _, err := reg.CreateUser(ctx, &authz.Principal{KeyID: "test", Role: model.RolePlatformAdmin}, "",
		registry.UserInput{Email: "root@example.com", Role: model.RolePlatformAdmin, Password: password}); err != nil {
		t.Fatal(err)
	}
	d, err := web.New(web.Deps{Registry: reg, Store: st, SecureCookies: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(d)
	t.Cleanup(hs.Close)
	c := newClient(t, hs.URL)
	login := c.get("/login")
	var loginCookie *http.Cookie
	for _, ck := range (&http.Response{Header: login.header}).Cookies() {
		if ck.Name == "steward_login" {
			loginCookie = ck
		}
	}
	if loginCookie == nil || !loginCookie.Secure || !loginCookie.HttpOnly {
		t.Fatalf("sign-in form cookie behind a TLS proxy: %+v", loginCookie)
	}
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/login", strings.NewReader(url.Values{"email": {"root@example.com"},
		"password": {password}, "csrf": {c.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: loginCookie.Name, Value: loginCookie.Value})
	p := c.do(req)
	if p.status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", p.status)
	}
	var session *http.Cookie
	for _, ck := range (&http.Response{Header: p.header}).Cookies() {
		if strings.Contains(ck.Name, "session") {
			session = ck
		}
	}
	if session == nil || session.Name != "__Host-steward_session" || !session.Secure || !session.HttpOnly ||
		session.SameSite != http.SameSiteLaxMode || session.Path != "/" || session.Domain != "" {
		t.Fatalf("session cookie behind a TLS proxy: %+v", session)
	}
	// The session works when sent back under its name.
	req, _ = http.NewRequest(http.MethodGet, hs.URL+"/tenants", nil)
	req.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
	if p := c.do(req); p.status != http.StatusOK {
		t.Fatalf("the __Host- session opens no page: %d", p.status)
	}
}

// TestDashboardTenantWall: a tenant admin of B aims at A's records through
// every dashboard page and form, and changes nothing.
func TestDashboardTenantWall(t *testing.T) {
	w := newWalls(t)
	b := newClient(t, w.srv.URL)
	b.signIn(w.adminB, password)
	b.get("/fleet")
	for _, path := range []string{"/devices/" + w.devA.ID, "/settings/webhooks/" + w.hookA} {
		if p := b.get(path); p.status != http.StatusNotFound {
			t.Errorf("B opens A's %s: %d, want 404", path, p.status)
		}
		if p := b.get(path); strings.Contains(p.body, w.devA.Serial) || strings.Contains(p.body, w.devA.ID) && !strings.Contains(path, w.devA.ID) {
			t.Errorf("B's 404 page for %s names A's device", path)
		}
	}
	if p := b.post("/devices/"+w.devA.ID+"/transition", url.Values{"to": {"quarantined"}, "reason": {"x"}}); p.status != http.StatusNotFound {
		t.Errorf("B moves A's device: %d, want 404", p.status)
	}
	b.post("/devices/"+w.devA.ID+"/edit", url.Values{"name": {"pwned"}})
	b.post("/settings/webhooks/"+w.hookA+"/delete", nil)
	b.post("/settings/keys/"+w.a.Admin.ID+"/revoke", nil)
	usersA, _, _ := w.srv.Platform.Store.ListUsers(context.Background(), w.a.ID, store.ListOptions{})
	for _, u := range usersA {
		b.post("/settings/users/"+u.ID+"/disable", nil)
	}
	b.post("/tenant", url.Values{"tenant": {w.a.ID}})
	// A is as it was.
	ctx := context.Background()
	st := w.srv.Platform.Store
	if d, _ := st.GetDevice(ctx, w.a.ID, w.devA.ID); d.State != model.StateActive || d.Name != "" {
		t.Errorf("A's device changed: %+v", d)
	}
	if _, err := st.GetWebhook(ctx, w.a.ID, w.hookA); err != nil {
		t.Errorf("A's webhook: %v", err)
	}
	if k, _ := st.GetAPIKey(ctx, w.a.ID, w.a.Admin.ID); k.RevokedAt != nil {
		t.Errorf("A's key was revoked")
	}
	usersA, _, _ = st.ListUsers(ctx, w.a.ID, store.ListOptions{})
	for _, u := range usersA {
		if u.Disabled() {
			t.Errorf("A's user %s was disabled", u.Email)
		}
	}
	// B still sees only B.
	if p := b.get("/devices"); !strings.Contains(p.body, w.devB.Serial) || strings.Contains(p.body, w.devA.Serial) {
		t.Errorf("B's device list: want B's device and not A's")
	}
	// The live stream is B's only.
	if p := newClient(t, w.srv.URL).get("/ui/events"); p.status != http.StatusUnauthorized {
		t.Errorf("events without a session: %d, want 401", p.status)
	}
}

func TestDisablingAndPasswordChangeEndSessions(t *testing.T) {
	w := newWalls(t)
	viewer := newClient(t, w.srv.URL)
	viewer.signIn(w.viewerA, password)
	if p := viewer.get("/devices"); p.status != http.StatusOK {
		t.Fatalf("viewer's device list: %d", p.status)
	}
	admin := newClient(t, w.srv.URL)
	admin.signIn(w.adminA, password)
	users := admin.get("/settings/users")
	id := regexp.MustCompile(`/settings/users/(usr_[a-z0-9]+)/disable`).FindAllStringSubmatch(users.body, -1)
	var viewerID string
	for _, m := range id {
		if strings.Contains(users.body, w.viewerA) {
			u, _ := w.srv.Platform.Store.GetUser(context.Background(), w.a.ID, m[1])
			if u != nil && u.Email == w.viewerA {
				viewerID = m[1]
			}
		}
	}
	if viewerID == "" {
		t.Fatal("the users page offers no disable button for the viewer")
	}
	if got := flash(admin.follow(admin.post("/settings/users/"+viewerID+"/disable", nil))); !strings.Contains(got, "disabled and signed out") {
		t.Fatalf("disabling: %q", got)
	}
	if p := viewer.get("/devices"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
		t.Fatalf("a disabled user's session still opens pages: %d %s", p.status, p.location)
	}
	signin := newClient(t, w.srv.URL)
	signin.get("/login")
	if p := signin.post("/login", url.Values{"email": {w.viewerA}, "password": {password}}); p.status != http.StatusUnauthorized {
		t.Fatalf("a disabled user signs in: %d", p.status)
	}

	// Changing one's password ends the other sessions, keeps this one.
	second := newClient(t, w.srv.URL)
	second.signIn(w.adminA, password)
	admin.get("/account")
	newPW := "a brand new passphrase"
	if got := flash(admin.follow(admin.post("/account/password", url.Values{"current": {"wrong"}, "password": {newPW}, "confirm": {newPW}}))); !strings.HasPrefix(got, "error") {
		t.Fatalf("a wrong current password: %q", got)
	}
	admin.get("/account")
	if got := flash(admin.follow(admin.post("/account/password", url.Values{"current": {password}, "password": {newPW}, "confirm": {newPW}}))); !strings.HasPrefix(got, "ok") {
		t.Fatalf("changing the password: %q", got)
	}
	if p := admin.get("/devices"); p.status != http.StatusOK {
		t.Fatalf("the session that changed the password ended: %d", p.status)
	}
	if p := second.get("/devices"); p.status != http.StatusSeeOther {
		t.Fatalf("another session survived the password change: %d", p.status)
	}
	newClient(t, w.srv.URL).signIn(w.adminA, newPW)
}

// TestViewerRefusedEverywhere posts every dashboard form as a viewer, with
// a valid token, and expects 403 each time.
func TestViewerRefusedEverywhere(t *testing.T) {
	w := newWalls(t)
	v := newClient(t, w.srv.URL)
	v.signIn(w.viewerA, password)
	page := v.get("/devices/" + w.devA.ID)
	if strings.Contains(page.body, "/transition") || strings.Contains(page.body, "/edit") {
		t.Fatal("a viewer's device page offers changes")
	}
	for path, form := range map[string]url.Values{
		"/devices/" + w.devA.ID + "/transition":      {"to": {"quarantined"}, "reason": {"x"}},
		"/devices/" + w.devA.ID + "/edit":            {"name": {"x"}},
		"/settings/keys":                             {"name": {"x"}, "role": {"viewer"}},
		"/settings/keys/" + w.a.Admin.ID + "/revoke": nil,
		"/settings/webhooks":                         {"url": {"http://127.0.0.1:9/x"}},
		"/settings/webhooks/" + w.hookA + "/delete":  nil,
		"/settings/users":                            {"email": {"x@y.example"}, "role": {"viewer"}},
		"/tenants":                                   {"name": {"x"}, "kind": {"household"}},
		"/tenant":                                    {"tenant": {w.b.ID}},
	} {
		if p := v.post(path, form); p.status != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d, want 403", path, p.status)
		}
	}
	if d, _ := w.srv.Platform.Store.GetDevice(context.Background(), w.a.ID, w.devA.ID); d.State != model.StateActive {
		t.Fatalf("the device moved to %s", d.State)
	}
}

func TestDecommissionNeedsTheSerial(t *testing.T) {
	w := newWalls(t)
	c := newClient(t, w.srv.URL)
	c.signIn(w.adminA, password)
	c.get("/devices/" + w.devA.ID)
	got := flash(c.follow(c.post("/devices/"+w.devA.ID+"/transition", url.Values{"to": {"decommissioned"}, "reason": {"end"}, "confirm": {"nope"}})))
	if !strings.Contains(got, "type the device's serial") {
		t.Fatalf("decommission without the serial: %q", got)
	}
	got = flash(c.follow(c.post("/devices/"+w.devA.ID+"/transition", url.Values{"to": {"claimed"}, "reason": {" "}})))
	if !strings.Contains(got, "Give a reason") {
		t.Fatalf("a transition without a reason: %q", got)
	}
	got = flash(c.follow(c.post("/devices/"+w.devA.ID+"/transition", url.Values{"to": {"manufactured"}, "reason": {"why not"}})))
	if !strings.Contains(got, `Cannot move a device from "active" to "manufactured"`) {
		t.Fatalf("an illegal transition: %q", got)
	}
	got = flash(c.follow(c.post("/devices/"+w.devA.ID+"/transition", url.Values{"to": {"decommissioned"}, "reason": {"end"},
		"confirm": {w.devA.Serial}})))
	if !strings.HasPrefix(got, "ok") {
		t.Fatalf("decommission with the serial: %q", got)
	}
	if d, _ := w.srv.Platform.Store.GetDevice(context.Background(), w.a.ID, w.devA.ID); d.State != model.StateDecommissioned {
		t.Fatalf("state %s", d.State)
	}
}

func TestDeviceListFilterAndPages(t *testing.T) {
	w := newWalls(t)
	prd := w.srv.CreateProduct(t, w.a.ID)
	for i := range 7 {
		w.srv.CreateDevice(t, w.a.ID, prd.ID, testserver.DeviceOpts{Serial: fmt.Sprintf("PG-%02d", i), FirmwareVersion: fmt.Sprintf("1.%d", i)})
	}
	c := newClient(t, w.srv.URL)
	c.signIn(w.adminA, password)
	serials := regexp.MustCompile(`<code>(PG-\d\d)</code>`)
	next := regexp.MustCompile(`href="(/devices\?[^"]*cursor=[^"]*)"`)
	var seen []string
	path := "/devices?serial_prefix=PG-&sort=serial&order=desc&limit=25&min_version=1.2"
	for range 3 {
		p := c.get(path)
		if p.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, p.status)
		}
		for _, m := range serials.FindAllStringSubmatch(p.body, -1) {
			seen = append(seen, m[1])
		}
		m := next.FindStringSubmatch(p.body)
		if m == nil {
			break
		}
		path = html.UnescapeString(m[1])
	}
	if want := "PG-06 PG-05 PG-04 PG-03 PG-02"; strings.Join(seen, " ") != want {
		t.Fatalf("filtered, sorted list: %v, want %s", seen, want)
	}
	if p := c.get("/devices?min_version=banana"); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "banana") {
		t.Fatalf("a bad version filter: %d", p.status)
	}
	if p := c.get("/devices?cursor=garbage"); p.status != http.StatusBadRequest {
		t.Fatalf("a bad cursor: %d", p.status)
	}
}

// TestDeviceListHidesRetired: with no state chosen the list leaves
// decommissioned devices out and says so (how many, when no other filter
// is set); choosing the state, or every state, shows them. The API's list
// still returns every state. On both stores: the condition is a state list.
func TestDeviceListHidesRetired(t *testing.T) {
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			testDeviceListHidesRetired(t, newWalls(t, func(o *testserver.Options) { o.Postgres = pg }))
		})
	}
}

func testDeviceListHidesRetired(t *testing.T, w *walls) {
	prd := w.srv.CreateProduct(t, w.a.ID)
	for i, st := range []model.State{model.StateActive, model.StateDecommissioned, model.StateDecommissioned, model.StateQuarantined} {
		d := w.srv.CreateDevice(t, w.a.ID, prd.ID, testserver.DeviceOpts{Serial: fmt.Sprintf("RT-%02d", i), State: model.StateActive})
		if st != model.StateActive {
			w.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/devices/" + d.ID + "/transitions",
				Key: w.a.Admin.Secret, Body: map[string]any{"to": st, "reason": "test fleet"}})
		}
	}
	// devA (active, another product, registered first) is the fifth.
	c := newClient(t, w.srv.URL)
	c.signIn(w.adminA, password)
	serialRe := regexp.MustCompile(`<code>((?:RT-\d\d)|` + regexp.QuoteMeta(w.devA.Serial) + `)</code>`)
	hiddenRe := regexp.MustCompile(`(?s)<p class="hint" id="retired-hidden">(.*?)</p>`)
	for _, tc := range []struct {
		name, path string
		want       string // serials listed, in order
		hidden     string // the notice's start, "" when none
	}{
		{"default", "/devices", w.devA.Serial + " RT-00 RT-03", "2 decommissioned devices are not shown."},
		{"default, next to another filter", "/devices?product_id=" + prd.ID, "RT-00 RT-03", "Decommissioned devices are not shown."},
		{"default, a filter no retired device matches", "/devices?serial_prefix=RT-03", "RT-03", "Decommissioned devices are not shown."},
		{"only the decommissioned", "/devices?state=decommissioned", "RT-01 RT-02", ""},
		{"every state", "/devices?state=any", w.devA.Serial + " RT-00 RT-01 RT-02 RT-03", ""},
		{"every state and a filter", "/devices?state=any&serial_prefix=RT-0", "RT-00 RT-01 RT-02 RT-03", ""},
		{"chosen states win over any", "/devices?state=any,active", w.devA.Serial + " RT-00", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := c.get(tc.path)
			if p.status != http.StatusOK {
				t.Fatalf("GET %s: %d", tc.path, p.status)
			}
			var got []string
			for _, m := range serialRe.FindAllStringSubmatch(p.body, -1) {
				got = append(got, m[1])
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("listed %v, want %s", got, tc.want)
			}
			m := hiddenRe.FindStringSubmatch(p.body)
			switch {
			case tc.hidden == "" && m != nil:
				t.Errorf("a hidden-devices notice: %q", m[1])
			case tc.hidden != "" && (m == nil || !strings.HasPrefix(html.UnescapeString(m[1]), tc.hidden)):
				t.Errorf("the notice %v, want it to start %q", m, tc.hidden)
			}
		})
	}
	// The notice's links keep the other filters and show the retired.
	p := c.get("/devices?product_id=" + prd.ID + "&sort=serial")
	links := map[string]string{}
	for _, m := range regexp.MustCompile(`href="([^"]+)" id="(only-retired|also-retired)"`).FindAllStringSubmatch(p.body, -1) {
		links[m[2]] = html.UnescapeString(m[1])
	}
	for id, want := range map[string]string{"only-retired": "RT-01 RT-02", "also-retired": "RT-00 RT-01 RT-02 RT-03"} {
		link := links[id]
		if !strings.Contains(link, "product_id="+prd.ID) || !strings.Contains(link, "sort=serial") {
			t.Fatalf("%s link %q drops the other filters", id, link)
		}
		lp := c.get(link)
		var got []string
		for _, m := range serialRe.FindAllStringSubmatch(lp.body, -1) {
			got = append(got, m[1])
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s (%s) lists %v, want %s", id, link, got, want)
		}
	}
	// The filter bar keeps the choice of every state.
	if p := c.get("/devices?state=any"); !strings.Contains(p.body, `<option value="any" selected>`) || !strings.Contains(p.body, `href="/devices" class="button">Clear`) {
		t.Errorf("the filter bar does not show the every-state choice")
	}
	// The API's default is unchanged: every state.
	items := w.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: testserver.APIPrefix + "/devices?product_id=" + prd.ID,
		Key: w.a.Admin.Secret}).Items()
	if len(items) != 4 {
		t.Errorf("the API lists %d devices of the product, want all 4", len(items))
	}
}

// TestDeviceListRetiredPages: a filtered list with no state chosen drops
// decommissioned devices from its pages and fills each page from where it
// ended, so the pages list every device in service once, in order.
func TestDeviceListRetiredPages(t *testing.T) {
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			w := newWalls(t, func(o *testserver.Options) { o.Postgres = pg })
			prd := w.srv.CreateProduct(t, w.a.ID)
			var live []string
			for i := range 60 {
				d := w.srv.CreateDevice(t, w.a.ID, prd.ID, testserver.DeviceOpts{Serial: fmt.Sprintf("PR-%02d", i), State: model.StateActive})
				if i%3 != 1 {
					live = append(live, d.Serial)
					continue
				}
				w.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/devices/" + d.ID + "/transitions",
					Key: w.a.Admin.Secret, Body: map[string]any{"to": model.StateDecommissioned, "reason": "test fleet"}})
			}
			c := newClient(t, w.srv.URL)
			c.signIn(w.adminA, password)
			serialRe := regexp.MustCompile(`<code>(PR-\d\d)</code>`)
			next := regexp.MustCompile(`href="(/devices\?[^"]*cursor=[^"]*)"`)
			var seen []string
			path := "/devices?limit=25&product_id=" + prd.ID
			for i := 0; path != "" && i < 5; i++ {
				p := c.get(path)
				if p.status != http.StatusOK {
					t.Fatalf("GET %s: %d", path, p.status)
				}
				rows := serialRe.FindAllStringSubmatch(p.body, -1)
				if i == 0 && len(rows) != 25 {
					t.Errorf("the first page lists %d devices, want a full page of 25", len(rows))
				}
				for _, m := range rows {
					seen = append(seen, m[1])
				}
				path = ""
				if m := next.FindStringSubmatch(p.body); m != nil {
					path = html.UnescapeString(m[1])
				}
			}
			if strings.Join(seen, " ") != strings.Join(live, " ") {
				t.Fatalf("the pages list\n%v\nwant the devices in service\n%v", seen, live)
			}
		})
	}
}
