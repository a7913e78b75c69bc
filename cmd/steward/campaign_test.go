package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// TestCampaignWithAgents runs a real server and four real `steward agent`
// processes and rolls 2.0.0 out in a campaign: a canary of two healthy
// agents, then waves of one. The third agent's health check fails on
// 2.0.0: it rolls back and says why, the failure ratio crosses the
// threshold, and the campaign aborts on its own — the fourth agent is
// never told and stays on 1.0.0. Every step travels the real way:
// ota/assignment over MQTT, signed metadata and the image over the
// certificate-authenticated device routes, reports on ota/status.
func TestCampaignWithAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	srv := startE2EServer(t)
	bin := srv.bin
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tenantID, api := srv.tenant(t, ctx, "fleet", "enterprise")
	var product struct{ ID string }
	must(api.Do(ctx, "POST", "/api/v1/products", map[string]string{"vendor": "Acme", "model": "Gateway"}, &product))

	common := []string{"--server", srv.est, "--mqtt", srv.mqtt, "--ca", srv.caFile(), "--telemetry-interval", "5s", "--poll", "1h",
		"--security-interval", "2s"}
	var agents []*agentProc
	for i := range 4 {
		var tok struct{ Token string }
		must(api.Do(ctx, "POST", "/api/v1/bootstrap-tokens", map[string]any{"product_id": product.ID, "name": "campaign e2e"}, &tok))
		args := append([]string{"--serial", fmt.Sprintf("GW-%04d", i+1), "--bootstrap-token", tok.Token}, common...)
		if i == 2 {
			args = append(args, "--health-cmd", `test "$STEWARD_NEW_VERSION" != 2.0.0 || { echo "service did not come up"; exit 1; }`)
		}
		// Started one after the other: device IDs grow, and a campaign
		// takes the lowest first.
		agents = append(agents, startAgent(t, bin, fmt.Sprintf("gw%d", i+1), args...))
	}
	for _, a := range agents {
		eventually(t, 30*time.Second, a.name+" is online", func() bool {
			var d model.Device
			return api.Do(ctx, "GET", "/api/v1/devices/"+a.deviceID, nil, &d) == nil && d.LastSeen != nil
		})
	}

	// The vendor signs 2.0.0 offline; the operator starts the campaign.
	v := srv.newVendor(t, tenantID, product.ID)
	art := v.release(t, "2.0.0", bytes.Repeat([]byte("steward firmware 2.0.0 "), 50_000))
	apiFlags := v.apiFlags

	start := time.Now()
	var c model.Campaign
	out := run(t, bin, append([]string{"ota", "campaign", "create", "--name", "gateways 2.0.0", "--artifact", art, "--product", product.ID,
		"--canary", "2", "--wave-size", "1", "--success", "1", "--max-failure", "0.25", "--json"}, apiFlags...)...)
	must(json.Unmarshal([]byte(out), &c))
	if c.Total != 4 {
		t.Fatalf("campaign targets %d devices, want 4", c.Total)
	}
	id := c.ID
	eventually(t, 120*time.Second, "the campaign aborts", func() bool {
		c = model.Campaign{} // a fresh value: decoding merges into a map
		return api.Do(ctx, "GET", "/api/v1/campaigns/"+id, nil, &c) == nil && c.State == model.CampaignAborted
	})
	t.Logf("campaign start to abort: %s (%s)", time.Since(start).Round(time.Millisecond), c.Reason)
	if !strings.Contains(c.Reason, "failure threshold") || c.Counts[model.UpdateSucceeded] != 2 || c.Counts[model.UpdateRolledBack] != 1 {
		t.Errorf("aborted campaign: %+v", c)
	}
	if out := run(t, bin, append([]string{"ota", "campaign", "show", id}, apiFlags...)...); !strings.Contains(out, "state aborted") ||
		!strings.Contains(out, "rolled_back") {
		t.Errorf("campaign show: %s", out)
	}
	// The agents' security reports (read from this machine's /proc) are
	// accepted by the platform's strict checks.
	for _, a := range agents {
		eventually(t, 30*time.Second, a.name+" sends a security report", func() bool {
			return strings.Contains(a.out.String(), "security report sent")
		})
		if out := a.out.String(); strings.Contains(out, "the platform refused a message") {
			t.Errorf("%s: a message was refused:\n%s", a.name, out)
		}
	}
	var devs struct{ Items []model.CampaignDevice }
	must(api.Do(ctx, "GET", "/api/v1/campaigns/"+c.ID+"/devices", nil, &devs))
	byDevice := map[string]model.CampaignDevice{}
	for _, d := range devs.Items {
		byDevice[d.DeviceID] = d
	}
	for i, a := range agents {
		cd := byDevice[a.deviceID]
		var d model.Device
		must(api.Do(ctx, "GET", "/api/v1/devices/"+a.deviceID, nil, &d))
		slot, version, why := a.slots(t)
		switch i {
		case 0, 1: // the canary
			if cd.Wave != 1 || cd.Status != model.UpdateSucceeded || version != "2.0.0" || slot != "b" || d.FirmwareVersion != "2.0.0" {
				t.Errorf("%s: %+v, slot %s %s, registry %s", a.name, cd, slot, version, d.FirmwareVersion)
			}
		case 2: // the failing one, alone in wave 2
			if cd.Wave != 2 || cd.Status != model.UpdateRolledBack || !strings.Contains(cd.Detail, "service did not come up") ||
				version != "1.0.0" || !strings.Contains(why, "health check of 2.0.0 failed") || d.FirmwareVersion == "2.0.0" {
				t.Errorf("%s: %+v, slot %s %s (%s), registry %s", a.name, cd, slot, version, why, d.FirmwareVersion)
			}
		case 3: // never told
			if cd.Wave != 0 || cd.Status != model.UpdateCancelled || version != "1.0.0" || strings.Contains(a.out.String(), "installing update") {
				t.Errorf("%s: %+v, slot %s %s", a.name, cd, slot, version)
			}
		}
	}
}

func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want model.MaintenanceWindow
		err  string
	}{
		{in: "02:00-05:00", want: model.MaintenanceWindow{Start: "02:00", End: "05:00"}},
		{in: "22:00-04:00@Europe/Berlin", want: model.MaintenanceWindow{Start: "22:00", End: "04:00", TimeZone: "Europe/Berlin"}},
		{in: "01:00-03:00@Europe/Berlin/mon,tue", want: model.MaintenanceWindow{Start: "01:00", End: "03:00", TimeZone: "Europe/Berlin",
			Days: []string{"mon", "tue"}}},
		{in: "01:00-03:00/sat,sun", want: model.MaintenanceWindow{Start: "01:00", End: "03:00", Days: []string{"sat", "sun"}}},
		{in: "01:00", err: "no START-END"},
		{in: "25:00-03:00", err: "start"},
		{in: "01:00-03:00@Mars/Olympus", err: "time zone"},
		{in: "01:00-03:00/someday", err: "day"},
	} {
		w, err := parseWindow(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one naming %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(*w) != fmt.Sprint(tc.want) {
			t.Errorf("%q: %+v %v, want %+v", tc.in, w, err, tc.want)
		}
	}
}
