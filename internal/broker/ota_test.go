package broker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/model"
)

// TestUpdateOverMQTT: a device subscribed to ota/# hears of its assignment
// at once and again after reconnecting; its reports on ota/status move the
// assignment on, bad reports are refused with the reason, and a withdrawn
// assignment is announced as cancelled.
func TestUpdateOverMQTT(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	id := dev.DeviceID
	p := func(rest string) string { return "d/" + id + "/" + rest }
	vendor := e.srv.NewVendor(t, e.ten.ID, e.ten.Admin.Secret)
	art := vendor.Release(t, e.product.ID, "2.0.0", []byte("image 2.0.0"))

	c := e.deviceV5(t, dev)
	c.subscribe(t, p("ota/#"), p("errors"))
	e.must(t, http.StatusOK, http.MethodPut, api+"/devices/"+id+"/ota/assignment", map[string]any{"artifact_id": art})
	m := next(t, c.inbox, p("ota/assignment"))
	var got broker.AssignmentMessage
	if err := json.Unmarshal(m.payload, &got); err != nil || got.ArtifactID != art || got.Version != "2.0.0" || got.DirectorVersion != 1 || got.Cancelled {
		t.Fatalf("assignment message: %s (%v)", m.payload, err)
	}

	// A reconnecting device hears it again.
	c2 := e.deviceV5(t, dev)
	c2.subscribe(t, p("ota/assignment"), p("errors"))
	next(t, c2.inbox, p("ota/assignment"))

	for _, tc := range []struct {
		name, payload string
		code          byte
	}{
		{"not JSON", `downloading`, 0x99},
		{"unknown member", `{"status": "downloading", "artifact_id": "` + art + `", "percent": 5}`, 0x99},
		{"status a device does not report", `{"status": "pending", "artifact_id": "` + art + `"}`, 0x99},
		{"no artifact", `{"status": "downloading"}`, 0x99},
		{"another artifact", `{"status": "downloading", "artifact_id": "art_other"}`, 0x80},
		{"bytes beyond total", `{"status": "downloading", "artifact_id": "` + art + `", "bytes": 9, "total": 3}`, 0x99},
	} {
		pr, _ := c2.publish(t, p("ota/status"), 1, tc.payload)
		if pr == nil || pr.ReasonCode != tc.code {
			t.Errorf("%s: PUBACK %+v, want 0x%02x", tc.name, pr, tc.code)
		}
	}
	// The reason also goes to d/{id}/errors (at most one report a second).
	if e := decode(t, next(t, c2.inbox, p("errors")).payload); e["topic"] != p("ota/status") || e["reason"] == "" {
		t.Errorf("error report: %v", e)
	}
	as, err := e.srv.Platform.Store.GetAssignment(context.Background(), e.ten.ID, id)
	if err != nil || as.Status != model.UpdatePending {
		t.Fatalf("refused reports changed the assignment: %+v %v", as, err)
	}

	w := e.watch(t, "ota.device_status")
	c2.mustPublish(t, p("ota/status"), 1, `{"status": "downloading", "artifact_id": "`+art+`", "bytes": 10, "total": 11}`)
	w.wait(t, "ota.device_status", `"status":"downloading"`)
	c2.mustPublish(t, p("ota/status"), 1, `{"status": "succeeded", "artifact_id": "`+art+`", "running_version": "2.0.0"}`)
	w.wait(t, "ota.device_status", `"status":"succeeded"`)
	var d model.Device
	e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id, nil).Into(t, &d)
	if d.FirmwareVersion != "2.0.0" {
		t.Errorf("firmware after a succeeded update: %q", d.FirmwareVersion)
	}

	// A new release, assigned then withdrawn by an invalidation.
	art3 := vendor.Release(t, e.product.ID, "3.0.0", []byte("image 3.0.0"))
	e.must(t, http.StatusOK, http.MethodPut, api+"/devices/"+id+"/ota/assignment", map[string]any{"artifact_id": art3})
	next(t, c2.inbox, p("ota/assignment"))
	e.must(t, http.StatusOK, http.MethodPost, api+"/artifacts/"+art3+"/invalidate", map[string]any{"reason": "bad radio driver"})
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := next(t, c2.inbox, p("ota/assignment"))
		var w broker.AssignmentMessage
		json.Unmarshal(m.payload, &w)
		if w.Cancelled && w.ArtifactID == art3 && w.Reason != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cancellation: last %s", m.payload)
		}
	}
}
