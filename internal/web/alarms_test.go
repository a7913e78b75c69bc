package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/model"
)

// TestAlarmsPage lists a tenant's open alarms (not another tenant's), shows
// them on the device page, lets an admin acknowledge one with a note and
// refuses a viewer's acknowledgement.
func TestAlarmsPage(t *testing.T) {
	w := newWalls(t)
	ctx := context.Background()
	raise := func(tenantID, deviceID string, kind model.AlarmKind) *model.Alarm {
		a, err := w.srv.Platform.Alarms.Raise(ctx, detect.Decision{Raise: true, TenantID: tenantID, DeviceID: deviceID, Kind: kind,
			Title: "listening on 3 port(s) outside its baseline", Evidence: map[string]any{"new_ports": []string{"tcp/4444"}}})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	mine := raise(w.a.ID, w.devA.ID, model.AlarmNewListeningPorts)
	theirs := raise(w.b.ID, w.devB.ID, model.AlarmMessageRate)

	viewer := newClient(t, w.srv.URL)
	viewer.signIn(w.viewerA, password)
	p := viewer.get("/alarms")
	if p.status != http.StatusOK || !strings.Contains(p.body, w.devA.ID) || strings.Contains(p.body, theirs.ID) ||
		strings.Contains(p.body, w.devB.ID) || strings.Contains(p.body, "/acknowledge\"") {
		t.Fatalf("a viewer's alarms page: %d, lists the device %v, the other tenant's %v, has an acknowledge form %v", p.status,
			strings.Contains(p.body, w.devA.ID), strings.Contains(p.body, w.devB.ID), strings.Contains(p.body, "/acknowledge\""))
	}
	if p := viewer.post("/alarms/"+mine.ID+"/acknowledge", url.Values{"note": {"no"}}); p.status != http.StatusForbidden {
		t.Fatalf("a viewer's acknowledgement: %d, want 403", p.status)
	}
	if p := viewer.get("/devices/" + w.devA.ID); !strings.Contains(p.body, `id="device-alarms"`) || !strings.Contains(p.body, mine.Title) {
		t.Fatal("the device page does not list the device's alarm")
	}

	admin := newClient(t, w.srv.URL)
	admin.signIn(w.adminA, password)
	if p := admin.get("/alarms?kind=message_rate"); strings.Contains(p.body, mine.ID) {
		t.Fatal("the kind filter lists an alarm of another kind")
	}
	admin.get("/alarms")
	if got := flash(admin.follow(admin.post("/alarms/"+mine.ID+"/acknowledge", url.Values{"note": {"installer's debug port"}}))); !strings.HasPrefix(got, "ok: Acknowledged") {
		t.Fatalf("acknowledging: %q", got)
	}
	if got := flash(admin.follow(admin.post("/alarms/"+mine.ID+"/acknowledge", url.Values{}))); !strings.Contains(got, "already acknowledged") {
		t.Fatalf("acknowledging twice: %q", got)
	}
	if p := admin.get("/alarms?state=acknowledged"); !strings.Contains(p.body, "installer&#39;s debug port") {
		t.Fatal("the acknowledged alarm does not show its note")
	}
	if p := admin.post("/alarms/"+theirs.ID+"/acknowledge", url.Values{}); p.status != http.StatusNotFound {
		t.Fatalf("acknowledging another tenant's alarm: %d, want 404", p.status)
	}
}
