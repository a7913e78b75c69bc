package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// stepCampaigns runs the campaign scheduler's round now (it also runs on
// its own; stepping it here keeps the test from waiting for its tick).
func stepCampaigns(t *testing.T, srv *testserver.Server) {
	t.Helper()
	if err := srv.Platform.OTA.StepCampaigns(context.Background()); err != nil {
		t.Fatalf("stepping the campaigns: %v", err)
	}
}

// waitCampaign steps the scheduler until ok holds for the campaign.
func waitCampaign(t *testing.T, srv *testserver.Server, tid, id string, what string, ok func(*model.Campaign) bool) *model.Campaign {
	t.Helper()
	var c *model.Campaign
	testserver.Eventually(t, 15*time.Second, func() bool {
		stepCampaigns(t, srv)
		var err error
		if c, err = srv.Platform.OTA.GetCampaign(context.Background(), tid, id); err != nil {
			t.Fatal(err)
		}
		return ok(c)
	}, "campaign %s: %s", id, what)
	return c
}

func campaignDevices(t *testing.T, srv *testserver.Server, tid, id string, status model.UpdateStatus) []model.CampaignDevice {
	t.Helper()
	items, _, err := srv.Platform.Store.ListCampaignDevices(context.Background(), tid, id, status, store.ListOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// clearFlash removes the page's message, so that waiting for the next
// one does not find the old one still shown before the page changes.
func clearFlash() chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](`document.querySelectorAll(".flash").forEach(e => e.remove())`)
}

// poll waits until the expression holds in the page.
func (p *person) poll(what, expr string) {
	p.t.Helper()
	get(p, what, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second)))
}

// TestBrowserCampaigns drives the update campaign pages: an operator
// creates a campaign through the form (a field error first), watches its
// page follow device reports and waves over the event stream without
// reloading, pauses and resumes it; a viewer sees no buttons and is
// refused anyway; a tenant admin invalidates the release; a household
// confirms one update and declines another on My home.
func TestBrowserCampaigns(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	f := newFleet(t)
	srv, base := f.srv, f.srv.URL
	tid := f.tenant.ID
	ctx := context.Background()
	vendor := srv.NewVendor(t, tid, f.tenant.Admin.Secret)
	artifact := vendor.Release(t, f.product.ID, "3.0.0", []byte("firmware 3.0.0"))
	srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/users",
		Key: f.tenant.Admin.Secret, Body: map[string]any{"email": "tara@acme.example", "name": "Tara",
			"role": model.RoleTenantAdmin, "password": password}})

	op := newPerson(t, browser, base)
	op.signIn(f.operator, password)
	var campaignID string

	t.Run("an operator creates a campaign through the form", func(t *testing.T) {
		operator := op.in(t)
		operator.run("opening the list", chromedp.Navigate(base+"/campaigns"), chromedp.WaitVisible(css(`#campaign-table`)))
		if got := operator.text(`#campaign-table tbody`); !strings.Contains(got, "No campaigns yet") {
			t.Fatalf("an empty campaign list says %q", got)
		}
		operator.run("filling the form",
			chromedp.Click(css(`#new-campaign`)),
			chromedp.WaitVisible(css(`#cf-name`)),
			chromedp.SendKeys(css(`#cf-name`), "Floor one to 3.0"),
			chromedp.SetValue(css(`#cf-artifact`), artifact),
			chromedp.SendKeys(css(`#cf-tag`), "floor-1"),
			chromedp.SetValue(css(`#cf-canary`), "1"),
			chromedp.SetValue(css(`#cf-wave`), "2"),
			chromedp.SetValue(css(`#cf-success`), "100"),
			chromedp.SetValue(css(`#cf-failure`), "50"),
			chromedp.SetValue(css(`#cf-consent`), "skip"),
			// A window that starts when it ends: the update service refuses it.
			chromedp.SetValue(css(`#cf-start`), "02:00"),
			chromedp.SetValue(css(`#cf-end`), "02:00"),
			chromedp.Click(css(`#cf-submit`)),
			chromedp.WaitVisible(css(`#err-maintenance_window`)))
		if got := operator.text(`#err-maintenance_window`); !strings.Contains(got, "Start and end are the same time") {
			t.Fatalf("the window's error says %q", got)
		}
		// The form keeps what was typed.
		if got := get(operator, "reading the name", chromedp.Value(css(`#cf-name`))); got != "Floor one to 3.0" {
			t.Fatalf("after the error the name field holds %q", got)
		}
		if got := get(operator, "reading the artifact", chromedp.Value(css(`#cf-artifact`))); got != artifact {
			t.Fatalf("after the error the image is %q, want %s", got, artifact)
		}
		operator.screenshot("campaign-new-error")
		operator.run("fixing the window and submitting",
			chromedp.SetValue(css(`#cf-start`), ""),
			chromedp.SetValue(css(`#cf-end`), ""),
			chromedp.Click(css(`#cf-submit`)),
			chromedp.WaitVisible(css(`.flash-ok`)))
		operator.waitURL("/campaigns/cmp_")
		if got := operator.text(`.flash-ok`); !strings.Contains(got, "started: 4 devices targeted") {
			t.Fatalf("after creating, the page says %q", got)
		}
		loc, _ := url.Parse(operator.location())
		campaignID = strings.TrimPrefix(loc.Path, "/campaigns/")
		c, err := srv.Platform.OTA.GetCampaign(ctx, tid, campaignID)
		if err != nil {
			t.Fatal(err)
		}
		if c.Canary != 1 || c.WaveSize != 2 || c.SuccessRatio != 1 || c.MaxFailureRatio != 0.5 || c.RequireConsent ||
			c.Window != nil || len(c.Query.Tags) != 1 || c.Query.Tags[0] != "floor-1" || c.Total != 4 {
			t.Fatalf("the form made %+v", c)
		}
		if got := operator.text(`#count-total`); got != "4" {
			t.Fatalf("the page counts %s devices, want 4", got)
		}
		if got := operator.text(`#campaign-gates`); !strings.Contains(got, "tagged floor-1") || !strings.Contains(got, "50 %") {
			t.Fatalf("the gates read %q", got)
		}
	})
	if campaignID == "" {
		t.Fatal("no campaign to go on with")
	}

	t.Run("the campaign page follows reports and waves live", func(t *testing.T) {
		operator := op.in(t)
		operator.run("watching the campaign",
			chromedp.Navigate(base+"/campaigns/"+campaignID),
			chromedp.WaitVisible(css(`#campaign-live`)),
			chromedp.WaitVisible(css(`#live-status[data-state="live"]`)),
			chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
		waitCampaign(t, srv, tid, campaignID, "canary started", func(c *model.Campaign) bool { return c.Wave >= 1 })
		operator.poll("the canary wave appearing", `document.getElementById("campaign-wave").textContent.includes("wave 1")`)
		canary := campaignDevices(t, srv, tid, campaignID, model.UpdateNotified)
		if len(canary) != 1 {
			t.Fatalf("%d canary devices notified, want 1", len(canary))
		}
		dev := canary[0].DeviceID
		row := fmt.Sprintf(`#campaign-devices tr[data-device=%q] [data-status]`, dev)
		report := func(s model.UpdateStatus, detail string) {
			t.Helper()
			if err := srv.Platform.OTA.RecordReport(ctx, tid, dev, &ota.DeviceReport{Status: s, ArtifactID: artifact, Error: detail}); err != nil {
				t.Fatalf("reporting %s: %v", s, err)
			}
		}
		report(model.UpdateDownloading, "")
		operator.poll("the device downloading", fmt.Sprintf(`(document.querySelector(%q) || {}).textContent === "downloading"`, row))
		if got := operator.text(`#count-in-progress`); got != "1" {
			t.Fatalf("in progress: %s, want 1", got)
		}
		report(model.UpdateSucceeded, "")
		operator.poll("the success counted", `document.getElementById("count-succeeded").textContent.trim() === "1"`)
		// The canary passed its gate: the next wave starts, and the page shows it.
		waitCampaign(t, srv, tid, campaignID, "wave 2 started", func(c *model.Campaign) bool { return c.Wave >= 2 })
		operator.poll("wave 2 appearing", `document.getElementById("campaign-wave").textContent.includes("wave 2")`)
		wave2 := campaignDevices(t, srv, tid, campaignID, model.UpdateNotified)
		if len(wave2) != 2 {
			t.Fatalf("%d devices notified in wave 2, want 2", len(wave2))
		}
		// A failure shows with its detail.
		dev = wave2[0].DeviceID
		row = fmt.Sprintf(`#campaign-devices tr[data-device=%q]`, dev)
		report(model.UpdateFailed, "flash write error at 0x3f000")
		operator.poll("the failure and its detail", fmt.Sprintf(`(document.querySelector(%q) || {}).textContent.includes("flash write error at 0x3f000")`, row))
		if got := operator.text(`#count-failed`); got != "1" {
			t.Fatalf("failed: %s, want 1", got)
		}
		desc := js[string](operator, "reading the chart", `document.getElementById("chart-update-status-d").textContent`)
		if !strings.Contains(desc, "succeeded: 1") || !strings.Contains(desc, "failed: 1") || !strings.Contains(desc, "notified: 1") {
			t.Fatalf("the status chart says %q", desc)
		}
		if !js[bool](operator, "checking the page was not reloaded", `window.notReloaded === true`) {
			t.Fatal("the campaign page was reloaded; changes must arrive over the event stream")
		}
		if n := js[int](operator, "counting live swaps", `Number(document.getElementById("campaign-live").getAttribute("data-updates") || 0)`); n < 3 {
			t.Fatalf("the page swapped its live part %d times, want at least 3", n)
		}
		operator.screenshot("campaign-live")
	})

	t.Run("pause and resume", func(t *testing.T) {
		operator := op.in(t)
		operator.run("pausing",
			chromedp.Navigate(base+"/campaigns/"+campaignID),
			chromedp.WaitVisible(css(`#campaign-actions`)),
			chromedp.Click(css(`summary[data-action="pause"]`)),
			chromedp.WaitVisible(css(`#pause-reason`)),
			chromedp.SendKeys(css(`#pause-reason`), "waiting for the field team"),
			chromedp.Click(css(`button[data-confirm="pause"]`)),
			chromedp.WaitVisible(css(`.flash`)))
		if got := operator.text(`.flash-ok`); !strings.Contains(got, "Paused") {
			t.Fatalf("pausing says %q", got)
		}
		if got := operator.text(`#campaign-state`); got != "paused" {
			t.Fatalf("after pausing the state reads %q", got)
		}
		if got := operator.text(`#campaign-reason`); got != "waiting for the field team" {
			t.Fatalf("the reason reads %q", got)
		}
		if n := operator.count(`summary[data-action="pause"]`); n != 0 {
			t.Fatal("a paused campaign still offers to pause")
		}
		c, _ := srv.Platform.OTA.GetCampaign(ctx, tid, campaignID)
		if c.State != model.CampaignPaused {
			t.Fatalf("the store holds %s, want paused", c.State)
		}
		operator.screenshot("campaign-paused")
		operator.run("resuming", clearFlash(), chromedp.Click(css(`button[data-action="resume"]`)), chromedp.WaitVisible(css(`.flash`)))
		if got := operator.text(`.flash-ok`); !strings.Contains(got, "Resumed") {
			t.Fatalf("resuming says %q", got)
		}
		if got := operator.text(`#campaign-state`); got != "running" {
			t.Fatalf("after resuming the state reads %q", got)
		}
		// Resuming twice is refused with the service's reason.
		cookie := operator.sessionCookie()
		token := get(operator, "reading the token", chromedp.Value(css(`form[action="/logout"] input[name=csrf]`)))
		if res := post(t, base+"/campaigns/"+campaignID+"/resume", cookie, url.Values{"csrf": {token}}, nil); res != http.StatusSeeOther {
			t.Fatalf("resuming a running campaign: %d, want 303 back with a message", res)
		}
		operator.run("reading the list", chromedp.Navigate(base+"/campaigns"), chromedp.WaitVisible(css(`#campaign-table`)))
		rowText := operator.text(fmt.Sprintf(`#campaign-table tr[data-campaign=%q]`, campaignID))
		for _, want := range []string{"Floor one to 3.0", "3.0.0", "running", "1 succeeded, 1 failed, 1 in progress, 1 pending of 4"} {
			if !strings.Contains(rowText, want) {
				t.Errorf("the list's row %q lacks %q", rowText, want)
			}
		}
		operator.screenshot("campaigns-list")
		// The list follows the event stream too.
		operator.run("marking the list", chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`),
			chromedp.WaitVisible(css(`#live-status[data-state="live"]`)))
		told := campaignDevices(t, srv, tid, campaignID, model.UpdateNotified)
		if len(told) != 1 {
			t.Fatalf("%d devices notified, want 1", len(told))
		}
		if err := srv.Platform.OTA.RecordReport(ctx, tid, told[0].DeviceID, &ota.DeviceReport{Status: model.UpdateSucceeded, ArtifactID: artifact}); err != nil {
			t.Fatal(err)
		}
		operator.poll("the list row changing", fmt.Sprintf(`document.querySelector(%q).textContent.includes("2 succeeded, 1 failed, 0 in progress")`,
			fmt.Sprintf(`#campaign-table tr[data-campaign=%q]`, campaignID)))
		if !js[bool](operator, "checking the list was not reloaded", `window.notReloaded === true`) {
			t.Fatal("the campaign list was reloaded; changes must arrive over the event stream")
		}
		operator.phone()
		operator.run("the campaign on a phone", chromedp.Navigate(base+"/campaigns/"+campaignID), chromedp.WaitVisible(css(`#campaign-live`)))
		operator.viewShot("campaign-phone")
		operator.desktop()
	})

	t.Run("a viewer sees no buttons and is refused anyway", func(t *testing.T) {
		viewer := newPerson(t, browser, base)
		viewer.signIn(f.viewer, password)
		viewer.run("opening the campaign", chromedp.Navigate(base+"/campaigns/"+campaignID), chromedp.WaitVisible(css(`#campaign-live`)))
		for _, sel := range []string{`#campaign-actions`, `form[action$="/pause"]`, `form[action$="/cancel"]`, `form[action$="/resume"]`,
			`#invalidate`, `form[action$="/invalidate"]`} {
			if n := viewer.count(sel); n != 0 {
				t.Errorf("a viewer's campaign page has %d %s", n, sel)
			}
		}
		viewer.run("the list", chromedp.Navigate(base+"/campaigns"), chromedp.WaitVisible(css(`#campaign-table`)))
		if n := viewer.count(`#new-campaign`); n != 0 {
			t.Error("a viewer is offered a new campaign")
		}
		cookie := viewer.sessionCookie()
		token := get(viewer, "reading the token", chromedp.Value(css(`form[action="/logout"] input[name=csrf]`)))
		for _, path := range []string{"/campaigns/" + campaignID + "/pause", "/campaigns/" + campaignID + "/cancel", "/campaigns",
			"/artifacts/" + artifact + "/invalidate"} {
			if res := post(t, base+path, cookie, url.Values{"csrf": {token}, "reason": {"forged"}, "name": {"x"}}, nil); res != http.StatusForbidden {
				t.Errorf("viewer POST %s: %d, want 403", path, res)
			}
		}
		if c, _ := srv.Platform.OTA.GetCampaign(ctx, tid, campaignID); c.State != model.CampaignRunning {
			t.Fatalf("the viewer's forged posts left the campaign %s", c.State)
		}
	})

	t.Run("a tenant admin invalidates the release", func(t *testing.T) {
		admin := newPerson(t, browser, base)
		admin.signIn("tara@acme.example", password)
		admin.run("invalidating",
			chromedp.Navigate(base+"/campaigns/"+campaignID),
			chromedp.WaitVisible(css(`#invalidate`)),
			chromedp.Click(css(`#invalidate summary`)),
			chromedp.WaitVisible(css(`#invalidate-reason`)),
			chromedp.SendKeys(css(`#invalidate-reason`), "bricks rev B boards"),
			chromedp.Click(css(`#invalidate-confirm`)),
			chromedp.WaitVisible(css(`.flash`)))
		got := admin.text(`.flash-ok`)
		for _, want := range []string{"Release 3.0.0 is invalidated", "Cancelled 1 campaign", "Devices already running it: 2."} {
			if !strings.Contains(got, want) {
				t.Errorf("invalidating says %q, want %q in it", got, want)
			}
		}
		if got := admin.text(`#campaign-state`); got != "cancelled" {
			t.Fatalf("after invalidating, the campaign is %q", got)
		}
		// The device still waiting for its wave counts as cancelled.
		if desc := js[string](admin, "reading the chart", `document.getElementById("chart-update-status-d").textContent`); !strings.Contains(desc, "cancelled: 1") ||
			!strings.Contains(desc, "pending: 0") {
			t.Fatalf("after invalidating, the chart says %q", desc)
		}
		if got := admin.text(`#release-invalidated`); !strings.Contains(got, "bricks rev B boards") || !strings.Contains(got, "2 device(s) already run") {
			t.Fatalf("the release box says %q", got)
		}
		href := get(admin, "reading the follow-up link", chromedp.AttributeValue(css(`#release-installed a`), "href")).Value
		if !strings.Contains(href, "firmware_version=3.0.0") {
			t.Fatalf("follow-up link %q", href)
		}
		admin.screenshot("campaign-invalidated")
		// The form offers no invalidated release.
		admin.run("the new-campaign form", chromedp.Navigate(base+href), chromedp.WaitVisible(css(`#cf-artifact`)))
		if n := admin.count(fmt.Sprintf(`#cf-artifact option[value=%q]`, artifact)); n != 0 {
			t.Fatal("the form still offers the invalidated release")
		}
		if got := get(admin, "reading the prefilled version", chromedp.Value(css(`#cf-fw`))); got != "3.0.0" {
			t.Fatalf("the follow-up form's firmware version is %q", got)
		}
	})

	t.Run("a household confirms one update and declines another", func(t *testing.T) {
		home := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/tenants",
			Key: srv.AdminKey, Body: map[string]any{"name": "the-parks", "kind": "household"}}).Str("id")
		srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/users",
			Key: srv.AdminKey, Tenant: home, Body: map[string]any{"email": "pat@parks.example", "name": "Pat",
				"role": model.RoleTenantAdmin, "password": password}})
		homeKey := srv.CreateKey(t, home, model.RoleTenantAdmin).Secret
		prod := srv.CreateProduct(t, home)
		var thermostat, doorbell model.Device
		for _, d := range []struct {
			name string
			into *model.Device
		}{{"Thermostat", &thermostat}, {"Doorbell", &doorbell}} {
			*d.into = srv.CreateDevice(t, home, prod.ID, testserver.DeviceOpts{State: model.StateActive, FirmwareVersion: "1.0.0"})
			srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPatch, Path: testserver.APIPrefix + "/devices/" + d.into.ID,
				Key: homeKey, Body: map[string]any{"name": d.name}})
		}
		hv := srv.NewVendor(t, home, homeKey)
		hart := hv.Release(t, prod.ID, "2.0.0", []byte("household firmware 2.0.0"))
		var c model.Campaign
		srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/campaigns", Key: homeKey,
			Body: map[string]any{"name": "spring", "artifact_id": hart, "query": map[string]any{"product_id": prod.ID}}}).Into(t, &c)
		if !c.RequireConsent {
			t.Fatal("a household's campaign does not ask for consent")
		}
		waitCampaign(t, srv, home, c.ID, "consent asked", func(c *model.Campaign) bool { return c.Wave >= 1 })

		h := newPerson(t, browser, base)
		h.signIn("pat@parks.example", password)
		h.run("My home", chromedp.Navigate(base+"/home"), chromedp.WaitVisible(css(`#home-updates`)))
		if n := h.count(`#home-updates li`); n != 2 {
			t.Fatalf("My home asks about %d updates, want 2", n)
		}
		item := func(d model.Device) string { return fmt.Sprintf(`#home-updates li[data-device=%q]`, d.ID) }
		if got := h.text(item(thermostat)); !strings.Contains(got, "Firmware 2.0.0 is ready for Thermostat") {
			t.Fatalf("My home says %q", got)
		}
		h.screenshot("home-update-waiting")
		h.run("installing on the thermostat", chromedp.Click(css(item(thermostat)+` button[data-consent="yes"]`)), chromedp.WaitVisible(css(`.flash`)))
		if got := h.text(`.flash-ok`); !strings.Contains(got, "Firmware 2.0.0 will be installed on Thermostat") {
			t.Fatalf("confirming says %q", got)
		}
		cd, err := srv.Platform.Store.GetCampaignDevice(ctx, home, c.ID, thermostat.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cd.Status != model.UpdateNotified || cd.Consent != model.ConsentGranted {
			t.Fatalf("after Install the thermostat is %s with consent %q, want notified and granted", cd.Status, cd.Consent)
		}
		if n := h.count(item(thermostat)); n != 0 {
			t.Fatal("My home still asks about the confirmed update")
		}
		h.run("declining for the doorbell", clearFlash(), chromedp.Click(css(item(doorbell)+` button[data-consent="no"]`)), chromedp.WaitVisible(css(`.flash`)))
		if got := h.text(`.flash-ok`); !strings.Contains(got, "Doorbell keeps its current firmware") {
			t.Fatalf("declining says %q", got)
		}
		if cd, _ := srv.Platform.Store.GetCampaignDevice(ctx, home, c.ID, doorbell.ID); cd.Status != model.UpdateRefused {
			t.Fatalf("after Not now the doorbell is %s, want refused", cd.Status)
		}
		if n := h.count(`#home-updates`); n != 0 {
			t.Fatal("My home still lists updates after both were answered")
		}
		// The device page shows the thermostat's update.
		h.run("the thermostat's page", chromedp.Navigate(base+"/devices/"+thermostat.ID), chromedp.WaitVisible(css(`#device-update`)))
		if got := h.text(`#device-update`); !strings.Contains(got, "2.0.0") || !strings.Contains(got, "notified") {
			t.Fatalf("the device page's update section says %q", got)
		}
		h.screenshot("device-update")
		// Answering again is refused with a message, not an error page.
		cookie := h.sessionCookie()
		token := get(h, "reading the token", chromedp.Value(css(`form[action="/logout"] input[name=csrf]`)))
		if res := post(t, base+"/campaigns/"+c.ID+"/devices/"+thermostat.ID+"/consent", cookie,
			url.Values{"csrf": {token}, "grant": {"no"}}, nil); res != http.StatusSeeOther {
			t.Fatalf("answering twice: %d, want 303 with a message", res)
		}
		if cd, _ := srv.Platform.Store.GetCampaignDevice(ctx, home, c.ID, thermostat.ID); cd.Status != model.UpdateNotified {
			t.Fatalf("a second answer changed the thermostat to %s", cd.Status)
		}
	})
}
