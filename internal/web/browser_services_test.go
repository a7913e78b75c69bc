package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestBrowserDeviceServices drives My home (claiming by code), the device
// page's telemetry chart, twin, commands and certificates, and checks that
// a viewer gets none of their buttons and that its forged posts are refused.
func TestBrowserDeviceServices(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	f := newFleet(t)
	srv, base := f.srv, f.srv.URL
	ctx := context.Background()

	// A household with one person in it.
	home := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/tenants",
		Key: srv.AdminKey, Body: map[string]any{"name": "the-hills", "kind": "household"}}).Str("id")
	srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/users",
		Key: srv.AdminKey, Tenant: home, Body: map[string]any{"email": "hannah@hills.example", "name": "Hannah",
			"role": model.RoleTenantAdmin, "password": password}})

	t.Run("a household claims a device by its code", func(t *testing.T) {
		h := newPerson(t, browser, base)
		h.signIn("hannah@hills.example", password)
		h.waitURL("/home")
		code := srv.NewClaimCode(t)
		claim := func(c string) {
			h.run("claiming "+c, chromedp.Navigate(base+"/home"), chromedp.WaitVisible(css(`#claim-code`)),
				chromedp.SendKeys(css(`#claim-code`), c), chromedp.Submit(css(`#claim-code`)),
				chromedp.WaitVisible(css(`.flash`)))
		}
		claim("NOT-A-REAL-CODE-AT-ALL-000")
		if got := h.text(`.flash-error`); !strings.Contains(got, "No device has this claim code") {
			t.Fatalf("a wrong code says %q", got)
		}
		claim(code)
		if got := h.text(`.flash-ok`); !strings.Contains(got, "Claimed") {
			t.Fatalf("claiming says %q", got)
		}
		if n := h.count(`#home-devices tbody tr[data-serial]`); n != 1 {
			t.Fatalf("My home lists %d devices after the claim, want 1", n)
		}
		if got := h.text(`#home-devices .home-status`); got != "waiting to be switched on and connected" {
			t.Fatalf("a claimed device's status: %q", got)
		}
		h.screenshot("home-claimed")
		claim(code)
		if got := h.text(`.flash-error`); !strings.Contains(got, "already used") {
			t.Fatalf("a used code says %q", got)
		}
		h.phone()
		h.run("My home on a phone", chromedp.Navigate(base+"/home"), chromedp.WaitVisible(css(`#home-devices`)))
		h.viewShot("home-phone")
	})

	// Telemetry for the target device over the last hour, a point a minute.
	target := f.target
	now := time.Now().UTC().Truncate(time.Second)
	var pts []model.TelemetryPoint
	for i := range 40 {
		pts = append(pts, model.TelemetryPoint{TenantID: f.tenant.ID, DeviceID: target.ID, Metric: "temperature",
			Time: now.Add(-time.Duration(40-i) * time.Minute), Kind: model.KindNumber, Num: 20 + float64(i%7)})
	}
	if err := srv.Platform.Store.WriteTelemetry(ctx, pts); err != nil {
		t.Fatal(err)
	}
	enrolled := srv.EnrollWithToken(t, f.tenant.ID, f.product.ID, "T1-0900")
	op := newPerson(t, browser, base)
	op.signIn(f.operator, password)

	t.Run("the telemetry chart shows the device's points", func(t *testing.T) {
		operator := op.in(t)
		operator.run("opening the chart", chromedp.Navigate(base+"/devices/"+target.ID+"?metric=temperature&range=1h"),
			chromedp.WaitVisible(css(`#chart-telemetry`)))
		n := operator.count(`#chart-telemetry circle.pt`)
		// One point a minute into 120 buckets of 30 s: each point its own.
		if n != len(pts) {
			t.Fatalf("the chart draws %d points, want %d", n, len(pts))
		}
		if desc := js[string](operator, "reading the chart's description", `document.getElementById("chart-telemetry-d").textContent`); !strings.Contains(desc, "lowest 20, highest 26") {
			t.Fatalf("the chart's description: %q", desc)
		}
		// Over 7 days the same points fall into fewer, averaged buckets.
		operator.run("a longer range", chromedp.Navigate(base+"/devices/"+target.ID+"?metric=temperature&range=7d"),
			chromedp.WaitVisible(css(`#chart-telemetry`)))
		if m := operator.count(`#chart-telemetry circle.pt`); m == 0 || m >= n {
			t.Fatalf("over 7 days the chart draws %d points, want between 1 and %d", m, n-1)
		}
		operator.run("back to the hour", chromedp.Navigate(base+"/devices/"+target.ID+"?metric=temperature&range=1h"),
			chromedp.WaitVisible(css(`#chart-telemetry`)))
		operator.screenshot("device-telemetry")
		operator.phone()
		operator.run("the chart on a phone", chromedp.Navigate(base+"/devices/"+target.ID+"?metric=temperature&range=1h#h-telemetry"),
			chromedp.WaitVisible(css(`#chart-telemetry`)), chromedp.ScrollIntoView(css(`#h-telemetry`)))
		operator.viewShot("device-telemetry-phone")
		operator.desktop()
	})

	t.Run("an operator edits the twin and sends a command", func(t *testing.T) {
		operator := op.in(t)
		operator.run("editing desired", chromedp.Navigate(base+"/devices/"+target.ID),
			chromedp.Click(css(`#h-twin ~ details summary`)),
			chromedp.SetValue(css(`#twin-doc`), `{"interval": 60}`),
			chromedp.Submit(css(`#twin-doc`)), chromedp.WaitVisible(css(`.flash`)))
		if got := operator.text(`.flash-ok`); !strings.Contains(got, "Desired saved (version 1)") {
			t.Fatalf("saving desired says %q", got)
		}
		if got := operator.text(`#twin-desired`); !strings.Contains(got, `"interval": 60`) {
			t.Fatalf("desired shows %q", got)
		}
		// A second form made from the old version is refused (If-Match).
		cookie, token := operator.sessionCookie(), get(operator, "token", chromedp.Value(css(`#twin-form input[name=csrf]`)))
		if res := post(t, base+"/devices/"+target.ID+"/twin", cookie, url.Values{"desired": {`{"interval": 5}`},
			"version": {"0"}, "csrf": {token}}, nil); res != http.StatusSeeOther {
			t.Fatalf("a stale twin form: %d", res)
		}
		tw, err := srv.Platform.Twin.Get(ctx, f.tenant.ID, target.ID)
		if err != nil || !strings.Contains(string(tw.Desired), "60") {
			t.Fatalf("a stale form overwrote desired: %s %v", tw.Desired, err)
		}
		operator.run("sending a command", chromedp.Navigate(base+"/devices/"+target.ID),
			chromedp.Click(css(`#command-send summary`)),
			chromedp.SendKeys(css(`#c-name`), "reboot"),
			chromedp.Click(css(`#command-send input[name=confirm]`)),
			chromedp.Submit(css(`#c-name`)), chromedp.WaitVisible(css(`.flash`)))
		if got := operator.text(`.flash-ok`); !strings.Contains(got, "queued") {
			t.Fatalf("sending a command says %q", got)
		}
		if got := operator.text(`#commands tbody tr`); !strings.Contains(got, "reboot") {
			t.Fatalf("recent commands: %q", got)
		}
		operator.screenshot("device-twin-commands")
	})

	t.Run("an operator revokes a certificate", func(t *testing.T) {
		operator := op.in(t)
		sel := fmt.Sprintf(`form[action$="/certificates/%s/revoke"]`, enrolled.Serial)
		operator.run("revoking", chromedp.Navigate(base+"/devices/"+enrolled.DeviceID+"#h-certs"),
			chromedp.Click(css(`#certificates summary`)),
			chromedp.SetValue(css(sel+` select`), string(model.ReasonKeyCompromise)),
			chromedp.Click(css(sel+` input[name=confirm]`)),
			chromedp.Click(css(sel+` button`)), chromedp.WaitVisible(css(`.flash`)))
		if got := operator.text(`.flash-ok`); !strings.Contains(got, "is revoked") {
			t.Fatalf("revoking says %q", got)
		}
		if got := operator.text(`#certificates tbody tr`); !strings.Contains(got, "key_compromise") {
			t.Fatalf("the certificate row: %q", got)
		}
		c, err := srv.Platform.Identity.GetCertificate(ctx, f.tenant.ID, enrolled.Serial)
		if err != nil || c.RevokedAt == nil {
			t.Fatalf("the certificate is not revoked: %v", err)
		}
	})

	t.Run("a viewer sees no actions and forged posts are refused", func(t *testing.T) {
		viewer := newPerson(t, browser, base)
		viewer.signIn(f.viewer, password)
		viewer.run("opening the device", chromedp.Navigate(base+"/devices/"+target.ID), chromedp.WaitVisible(css(`#h-twin`)))
		for _, sel := range []string{`#command-send`, `#twin-form`, `form[action$="/revoke"]`, `form[action$="/commands"]`} {
			if n := viewer.count(sel); n != 0 {
				t.Errorf("a viewer's device page has %d %s", n, sel)
			}
		}
		if n := viewer.count(`#chart-telemetry circle.pt`); n == 0 {
			t.Error("a viewer sees no telemetry")
		}
		viewer.run("opening My home", chromedp.Navigate(base+"/home"), chromedp.WaitVisible(css(`#home-devices`)))
		if n := viewer.count(`#claim-form`); n != 0 {
			t.Error("a viewer's My home has the claim form")
		}
		viewer.screenshot("home-viewer")
		cookie := viewer.sessionCookie()
		token := get(viewer, "reading the token", chromedp.Value(css(`form[action="/logout"] input[name=csrf]`)))
		code := srv.NewClaimCode(t)
		dev := "/devices/" + target.ID
		for path, form := range map[string]url.Values{
			"/home/claim":     {"code": {code}, "csrf": {token}},
			dev + "/commands": {"name": {"reboot"}, "confirm": {"yes"}, "csrf": {token}},
			dev + "/twin":     {"desired": {`{"pwned": true}`}, "version": {"1"}, "csrf": {token}},
			"/devices/" + enrolled.DeviceID + "/certificates/" + enrolled.Serial + "/revoke": {"reason": {"unspecified"}, "confirm": {"yes"}, "csrf": {token}},
			"/findings/fnd_x/suppress": {"reason": {"no"}, "days": {"7"}, "csrf": {token}},
		} {
			if res := post(t, base+path, cookie, form, nil); res != http.StatusForbidden {
				t.Errorf("viewer POST %s: %d, want 403", path, res)
			}
		}
		// And without a token, even an operator's post is refused.
		if res := post(t, base+dev+"/commands", op.sessionCookie(), url.Values{"name": {"reboot"}, "confirm": {"yes"}}, nil); res != http.StatusForbidden {
			t.Errorf("a command post without the CSRF token: %d, want 403", res)
		}
		cmds, _, err := srv.Platform.Store.ListCommands(ctx, f.tenant.ID, target.ID, store.ListOptions{Limit: 100})
		if err != nil || len(cmds) != 1 {
			t.Fatalf("commands after the forged posts: %d (%v), want the operator's 1", len(cmds), err)
		}
		tw, _ := srv.Platform.Twin.Get(ctx, f.tenant.ID, target.ID)
		if strings.Contains(string(tw.Desired), "pwned") || tw.DesiredVersion != 1 {
			t.Fatalf("a forged post changed desired: %s (version %s)", tw.Desired, strconv.FormatInt(tw.DesiredVersion, 10))
		}
	})
}
