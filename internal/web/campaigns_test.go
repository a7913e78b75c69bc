package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/model"
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
