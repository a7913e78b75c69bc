package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// TestDeviceUpdateHistory shows the device's update steps from its audit
// trail in plain words, newest first, and nothing of another device's.
func TestDeviceUpdateHistory(t *testing.T) {
	w := newWalls(t)
	ctx := context.Background()
	dev := w.devA.ID
	// The records as the update service writes them: an assignment, the
	// owner's consent and the device's own reports.
	steps := []model.AuditEntry{
		{Actor: "system", Action: "ota.assign", Target: dev, Summary: map[string]any{"device_id": dev, "version": "2.0.0"}},
		{Actor: "user:x", Action: "ota.consent", Target: dev, Summary: map[string]any{"device_id": dev, "consent": "granted", "version": "2.0.0", "campaign_id": "cmp_1"}},
		{Actor: "device:" + dev, Action: "ota.device_status", Target: dev, Summary: map[string]any{"device_id": dev, "version": "2.0.0", "status": "downloading", "from": "pending"}},
		{Actor: "device:" + dev, Action: "ota.device_status", Target: dev, Summary: map[string]any{"device_id": dev, "version": "2.0.0", "status": "rolled_back",
			"from": "rebooting", "detail": "health check failed", "running_version": "1.9.0"}},
		{Actor: "user:x", Action: "device.update", Target: dev, Summary: map[string]any{"name": "not an update"}},
		{Actor: "device:" + w.devB.ID, Action: "ota.device_status", Target: w.devB.ID, Summary: map[string]any{"version": "9.9.9", "status": "succeeded"}},
	}
	for _, e := range steps {
		tenant := w.a.ID
		if e.Target == w.devB.ID {
			tenant = w.b.ID
		}
		if err := w.srv.Platform.Store.Update(ctx, func(tx store.Tx) error { _, err := tx.Audit(ctx, tenant, e); return err }); err != nil {
			t.Fatal(err)
		}
	}
	viewer := newClient(t, w.srv.URL)
	viewer.signIn(w.viewerA, password)
	p := viewer.get("/devices/" + dev)
	if p.status != http.StatusOK {
		t.Fatalf("the device page: %d", p.status)
	}
	_, section, ok := strings.Cut(p.body, `id="update-history"`)
	if !ok {
		t.Fatal("the device page has no update history")
	}
	section, _, _ = strings.Cut(section, "</section>")
	want := []string{
		"Went back from version 2.0.0 to version 1.9.0.", "(health check failed)",
		"Downloading version 2.0.0.",
		"The owner agreed to install version 2.0.0.", `href="/campaigns/cmp_1"`,
		"Update to version 2.0.0 assigned by system.",
	}
	at := 0
	for _, s := range want {
		i := strings.Index(section[at:], s)
		if i < 0 {
			t.Fatalf("the update history lacks %q after position %d (newest first):\n%s", s, at, section)
		}
		at += i + len(s)
	}
	for _, s := range []string{"not an update", "9.9.9"} {
		if strings.Contains(section, s) {
			t.Errorf("the update history shows %q", s)
		}
	}
}
