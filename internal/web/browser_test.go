package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// The browser tests drive the dashboard in a real headless Chromium
// (Debian's package, which scripts/setup.sh installs) and save
// screenshots under testout/web/ at the repository root.

// chromium finds the browser; without one the tests skip, except under
// CI=true, where a missing browser is a broken setup.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (run ./scripts/setup.sh); browser tests cannot run under CI=true without it")
	}
	t.Skip("chromium is not installed: skipping the browser tests (./scripts/setup.sh installs it)")
	return ""
}

// startBrowser launches one headless Chromium for the test, with a fresh
// profile, and stops it when the test ends.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	if err := chromedp.Do(browser); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	return browser
}

// person is one browser profile (its own cookies) with one tab.
type person struct {
	t    *testing.T
	ctx  context.Context
	base string
}

// newPerson opens a tab in a fresh browser context: no cookies shared
// with anyone else.
func newPerson(t *testing.T, browser context.Context, base string) *person {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("opening a browser context: %v", err)
	}
	return &person{t: t, ctx: ctx, base: base}
}

// in returns the person for use in subtest t.
func (p *person) in(t *testing.T) *person { c := *p; c.t = t; return &c }

// waitURL waits until the tab's address contains part (after a form
// submission navigates).
func (p *person) waitURL(part string) {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.location(), part) {
		if time.Now().After(deadline) {
			p.t.Fatalf("the address never came to contain %q (it is %s)", part, p.location())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tab opens another tab of the same person (same cookies).
func (p *person) tab() *person {
	ctx, cancel := chromedp.NewContext(p.ctx)
	p.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		p.t.Fatalf("opening a tab: %v", err)
	}
	return &person{t: p.t, ctx: ctx, base: p.base}
}

// run runs browser steps with a time limit.
func (p *person) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	get(p, what, chromedp.Steps(steps...))
}

// get runs one browser action with a time limit and returns its value.
func get[T any](p *person, what string, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.t.Fatalf("%s: %v (page: %s)", what, err, p.location())
	}
	return v
}

func (p *person) location() string {
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

func (p *person) text(sel string) string {
	p.t.Helper()
	return strings.TrimSpace(get(p, "reading "+sel, chromedp.Text(chromedp.CSS(sel))))
}

func (p *person) count(sel string) int {
	p.t.Helper()
	return get(p, "counting "+sel, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
}

// js evaluates an expression in the page, waiting for a promise it returns.
func js[T any](p *person, what, expr string) T {
	p.t.Helper()
	return get(p, what, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// css is a CSS selector.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

func (p *person) signIn(email, password string) {
	p.t.Helper()
	p.run("signing in as "+email,
		chromedp.Navigate(p.base+"/login"),
		chromedp.WaitVisible(css(`#email`)),
		chromedp.SendKeys(css(`#email`), email),
		chromedp.SendKeys(css(`#password`), password),
		chromedp.Submit(css(`#password`)),
		chromedp.WaitVisible(css(`header.top`)),
	)
}

// screenshot saves the page as testout/web/<name>.png.
func (p *person) screenshot(name string) {
	p.t.Helper()
	png := get(p, "screenshot "+name, chromedp.FullScreenshot(100))
	dir := filepath.Join(repoRoot(p.t), "testout", "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// viewShot saves what the viewport shows (the first screen of a phone).
func (p *person) viewShot(name string) {
	p.t.Helper()
	png := get(p, "screenshot "+name, chromedp.CaptureScreenshot())
	dir := filepath.Join(repoRoot(p.t), "testout", "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// phone switches the tab to a phone's viewport (390×844, touch).
func (p *person) phone() {
	p.t.Helper()
	p.run("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
}

func (p *person) desktop() {
	p.t.Helper()
	p.run("desktop viewport", chromedp.EmulateViewport(1280, 900))
}

// sessionCookie is the person's session cookie, for requests made outside
// the browser.
func (p *person) sessionCookie() *http.Cookie {
	p.t.Helper()
	res := get(p, "reading cookies", func(ctx context.Context, t *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{p.base}})
	})
	cookies := res.Cookies
	for _, c := range cookies {
		if c.Name == "steward_session" {
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax {
				p.t.Fatalf("session cookie: HttpOnly=%v SameSite=%q, want HttpOnly and Lax", c.HTTPOnly, c.SameSite)
			}
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	p.t.Fatalf("no session cookie among %d cookies", len(cookies))
	return nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}

// fleet is a tenant with a product, devices in several states and users
// of every tenant role, made through the API.
type fleet struct {
	srv                       *testserver.Server
	tenant                    *testserver.Tenant
	product                   model.Product
	devices                   []model.Device
	target                    model.Device // active, to be quarantined
	adminEmail, adminPassword string       // platform admin (from --dev's credentials file)
	operator, viewer, limited string
}

const password = "correct horse battery staple"

func newFleet(t *testing.T) *fleet {
	t.Helper()
	srv := testserver.Start(t, testserver.Options{})
	f := &fleet{srv: srv, tenant: srv.CreateTenant(t, "acme")}
	f.adminEmail, f.adminPassword = adminCredentials(t, srv)
	tid := f.tenant.ID
	f.product = srv.CreateProduct(t, tid)
	states := []model.State{model.StateActive, model.StateActive, model.StateActive, model.StateActive, model.StateActive,
		model.StateProvisioned, model.StateClaimed, model.StateManufactured, model.StateActive, model.StateActive}
	versions := []string{"2.1.0", "2.1.0", "2.1.0", "2.0.3", "2.0.3", "1.9.8", "2.1.0", "", "1.9.8", "2.1.0"}
	for i, st := range states {
		d := srv.CreateDevice(t, tid, f.product.ID, testserver.DeviceOpts{Serial: fmt.Sprintf("T1-%04d", i+1), State: st,
			FirmwareVersion: versions[i], Tags: []string{"floor-" + fmt.Sprint(i%3+1)}})
		f.devices = append(f.devices, d)
		if i < 6 {
			if err := srv.Platform.Store.TouchDevice(context.Background(), tid, d.ID, time.Now().Add(-time.Duration(i)*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.target = f.devices[0]
	mk := func(role model.Role, name string) string {
		email := name + "@acme.example"
		srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/users",
			Key: f.tenant.Admin.Secret, Body: map[string]any{"email": email, "name": strings.ToUpper(name[:1]) + name[1:],
				"role": role, "password": password}})
		return email
	}
	f.operator = mk(model.RoleOperator, "olivia")
	f.viewer = mk(model.RoleViewer, "victor")
	f.limited = mk(model.RoleViewer, "lena")
	return f
}

// adminCredentials reads the first admin user's sign-in from the file
// --dev writes, and checks the file is private.
func adminCredentials(t *testing.T, srv *testserver.Server) (email, password string) {
	t.Helper()
	path := filepath.Join(srv.Platform.Config.DataDir, platform.AdminCredentialsFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin credentials file %s: %v, mode %v; want mode 0600", path, err, fi.Mode().Perm())
	}
	creds, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the admin credentials --dev wrote: %v", err)
	}
	for _, line := range strings.Split(string(creds), "\n") {
		if v, ok := strings.CutPrefix(line, "email: "); ok {
			email = v
		}
		if v, ok := strings.CutPrefix(line, "password: "); ok {
			password = v
		}
	}
	if email == "" || password == "" {
		t.Fatalf("admin credentials file without email or password:\n%s", creds)
	}
	return email, password
}

func (f *fleet) state(t *testing.T, id string) model.State {
	t.Helper()
	d, err := f.srv.Platform.Store.GetDevice(context.Background(), f.tenant.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	return d.State
}

func TestBrowser(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	f := newFleet(t)
	base := f.srv.URL

	t.Run("platform admin signs in and picks a tenant", func(t *testing.T) {
		admin := newPerson(t, browser, base)
		admin.signIn(f.adminEmail, f.adminPassword)
		if loc := admin.location(); !strings.HasSuffix(loc, "/tenants") {
			t.Fatalf("a platform admin without a tenant lands on %s, want /tenants", loc)
		}
		admin.run("opening the tenant",
			chromedp.Click(css(`form[action="/tenant"] button[type=submit]:not(.small), td form[action="/tenant"] button`)),
			chromedp.WaitVisible(css(`#chart-states`)))
		if got := admin.text(`h1 .sub`); got != f.tenant.Name {
			t.Fatalf("overview of %q, want %q", got, f.tenant.Name)
		}
		admin.screenshot("fleet-admin-desktop")

		// Settings: a new user, whose generated password is shown once.
		admin.run("creating a user",
			chromedp.Navigate(base+"/settings/users"),
			chromedp.WaitVisible(css(`#u-email`)),
			chromedp.SendKeys(css(`#u-email`), "nora@acme.example"),
			chromedp.SendKeys(css(`#u-name`), "Nora"),
			chromedp.SetValue(css(`#u-role`), "operator"),
			chromedp.Submit(css(`#u-email`)),
			chromedp.WaitVisible(css(`#new-secret`)))
		pw := get(admin, "reading the password", chromedp.Value(css(`#secret-value`)))
		if len(pw) < 20 {
			t.Fatalf("generated password %q", pw)
		}
		if _, err := f.srv.Platform.Registry.Authenticate(context.Background(), "nora@acme.example", pw); err != nil {
			t.Fatalf("the new user cannot sign in with the shown password: %v", err)
		}
		admin.screenshot("settings-users")
		admin.run("the audit log", chromedp.Navigate(base+"/audit"), chromedp.WaitVisible(css(`#chain-status`)))
		if got := admin.text(`#chain-status`); !strings.HasPrefix(got, "Chain intact.") {
			t.Fatalf("audit chain status %q", got)
		}
		admin.screenshot("audit")
	})

	op := newPerson(t, browser, base)
	t.Run("sign in", func(t *testing.T) {
		operator := op.in(t)
		operator.run("opening a page signed out", chromedp.Navigate(base+"/devices"), chromedp.WaitVisible(css(`#email`)))
		if loc := operator.location(); !strings.Contains(loc, "/login?next=%2Fdevices") {
			t.Fatalf("signed out, /devices goes to %s, want the sign-in page coming back to /devices", loc)
		}
		operator.screenshot("login")
		operator.run("signing in",
			chromedp.SendKeys(css(`#email`), f.operator),
			chromedp.SendKeys(css(`#password`), password),
			chromedp.Submit(css(`#password`)),
			chromedp.WaitVisible(css(`#device-table`)))
		if n := operator.count(`#device-table tbody [data-device-state]`); n != len(f.devices) {
			t.Fatalf("device list shows %d devices, want %d", n, len(f.devices))
		}
		if who := operator.text(`.who .me`); who != "Olivia" {
			t.Fatalf("header names %q, want Olivia", who)
		}
		operator.sessionCookie() // checks HttpOnly and SameSite
		operator.screenshot("devices-desktop")
		operator.run("fleet overview", chromedp.Navigate(base+"/fleet"), chromedp.WaitVisible(css(`#chart-firmware`)))
		if got := operator.text(`#stat-active`); got != "7" {
			t.Fatalf("overview counts %s active devices, want 7", got)
		}
		operator.screenshot("fleet-desktop")
		operator.phone()
		operator.run("fleet overview on a phone", chromedp.Reload(), chromedp.WaitVisible(css(`#chart-states`)))
		operator.viewShot("fleet-phone")
		operator.run("device list on a phone", chromedp.Navigate(base+"/devices"), chromedp.WaitVisible(css(`#device-table`)))
		operator.viewShot("devices-phone")
		operator.desktop()
	})

	t.Run("filter bar", func(t *testing.T) {
		operator := op.in(t)
		operator.run("filtering",
			chromedp.Navigate(base+"/devices"),
			chromedp.WaitVisible(css(`#f-state`)),
			chromedp.SetValue(css(`#f-state`), "active"),
			chromedp.SetValue(css(`#f-min`), "2.0"),
			chromedp.SetValue(css(`#f-limit`), "25"),
			chromedp.Submit(css(`#f-min`)))
		operator.waitURL("min_version=2.0")
		operator.run("reading the list", chromedp.WaitVisible(css(`#device-table`)))
		// Active with firmware ≥ 2.0: T1-0001..0005, 0010 minus 1.9.8 ones → 0001-0005 and 0010.
		if n := operator.count(`#device-table tbody [data-device-state]`); n != 6 {
			t.Fatalf("state=active, firmware from 2.0: %d devices listed, want 6", n)
		}
		if loc := operator.location(); !strings.Contains(loc, "state=active") || !strings.Contains(loc, "min_version=2.0") {
			t.Fatalf("filter is not in the address (%s): pages cannot be shared", loc)
		}
	})

	t.Run("quarantine a device and see it live elsewhere", func(t *testing.T) {
		operator := op.in(t)
		// A second tab shows the device list and must follow without reloading.
		watcher := operator.tab()
		watcher.run("watching the list",
			chromedp.Navigate(base+"/devices"),
			chromedp.WaitVisible(css(`#device-table`)),
			chromedp.WaitVisible(css(`#live-status[data-state="live"]`)),
			chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
		badge := fmt.Sprintf(`[data-device-state=%q]`, f.target.ID)
		if got := watcher.text(badge); got != "active" {
			t.Fatalf("the list shows %s as %q, want active", f.target.Serial, got)
		}

		operator.run("quarantining",
			chromedp.Navigate(base+"/devices/"+f.target.ID),
			chromedp.WaitVisible(css(`#device-actions`)),
			chromedp.Click(css(`summary[data-action="quarantined"]`)),
			chromedp.WaitVisible(css(`#reason-quarantined`)),
			chromedp.SendKeys(css(`#reason-quarantined`), "talks to an unknown host"))
		operator.screenshot("device-confirm")
		operator.run("confirming",
			chromedp.Click(css(`button[data-confirm="quarantined"]`)),
			chromedp.WaitVisible(css(`.flash-ok`)))
		if got := operator.text(`.state-line .badge`); got != "quarantined" {
			t.Fatalf("after quarantining, the device page shows %q", got)
		}
		if got := operator.text(`#history tr:first-child`); !strings.Contains(got, "talks to an unknown host") || !strings.Contains(got, "Olivia") {
			t.Fatalf("newest lifecycle history row %q lacks the reason or the actor", got)
		}
		if s := f.state(t, f.target.ID); s != model.StateQuarantined {
			t.Fatalf("the store holds %s, want quarantined", s)
		}
		operator.screenshot("device-quarantined")

		get(watcher, "waiting for the live change", chromedp.Poll[bool](fmt.Sprintf(
			`document.querySelector(%q).textContent.trim() === "quarantined"`, badge), chromedp.WithPollingTimeout(15*time.Second)))
		if !js[bool](watcher, "checking the list was not reloaded", `window.notReloaded === true`) {
			t.Fatal("the list was reloaded; the change must arrive over the event stream")
		}
		if announced := watcher.text(`#live-region`); !strings.Contains(announced, "quarantined") {
			t.Fatalf("the live region announced %q, want the new state", announced)
		}
		watcher.screenshot("devices-live-update")
	})

	t.Run("form post without CSRF token is refused", func(t *testing.T) {
		operator := op.in(t)
		// From the page itself: a same-origin fetch without the token.
		operator.run("opening a device", chromedp.Navigate(base+"/devices/"+f.devices[1].ID),
			chromedp.WaitVisible(css(`#device-actions`)))
		status := js[int](operator, "posting without a token", fmt.Sprintf(`fetch("/devices/%s/transition", {method: "POST",
			headers: {"Content-Type": "application/x-www-form-urlencoded"},
			body: "to=quarantined&reason=forged"}).then(r => r.status)`, f.devices[1].ID))
		if status != http.StatusForbidden {
			t.Fatalf("POST without a CSRF token: %d, want 403", status)
		}
		// From outside the browser: with the session cookie but no token,
		// and with the token from another site.
		cookie := operator.sessionCookie()
		token := get(operator, "reading the page's token", chromedp.Value(css(`#device-actions input[name=csrf]`)))
		for _, c := range []struct {
			name string
			form url.Values
			hdr  map[string]string
		}{
			{"no token", url.Values{"to": {"quarantined"}, "reason": {"forged"}}, nil},
			{"wrong token", url.Values{"to": {"quarantined"}, "reason": {"forged"}, "csrf": {token + "x"}}, nil},
			{"right token, other site", url.Values{"to": {"quarantined"}, "reason": {"forged"}, "csrf": {token}},
				map[string]string{"Origin": "https://evil.example"}},
			{"right token, cross-site fetch", url.Values{"to": {"quarantined"}, "reason": {"forged"}, "csrf": {token}},
				map[string]string{"Sec-Fetch-Site": "cross-site"}},
		} {
			res := post(t, base+"/devices/"+f.devices[1].ID+"/transition", cookie, c.form, c.hdr)
			if res != http.StatusForbidden {
				t.Errorf("%s: %d, want 403", c.name, res)
			}
		}
		if s := f.state(t, f.devices[1].ID); s != model.StateActive {
			t.Fatalf("a refused post changed the device to %s", s)
		}
		// The same form with its token goes through (the test above is not
		// refusing everything).
		if res := post(t, base+"/devices/"+f.devices[1].ID+"/transition", cookie,
			url.Values{"to": {"suspended"}, "reason": {"maintenance"}, "csrf": {token}}, nil); res != http.StatusSeeOther {
			t.Fatalf("a proper post: %d, want 303", res)
		}
		if s := f.state(t, f.devices[1].ID); s != model.StateSuspended {
			t.Fatalf("a proper post left the device %s, want suspended", s)
		}
	})

	t.Run("viewer sees no actions and is refused anyway", func(t *testing.T) {
		viewer := newPerson(t, browser, base)
		viewer.signIn(f.viewer, password)
		id := f.devices[2].ID
		viewer.run("opening a device", chromedp.Navigate(base+"/devices/"+id), chromedp.WaitVisible(css(`#h-actions`)))
		for _, sel := range []string{`#device-actions`, `form[action$="/transition"]`, `form[action$="/edit"]`, `summary[data-action]`} {
			if n := viewer.count(sel); n != 0 {
				t.Errorf("a viewer's device page has %d %s", n, sel)
			}
		}
		viewer.screenshot("device-viewer")
		// Settings: a viewer may read the webhooks, not change them.
		viewer.run("opening webhooks", chromedp.Navigate(base+"/settings/webhooks"), chromedp.WaitVisible(css(`h2`)))
		for _, sel := range []string{`form[action="/settings/webhooks"]`, `form[action$="/delete"]`, `a[href="/settings/keys"]`, `a[href="/settings/users"]`} {
			if n := viewer.count(sel); n != 0 {
				t.Errorf("a viewer's webhook settings have %d %s", n, sel)
			}
		}
		// A forged form with the viewer's own valid token.
		status := js[int](viewer, "forging a transition", fmt.Sprintf(`fetch("/devices/%s/transition", {method: "POST",
			headers: {"Content-Type": "application/x-www-form-urlencoded"},
			body: "to=quarantined&reason=forged&csrf=" + encodeURIComponent(document.querySelector("form[action='/logout'] input[name=csrf]").value)
		}).then(r => r.status)`, id))
		if status != http.StatusForbidden {
			t.Fatalf("a viewer's forged transition: %d, want 403", status)
		}
		if s := f.state(t, id); s != model.StateActive {
			t.Fatalf("the viewer's forged post moved the device to %s", s)
		}
		cookie := viewer.sessionCookie()
		token := get(viewer, "reading the token", chromedp.Value(css(`form[action="/logout"] input[name=csrf]`)))
		for path, form := range map[string]url.Values{
			"/devices/" + id + "/edit": {"name": {"pwned"}, "tags": {""}, "csrf": {token}},
			"/settings/keys":           {"name": {"mine"}, "role": {"viewer"}, "csrf": {token}},
			"/settings/users":          {"email": {"x@acme.example"}, "role": {"viewer"}, "csrf": {token}},
			"/settings/webhooks":       {"url": {"http://127.0.0.1:1/h"}, "csrf": {token}},
			"/tenants":                 {"name": {"mine"}, "kind": {"household"}, "csrf": {token}},
			"/tenant":                  {"tenant": {""}, "csrf": {token}},
		} {
			if res := post(t, base+path, cookie, form, nil); res != http.StatusForbidden {
				t.Errorf("viewer POST %s: %d, want 403", path, res)
			}
		}
	})

	t.Run("sign out", func(t *testing.T) {
		operator := op.in(t)
		old := operator.sessionCookie()
		operator.run("signing out",
			chromedp.Navigate(base+"/fleet"),
			chromedp.WaitVisible(css(`form[action="/logout"] button`)),
			chromedp.Click(css(`form[action="/logout"] button`)),
			chromedp.WaitVisible(css(`#email`)))
		if got := operator.text(`.flash-ok`); !strings.Contains(got, "signed out") {
			t.Fatalf("after signing out the page says %q", got)
		}
		operator.run("coming back", chromedp.Navigate(base+"/devices"), chromedp.WaitVisible(css(`#email`)))
		// The old cookie is dead on the server, not only forgotten by the browser.
		req, _ := http.NewRequest(http.MethodGet, base+"/devices", nil)
		req.AddCookie(old)
		res, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/login") {
			t.Fatalf("the signed-out session still opens /devices: %d %s", res.StatusCode, res.Header.Get("Location"))
		}
	})

	t.Run("login rate limit", func(t *testing.T) {
		p := newPerson(t, browser, base)
		for i := range 5 {
			p.run("a wrong password", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(css(`#email`)),
				chromedp.SendKeys(css(`#email`), f.limited),
				chromedp.SendKeys(css(`#password`), fmt.Sprintf("wrong password %d", i)),
				chromedp.Submit(css(`#password`)),
				chromedp.WaitVisible(css(`#login-error`)))
			if got := p.text(`#login-error`); got != "Wrong email or password." {
				t.Fatalf("wrong password %d: %q", i+1, got)
			}
		}
		// Now even the right password is refused until the window passes.
		p.run("the right password, too late", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(css(`#email`)),
			chromedp.SendKeys(css(`#email`), f.limited),
			chromedp.SendKeys(css(`#password`), password),
			chromedp.Submit(css(`#password`)),
			chromedp.WaitVisible(css(`#login-error`)))
		if got := p.text(`#login-error`); !strings.Contains(got, "Too many failed sign-ins") {
			t.Fatalf("after 5 failures the right password gets %q, want the rate limit", got)
		}
		if n := p.count(`header.top`); n != 0 {
			t.Fatal("signed in despite the rate limit")
		}
		p.screenshot("login-rate-limited")
		// Another account from the same address still signs in.
		p.signIn(f.viewer, password)
	})
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// post sends a form as a browser would, with cookie and extra headers,
// and returns the status without following a redirect.
func post(t *testing.T, u string, cookie *http.Cookie, form url.Values, hdr map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.AddCookie(cookie)
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
