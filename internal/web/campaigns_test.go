package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestCampaignPages renders the campaign pages without a browser: every
// post form carries the token and no inline script or style, another
// tenant's campaign is not found, a viewer may not open the form, and
// the form answers its own reading errors next to the fields.
func TestCampaignPages(t *testing.T) {
	w := newWalls(t)
	srv := w.srv
	vendor := srv.NewVendor(t, w.a.ID, w.a.Admin.Secret)
	art := vendor.Release(t, w.devA.ProductID, "2.0.0", []byte("firmware 2.0.0"))
	var c model.Campaign
	srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/campaigns", Key: w.a.Admin.Secret,
		Body: map[string]any{"name": "all of A", "artifact_id": art, "query": map[string]any{}}}).Into(t, &c)

	admin := newClient(t, srv.URL)
	admin.signIn(w.adminA, password)
	for _, path := range []string{"/campaigns", "/campaigns/new", "/campaigns/" + c.ID, "/campaigns/" + c.ID + "/live",
		"/campaigns/" + c.ID + "?status=pending", "/devices/" + w.devA.ID, "/home"} {
		p := admin.get(path)
		if p.status != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, p.status, p.body)
		}
		for _, m := range postFormRe.FindAllStringSubmatch(p.body, -1) {
			if strings.Contains(strings.ToLower(m[1]), `method="post"`) && !strings.Contains(m[2], `name="csrf"`) {
				t.Errorf("%s: a form without a CSRF token: <form%s>", path, m[1])
			}
		}
		if strings.Contains(p.body, "<script>") || strings.Contains(p.body, " style=") {
			t.Errorf("%s: inline script or style (the CSP forbids them)", path)
		}
	}
	list := admin.get("/campaigns")
	for _, want := range []string{"all of A", "2.0.0", `href="/campaigns/new"`, `id="progress-` + c.ID + `"`} {
		if !strings.Contains(list.body, want) {
			t.Errorf("the campaign list lacks %q", want)
		}
	}
	page := admin.get("/campaigns/" + c.ID)
	for _, want := range []string{`id="chart-update-status"`, `action="/campaigns/` + c.ID + `/pause"`, `action="/campaigns/` + c.ID + `/cancel"`,
		`action="/artifacts/` + art + `/invalidate"`, `data-live-url="/campaigns/` + c.ID + `/live"`, "every device of the release&#39;s products"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the campaign page lacks %q", want)
		}
	}
	if p := admin.get("/campaigns/" + c.ID + "?status=sideways"); p.status != http.StatusOK || !strings.Contains(p.body, "is not an update status") {
		t.Errorf("an unknown status filter: %d, want the page with a message", p.status)
	}
	if p := admin.get("/campaigns/" + c.ID + "?cursor=garbage"); p.status != http.StatusOK {
		t.Errorf("a bad cursor: %d, want the first page", p.status)
	}
	// The live part is the page's changing part alone.
	live := admin.get("/campaigns/" + c.ID + "/live")
	if strings.Contains(live.body, "<html") || !strings.Contains(live.body, `data-live-part="summary"`) || !strings.Contains(live.body, `id="campaign-devices"`) {
		t.Errorf("the live part:\n%s", live.body)
	}

	// The form reads what it can and says what it cannot, by field.
	admin.get("/campaigns/new")
	p := admin.post("/campaigns", url.Values{"name": {"bad"}, "artifact_id": {art}, "canary": {"a few"}, "wave_interval": {"forever"},
		"max_failure_ratio": {"150"}, "window_start": {"02:00"}})
	if p.status != http.StatusUnprocessableEntity {
		t.Fatalf("a bad form: %d, want 422", p.status)
	}
	for _, want := range []string{`id="err-canary"`, `id="err-wave_interval"`, `id="err-max_failure_ratio"`, `id="err-maintenance_window"`,
		`value="bad"`, `value="forever"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the refused form lacks %q", want)
		}
	}
	// An error of the update service goes next to its field too.
	p = admin.post("/campaigns", url.Values{"name": {"  "}, "artifact_id": {art}})
	if p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, `id="err-name"`) {
		t.Fatalf("an empty name: %d, want 422 with the name's error", p.status)
	}

	// Another tenant does not see it.
	other := newClient(t, srv.URL)
	other.signIn(w.adminB, password)
	for _, path := range []string{"/campaigns/" + c.ID, "/campaigns/" + c.ID + "/live"} {
		if p := other.get(path); p.status != http.StatusNotFound {
			t.Errorf("tenant B GET %s: %d, want 404", path, p.status)
		}
	}
	other.get("/campaigns")
	if p := other.post("/campaigns/"+c.ID+"/pause", nil); p.status != http.StatusNotFound {
		t.Errorf("tenant B pausing A's campaign: %d, want 404", p.status)
	}
	if got, _ := srv.Platform.OTA.GetCampaign(t.Context(), w.a.ID, c.ID); got.State != model.CampaignRunning {
		t.Fatalf("tenant B changed A's campaign to %s", got.State)
	}

	// A viewer reads but may not act.
	viewer := newClient(t, srv.URL)
	viewer.signIn(w.viewerA, password)
	if p := viewer.get("/campaigns/new"); p.status != http.StatusForbidden {
		t.Errorf("a viewer opening the form: %d, want 403", p.status)
	}
	vp := viewer.get("/campaigns/" + c.ID)
	if vp.status != http.StatusOK || strings.Contains(vp.body, "/pause\"") || strings.Contains(vp.body, "/invalidate\"") {
		t.Errorf("a viewer's campaign page: %d, with action forms: %v", vp.status, strings.Contains(vp.body, "/pause\""))
	}
}

// TestCampaignResumeRearms: a campaign whose failure gate paused it shows
// why, and resuming it through the page's form says the gates were
// re-armed and from which counts; the page then shows the baseline. A
// campaign paused by hand while healthy resumes without one.
func TestCampaignResumeRearms(t *testing.T) {
	w := newWalls(t)
	srv, tid := w.srv, w.a.ID
	ctx := t.Context()
	for range 3 {
		srv.CreateDevice(t, tid, w.devA.ProductID, testserver.DeviceOpts{State: model.StateActive})
	}
	vendor := srv.NewVendor(t, tid, w.a.Admin.Secret)
	art := vendor.Release(t, w.devA.ProductID, "2.0.0", []byte("firmware 2.0.0"))
	create := func(name string) model.Campaign {
		var c model.Campaign
		srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/campaigns", Key: w.a.Admin.Secret,
			Body: map[string]any{"name": name, "artifact_id": art, "query": map[string]any{}, "wave_size": 2, "success_ratio": 1.0,
				"max_failure_ratio": 0.4, "pause_on_failure": true, "require_consent": false}}).Into(t, &c)
		return c
	}
	admin := newClient(t, srv.URL)
	admin.signIn(w.adminA, password)
	resume := func(id string) (msg string, page page) {
		t.Helper()
		admin.get("/campaigns/" + id)
		page = admin.follow(admin.post("/campaigns/"+id+"/resume", nil))
		return flash(page), page
	}
	reasonRe := regexp.MustCompile(`(?s)<p class="reason[^"]*"[^>]*><strong>([^<]*)</strong> <span id="campaign-reason">([^<]*)</span>`)
	rearmedRe := regexp.MustCompile(`<p class="rearmed" id="campaign-rearmed">([^<]*)</p>`)

	t.Run("tripped", func(t *testing.T) {
		c := create("tripping")
		first := waitCampaignDevices(t, srv, tid, c.ID, 2)
		for i, st := range []model.UpdateStatus{model.UpdateSucceeded, model.UpdateFailed} {
			if err := srv.Platform.OTA.RecordReport(ctx, tid, first[i].DeviceID, &ota.DeviceReport{Status: st, ArtifactID: art, Error: "disk full"}); err != nil {
				t.Fatal(err)
			}
		}
		waitCampaign(t, srv, tid, c.ID, "paused by its failure gate", func(c *model.Campaign) bool { return c.State == model.CampaignPaused })
		page := admin.get("/campaigns/" + c.ID)
		m := reasonRe.FindStringSubmatch(page.body)
		if m == nil || m[1] != "Why it paused:" || !strings.Contains(m[2], "failure threshold crossed: 1 of 2") {
			t.Fatalf("the paused campaign's reason: %q", m)
		}
		if rearmedRe.MatchString(page.body) {
			t.Fatal("a baseline shown before any resume")
		}
		if list := admin.get("/campaigns"); !strings.Contains(list.body, `<span class="cstate-reason">failure threshold crossed`) {
			t.Error("the campaign list does not say why it paused")
		}

		msg, page := resume(c.ID)
		if want := "ok: Campaign “tripping”: Resumed with the gates re-armed: 1 failure of 2 devices told so far is accepted, " +
			"wave 1 counts as passed, and the failure gate counts only from here."; msg != want {
			t.Fatalf("resuming says %q, want %q", msg, want)
		}
		m = rearmedRe.FindStringSubmatch(page.body)
		if want := "Gates re-armed at wave 1: 1 failure of 2 devices accepted; the failure gate counts from there."; m == nil || m[1] != want {
			t.Fatalf("the re-armed line: %q, want %q", m, want)
		}
		if reasonRe.MatchString(page.body) {
			t.Error("a running campaign still shows the pause reason")
		}
		// The live part shows it too.
		if live := admin.get("/campaigns/" + c.ID + "/live"); !rearmedRe.MatchString(live.body) {
			t.Error("the live part lacks the re-armed line")
		}

		// Wave 2 trips again; the second resume moves the baseline on.
		waitCampaign(t, srv, tid, c.ID, "wave 2 started", func(c *model.Campaign) bool { return c.Wave >= 2 })
		second := campaignDevices(t, srv, tid, c.ID, model.UpdateNotified)
		if len(second) != 2 {
			t.Fatalf("%d devices notified in wave 2, want 2", len(second))
		}
		for _, d := range second {
			if err := srv.Platform.OTA.RecordReport(ctx, tid, d.DeviceID, &ota.DeviceReport{Status: model.UpdateRolledBack, ArtifactID: art, Error: "health check"}); err != nil {
				t.Fatal(err)
			}
		}
		waitCampaign(t, srv, tid, c.ID, "paused again", func(c *model.Campaign) bool { return c.State == model.CampaignPaused })
		msg, page = resume(c.ID)
		if want := "2 failures of 2 devices told since the gates were last re-armed are accepted (3 failures of 4 devices in all), wave 2 counts as passed"; !strings.Contains(msg, want) {
			t.Fatalf("the second resume says %q, want %q in it", msg, want)
		}
		if m := rearmedRe.FindStringSubmatch(page.body); m == nil || m[1] != "Gates re-armed at wave 2: 3 failures of 4 devices accepted; the failure gate counts from there." {
			t.Fatalf("the re-armed line after the second resume: %q", m)
		}
		// The page shows what the store holds (every device has finished, so
		// the campaign may have completed meanwhile).
		got, err := srv.Platform.OTA.GetCampaign(ctx, tid, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == model.CampaignPaused || got.GateFailed != 3 || got.GateTold != 4 || got.GateWave != 2 {
			t.Fatalf("after the second resume: %s, baseline %d/%d wave %d", got.State, got.GateFailed, got.GateTold, got.GateWave)
		}
	})

	t.Run("paused by hand", func(t *testing.T) {
		c := create("by hand")
		waitCampaignDevices(t, srv, tid, c.ID, 2)
		admin.get("/campaigns/" + c.ID)
		admin.post("/campaigns/"+c.ID+"/pause", url.Values{"reason": {"checking the field first"}})
		page := admin.get("/campaigns/" + c.ID)
		if m := reasonRe.FindStringSubmatch(page.body); m == nil || m[2] != "checking the field first" {
			t.Fatalf("the reason of a pause by hand: %q", m)
		}
		msg, page := resume(c.ID)
		if !strings.Contains(msg, "Resumed. The failure gate was within its threshold, so the gates were not re-armed.") {
			t.Fatalf("resuming a healthy campaign says %q", msg)
		}
		if rearmedRe.MatchString(page.body) {
			t.Error("a healthy resume shows a baseline")
		}
	})
}

// waitCampaignDevices steps the scheduler until n of the campaign's
// devices were told, and returns them.
func waitCampaignDevices(t *testing.T, srv *testserver.Server, tid, id string, n int) []model.CampaignDevice {
	t.Helper()
	waitCampaign(t, srv, tid, id, fmt.Sprintf("%d devices told", n), func(*model.Campaign) bool {
		return len(campaignDevices(t, srv, tid, id, model.UpdateNotified)) >= n
	})
	return campaignDevices(t, srv, tid, id, model.UpdateNotified)
}
