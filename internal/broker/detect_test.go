package broker_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// TestCompromisedDeviceQuarantined: a device behaves for a while, then
// floods messages, reports outbound destinations it never used and a
// port-scan-like set of new listening ports. The detector on the node it
// is connected to raises alarms and the tenant's policy quarantines it
// automatically; the time from the first bad message to the enforced ACL
// (seen by the device as a refused publish) is printed. The quarantined
// device still gets its update and may report on it, and nothing else.
func TestCompromisedDeviceQuarantined(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	id := dev.DeviceID
	p := func(rest string) string { return "d/" + id + "/" + rest }
	e.must(t, http.StatusOK, http.MethodPut, api+"/security/settings", map[string]any{
		"stale_after_days": 7, "max_tenant_admin_keys": 3, "unused_key_days": 90, "flow_window_hours": 24,
		"detection": map[string]any{
			"messages_per_minute": 100, "bytes_per_minute": 1 << 20, "auth_failures_per_5min": 10, "connects_per_10min": 20,
			"new_sources_per_hour": 5, "new_listening_ports": 3, "new_outbound_destinations": 2, "process_count_jump": 50,
			"learning_minutes": 0, "sigma": 6, "rate_floor_per_minute": 120, "clear_after_minutes": 10,
			"mitigations": map[string]any{"message_rate": "quarantine", "new_listening_ports": "quarantine",
				"new_outbound_destinations": "quarantine"},
		}})
	e.must(t, http.StatusOK, http.MethodPost, api+"/devices/"+id+"/transitions", map[string]any{"to": "active", "reason": "test"})
	w := e.watch(t, "device.mitigated", "alarm.raised")

	c := e.deviceV5(t, dev)
	c.subscribe(t, p("ota/#"), p("commands/+"), p("errors"))

	// Well-behaved: a first report (its baseline) and a little telemetry.
	c.mustPublish(t, p("security/metrics"), 1, `{"listening_ports":[{"proto":"tcp","port":22}],
		"outbound":[{"proto":"tcp","host":"updates.example.com","port":443}],"process_count":41}`)
	for i := range 5 {
		c.mustPublish(t, p("telemetry"), 1, fmt.Sprintf(`{"temperature": %d}`, 20+i))
	}
	c.mustPublish(t, p("security/metrics"), 1, `{"listening_ports":[{"proto":"tcp","port":22}],"process_count":42}`)
	// Bad reports are refused with the reason (in the PUBACK, and on
	// errors at most once a second), and change nothing.
	for i, bad := range []string{`{"listening_ports":[{"proto":"tcp","port":70000}]}`, `{"outbound":"everywhere"}`, `{}`, `[1]`} {
		pr, _ := c.publish(t, p("security/metrics"), 1, bad)
		if pr == nil || pr.ReasonCode != 0x99 || pr.Properties == nil || pr.Properties.ReasonString == "" {
			t.Fatalf("bad security metrics %s: PUBACK %+v, want 0x99 with a reason", bad, pr)
		}
		if i == 0 {
			if m := next(t, c.inbox, p("errors")); !strings.Contains(string(m.payload), "70000 is not a port") {
				t.Fatalf("error report: %s", m.payload)
			}
		}
	}
	var alarms []model.Alarm
	e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/alarms", nil).Into(t, &struct {
		Items *[]model.Alarm `json:"items"`
	}{&alarms})
	if len(alarms) != 0 {
		t.Fatalf("alarms on a well-behaved device: %+v", alarms)
	}

	// Compromised: a port scan report, new destinations, then a flood.
	var scan, dests []string
	for port := 2000; port < 2040; port++ {
		scan = append(scan, fmt.Sprintf(`{"proto":"tcp","port":%d}`, port))
	}
	for i := 1; i <= 6; i++ {
		dests = append(dests, fmt.Sprintf(`{"proto":"tcp","host":"203.0.113.%d","port":23}`, i))
	}
	report := `{"listening_ports":[{"proto":"tcp","port":22},` + strings.Join(scan, ",") + `],"outbound":[` +
		strings.Join(dests, ",") + `],"process_count":97}`
	start := time.Now()
	if _, err := c.publish(t, p("security/metrics"), 0, report); err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		if _, err := c.publish(t, p("telemetry"), 0, fmt.Sprintf(`{"x": %d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	var enforced time.Duration
	for probes := 0; ; probes++ {
		pr, _ := c.publish(t, p("telemetry"), 1, `{"probe": 1}`)
		if pr != nil && pr.ReasonCode == 0x87 {
			enforced = time.Since(start)
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("not quarantined within 15s (%d probes)", probes)
		}
	}
	t.Logf("first bad message → quarantine ACL enforced (refused publish seen by the device): %v", enforced)
	fmt.Printf("detect: first bad message to enforced quarantine ACL: %.1f ms\n", float64(enforced.Microseconds())/1000)

	mit := w.wait(t, "device.mitigated", `"action":"quarantine"`, `"result":"applied"`, id)
	var d model.Device
	e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id, nil).Into(t, &d)
	if d.State != model.StateQuarantined {
		t.Fatalf("device is %s", d.State)
	}
	var kinds []string
	eventually(t, "four alarms", func() bool {
		alarms = nil
		e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/alarms", nil).Into(t, &struct {
			Items *[]model.Alarm `json:"items"`
		}{&alarms})
		kinds = kinds[:0]
		for _, a := range alarms {
			kinds = append(kinds, string(a.Kind))
		}
		slices.Sort(kinds)
		return len(kinds) >= 4
	})
	if want := []string{"message_rate", "new_listening_ports", "new_outbound_destinations", "process_count_jump"}; !slices.Equal(kinds, want) {
		t.Errorf("alarms %v, want %v", kinds, want)
	}
	applied := 0
	for _, a := range alarms {
		if a.Kind == model.AlarmProcessJump { // not mitigated by this tenant: notified only
			if a.Mitigation != nil {
				t.Errorf("process_count_jump mitigated: %+v", a.Mitigation)
			}
			continue
		}
		if a.State != model.AlarmActive || a.Mitigation == nil {
			t.Errorf("alarm %s: %+v", a.Kind, a)
			continue
		}
		if a.Mitigation.Result == "applied" {
			applied++
			if !strings.Contains(string(mit.Data), a.ID) {
				t.Errorf("device.mitigated names another alarm: %s", mit.Data)
			}
		}
	}
	if applied != 1 {
		t.Errorf("%d quarantines applied, want 1 (the others find the device quarantined)", applied)
	}
	// The new destinations were recorded as observed flows too.
	flows := e.must(t, http.StatusOK, http.MethodGet, api+"/devices/"+id+"/flows", nil).Items()
	if len(flows) != 7 {
		t.Errorf("observed flows: %d, want 7 (1 before, 6 new)", len(flows))
	}

	// Quarantined: the update still arrives and may be reported on.
	vendor := e.srv.NewVendor(t, e.ten.ID, e.ten.Admin.Secret)
	art := vendor.Release(t, e.product.ID, "2.0.1", []byte("fixed image"))
	e.must(t, http.StatusOK, http.MethodPut, api+"/devices/"+id+"/ota/assignment", map[string]any{"artifact_id": art})
	m := next(t, c.inbox, p("ota/assignment"))
	if !strings.Contains(string(m.payload), art) {
		t.Fatalf("assignment: %s", m.payload)
	}
	if pr, err := c.publish(t, p("ota/status"), 1, `{"status": "downloading", "artifact_id": "`+art+`", "bytes": 1, "total": 11}`); err != nil || pr.ReasonCode != 0 {
		t.Fatalf("ota/status while quarantined: %v %+v", err, pr)
	}
	// … and nothing else.
	for _, topic := range []string{"telemetry", "security/metrics", "twin/reported"} {
		if pr, _ := c.publish(t, p(topic), 1, `{"process_count": 1}`); pr == nil || pr.ReasonCode != 0x87 {
			t.Errorf("publish to %s while quarantined: %+v, want 0x87", topic, pr)
		}
	}
	if r := c.subscribe(t, p("commands/+")); r[0] != 0x87 {
		t.Errorf("subscribing to commands while quarantined: 0x%02x", r[0])
	}
	e.must(t, http.StatusCreated, http.MethodPost, api+"/devices/"+id+"/commands", map[string]any{"name": "reboot"})
	deadline := time.After(time.Second)
	for done := false; !done; {
		select {
		case m := <-c.inbox:
			if strings.Contains(m.topic, "/commands/") {
				t.Fatalf("a quarantined device got a command: %s", m.topic)
			}
		case <-deadline:
			done = true
		}
	}

	// Release is the ordinary transition back to active.
	e.must(t, http.StatusOK, http.MethodPost, api+"/devices/"+id+"/transitions", map[string]any{"to": "active", "reason": "reflashed"})
	select {
	case dc := <-c.disconnect:
		if dc.ReasonCode != 0x98 {
			t.Fatalf("release: DISCONNECT 0x%02x", dc.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no DISCONNECT after the release")
	}
}

// TestChurningDeviceDisconnected: a tenant that answers connection churn
// with a disconnect; the connection that crosses the threshold is ended
// (DISCONNECT 0x98) and the device may connect again.
func TestChurningDeviceDisconnected(t *testing.T) {
	e := newEnv(t)
	dev := e.device(t)
	e.must(t, http.StatusOK, http.MethodPut, api+"/security/settings", map[string]any{
		"stale_after_days": 7, "max_tenant_admin_keys": 3, "unused_key_days": 90, "flow_window_hours": 24,
		"detection": map[string]any{
			"messages_per_minute": 1000, "bytes_per_minute": 1 << 20, "auth_failures_per_5min": 10, "connects_per_10min": 2,
			"new_sources_per_hour": 5, "new_listening_ports": 1, "new_outbound_destinations": 3, "process_count_jump": 50,
			"learning_minutes": 0, "sigma": 6, "rate_floor_per_minute": 120, "clear_after_minutes": 10,
			"mitigations": map[string]any{"connection_churn": "disconnect"},
		}})
	w := e.watch(t, "device.mitigated")
	var last *v5
	for range 3 {
		last = e.deviceV5(t, dev)
	}
	select {
	case d := <-last.disconnect:
		if d.ReasonCode != 0x98 {
			t.Fatalf("DISCONNECT 0x%02x, want 0x98", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the churning device was not disconnected")
	}
	w.wait(t, "device.mitigated", `"action":"disconnect"`, `"result":"applied"`, dev.DeviceID)
	// It may come back: a disconnect is not a quarantine.
	e.deviceV5(t, dev).mustPublish(t, "d/"+dev.DeviceID+"/telemetry", 1, `{"x": 1}`)
}
