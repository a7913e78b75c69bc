package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestFindingsPage lists a tenant's findings by severity, suppresses one
// with a reason and an expiry, and refuses a viewer's suppression.
func TestFindingsPage(t *testing.T) {
	w := newWalls(t)
	ctx := context.Background()
	res := w.srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: testserver.APIPrefix + "/products",
		Key: w.a.Admin.Secret, Body: map[string]any{"vendor": "Old", "model": "Relic", "end_of_support": "2020-01-01T00:00:00Z"}})
	dev := w.srv.CreateDevice(t, w.a.ID, res.Str("id"), testserver.DeviceOpts{Serial: "OLD-1", State: model.StateActive})
	if _, err := w.srv.Platform.Defender.Run(ctx, "system", w.a.ID, nil); err != nil {
		t.Fatal(err)
	}
	fs, _, err := w.srv.Platform.Store.ListFindings(ctx, w.a.ID, model.FindingQuery{ResourceID: dev.ID, Check: "device.end_of_support"},
		store.ListOptions{Limit: 10})
	if err != nil || len(fs) != 1 {
		t.Fatalf("end-of-support findings for the device: %d (%v), want 1", len(fs), err)
	}
	fid := fs[0].ID

	viewer := newClient(t, w.srv.URL)
	viewer.signIn(w.viewerA, password)
	p := viewer.get("/findings")
	if p.status != http.StatusOK || !strings.Contains(p.body, dev.ID) || strings.Contains(p.body, `/suppress"`) {
		t.Fatalf("a viewer's findings page: %d, lists the device %v, has a suppress form %v", p.status,
			strings.Contains(p.body, dev.ID), strings.Contains(p.body, `/suppress"`))
	}
	if p := viewer.post("/findings/"+fid+"/suppress", url.Values{"reason": {"no"}, "days": {"7"}}); p.status != http.StatusForbidden {
		t.Fatalf("a viewer's suppression: %d, want 403", p.status)
	}
	if p := viewer.get("/devices/" + dev.ID); !strings.Contains(p.body, `id="device-findings"`) || !strings.Contains(p.body, fs[0].Title) {
		t.Fatal("the device page does not list the device's finding")
	}

	admin := newClient(t, w.srv.URL)
	admin.signIn(w.adminA, password)
	if p := admin.get("/findings?min_severity=critical"); strings.Contains(p.body, dev.ID) != (fs[0].Severity == model.SeverityCritical) {
		t.Fatalf("the severity filter (finding is %s) got it wrong", fs[0].Severity)
	}
	admin.get("/findings")
	if got := flash(admin.follow(admin.post("/findings/"+fid+"/suppress", url.Values{"reason": {""}, "days": {"7"}}))); !strings.Contains(got, "Give a reason") {
		t.Fatalf("suppressing without a reason: %q", got)
	}
	if got := flash(admin.follow(admin.post("/findings/"+fid+"/suppress", url.Values{"reason": {"replacement ordered"}, "days": {"30"}}))); !strings.HasPrefix(got, "ok: Suppressed") {
		t.Fatalf("suppressing: %q", got)
	}
	if p := admin.get("/findings"); strings.Contains(p.body, dev.ID) {
		t.Fatal("a suppressed finding is still listed as open")
	}
	if p := admin.get("/findings?suppressed=only"); !strings.Contains(p.body, "replacement ordered") {
		t.Fatal("the suppressed list does not show the suppression's reason")
	}
}
