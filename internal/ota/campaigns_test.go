package ota_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/platform"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

const api = testserver.APIPrefix

// fleet is a tenant with a product, devices in the field and a signed
// release, on a real server whose scheduler runs on its own.
type fleet struct {
	srv      *testserver.Server
	tn       *testserver.Tenant
	product  string
	devices  []string
	artifact string
	vendor   *testserver.Vendor
}

func eachBackend(t *testing.T, fn func(t *testing.T, srv *testserver.Server)) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			fn(t, testserver.Start(t, testserver.Options{Postgres: backend == "postgres",
				// Steps happen on kicks (reports, changes); the tick is a fallback.
				BeforeStart: func(p *platform.Server) { p.CampaignTick = 200 * time.Millisecond }}))
		})
	}
}

func newFleet(t *testing.T, srv *testserver.Server, kind model.TenantKind, n int, tags ...string) *fleet {
	t.Helper()
	f := &fleet{srv: srv}
	f.tn = &testserver.Tenant{}
	srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/tenants", Key: srv.AdminKey,
		Body: map[string]any{"name": srv.Unique("campaigns"), "kind": kind}}).Into(t, &f.tn.Tenant)
	f.tn.Admin = srv.CreateKey(t, f.tn.ID, model.RoleTenantAdmin)
	key := f.tn.Admin.Secret
	f.product = srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/products", Key: key,
		Body: map[string]any{"vendor": "Acme", "model": srv.Unique("thermostat")}}).Str("id")
	for range n {
		f.devices = append(f.devices, f.addDevice(t, tags...))
	}
	slices.Sort(f.devices)
	f.vendor = srv.NewVendor(t, f.tn.ID, key)
	f.artifact = f.vendor.Release(t, f.product, "2.0.0", []byte("firmware 2.0.0"))
	return f
}

func (f *fleet) addDevice(t *testing.T, tags ...string) string {
	t.Helper()
	key := f.tn.Admin.Secret
	if tags == nil {
		tags = []string{}
	}
	id := f.srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/devices", Key: key,
		Body: map[string]any{"product_id": f.product, "serial": f.srv.Unique("SN"), "firmware_version": "1.0.0", "tags": tags}}).Str("id")
	f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + id + "/transitions", Key: key,
		Body: map[string]any{"to": "claimed", "reason": "in the field"}})
	return id
}

func (f *fleet) svc() *ota.Service { return f.srv.Platform.OTA }

func (f *fleet) create(t *testing.T, body map[string]any) *model.Campaign {
	t.Helper()
	body["artifact_id"] = f.artifact
	if body["name"] == nil {
		body["name"] = "rollout"
	}
	if body["query"] == nil {
		body["query"] = map[string]any{"product_id": f.product}
	}
	var c model.Campaign
	f.srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns", Key: f.tn.Admin.Secret, Body: body}).Into(t, &c)
	return &c
}

func (f *fleet) get(t *testing.T, id string) *model.Campaign {
	t.Helper()
	var c model.Campaign
	f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/campaigns/" + id, Key: f.tn.Admin.Secret}).Into(t, &c)
	return &c
}

func (f *fleet) devicesOf(t *testing.T, id string, status model.UpdateStatus) []model.CampaignDevice {
	t.Helper()
	path := api + "/campaigns/" + id + "/devices?limit=1000"
	if status != "" {
		path += "&status=" + string(status)
	}
	var list struct{ Items []model.CampaignDevice }
	f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: path, Key: f.tn.Admin.Secret}).Into(t, &list)
	return list.Items
}

// waitFor waits until the campaign's devices with status number n.
func (f *fleet) waitFor(t *testing.T, id string, status model.UpdateStatus, n int) []model.CampaignDevice {
	t.Helper()
	var got []model.CampaignDevice
	testserver.Eventually(t, 10*time.Second, func() bool {
		got = f.devicesOf(t, id, status)
		return len(got) == n
	}, "campaign %s: want %d devices %s", id, n, status)
	return got
}

func (f *fleet) waitState(t *testing.T, id string, state model.CampaignState) *model.Campaign {
	t.Helper()
	var c *model.Campaign
	testserver.Eventually(t, 10*time.Second, func() bool {
		c = f.get(t, id)
		return c.State == state
	}, "campaign %s: want state %s", id, state)
	return c
}

// report makes a device report a step, as the broker does for d/{id}/ota/status.
func (f *fleet) report(t *testing.T, device string, s model.UpdateStatus, detail string) {
	t.Helper()
	if err := f.svc().RecordReport(context.Background(), f.tn.ID, device, &ota.DeviceReport{Status: s, ArtifactID: f.artifact, Error: detail}); err != nil {
		t.Fatalf("report %s for %s: %v", s, device, err)
	}
}

func ids(cds []model.CampaignDevice) []string {
	var out []string
	for _, d := range cds {
		out = append(out, d.DeviceID)
	}
	return out
}

// TestCampaignCanaryThenWaves: the canary goes first, each wave waits for
// the one before to pass its gate, and the campaign completes with every
// device on the new version.
func TestCampaignCanaryThenWaves(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFleet(t, srv, model.TenantEnterprise, 7)
		c := f.create(t, map[string]any{"canary": 2, "wave_size": 3, "success_ratio": 1.0, "max_failure_ratio": 0.5})
		if c.Total != 7 || c.State != model.CampaignRunning || c.Version != "2.0.0" {
			t.Fatalf("created: %+v", c)
		}
		done := 0
		for wave, size := range []int{2, 3, 2} {
			told := f.waitFor(t, c.ID, model.UpdateNotified, size)
			for _, d := range told {
				if d.Wave != wave+1 {
					t.Errorf("device %s in wave %d, want %d", d.DeviceID, d.Wave, wave+1)
				}
			}
			// Devices are taken in ID order.
			if got, want := ids(told), f.devices[done:done+size]; !slices.Equal(got, want) {
				t.Errorf("wave %d took %v, want %v", wave+1, got, want)
			}
			// Nothing more is told while this wave has not passed.
			if n := len(f.devicesOf(t, c.ID, model.UpdateNotified)); n != size {
				t.Fatalf("wave %d: %d notified before the gate passed", wave+1, n)
			}
			for _, d := range told {
				f.report(t, d.DeviceID, model.UpdateDownloading, "")
				f.report(t, d.DeviceID, model.UpdateSucceeded, "")
			}
			done += size
		}
		got := f.waitState(t, c.ID, model.CampaignCompleted)
		if got.Counts[model.UpdateSucceeded] != 7 || got.FinishedAt == nil || got.Wave != 3 {
			t.Errorf("completed campaign: %+v", got)
		}
		for _, id := range f.devices {
			var d model.Device
			srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/devices/" + id, Key: f.tn.Admin.Secret}).Into(t, &d)
			if d.FirmwareVersion != "2.0.0" {
				t.Errorf("device %s runs %q after the campaign, want 2.0.0", id, d.FirmwareVersion)
			}
		}
		// A finished assignment serves no metadata any more.
		if _, _, err := f.svc().Bundle(context.Background(), f.tn.ID, f.devices[0], 0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("metadata after success: %v, want not found", err)
		}
	})
}

// TestCampaignAbortsOnFailures: a canary device rolls back, the failure
// ratio crosses the threshold, the campaign aborts, the other canary
// devices' assignments are withdrawn and no wave follows.
func TestCampaignAbortsOnFailures(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFleet(t, srv, model.TenantEnterprise, 6)
		c := f.create(t, map[string]any{"canary": 3, "wave_size": 3, "max_failure_ratio": 0.2})
		canary := f.waitFor(t, c.ID, model.UpdateNotified, 3)
		f.report(t, canary[0].DeviceID, model.UpdateSucceeded, "")
		f.report(t, canary[1].DeviceID, model.UpdateRolledBack, "health check of 2.0.0 failed: exit status 1")
		got := f.waitState(t, c.ID, model.CampaignAborted)
		if got.Reason == "" || got.FinishedAt == nil {
			t.Errorf("aborted campaign without a reason: %+v", got)
		}
		rb := f.devicesOf(t, c.ID, model.UpdateRolledBack)
		if len(rb) != 1 || rb[0].Detail == "" {
			t.Errorf("rolled back devices: %+v", rb)
		}
		// The third canary device was told but had not finished: withdrawn.
		as, err := srv.Platform.Store.GetAssignment(context.Background(), f.tn.ID, canary[2].DeviceID)
		if err != nil || as.Status != model.UpdateCancelled {
			t.Errorf("the unfinished canary's assignment: %+v, %v", as, err)
		}
		if _, _, err := f.svc().Bundle(context.Background(), f.tn.ID, canary[2].DeviceID, 0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("metadata of a withdrawn assignment: %v", err)
		}
		// No device beyond the canary was ever told.
		for _, d := range f.devicesOf(t, c.ID, "") {
			if d.Wave > 1 {
				t.Errorf("device %s reached wave %d of an aborted campaign", d.DeviceID, d.Wave)
			}
		}
		// Reports after the end change nothing.
		f.report(t, canary[2].DeviceID, model.UpdateCancelled, "")
		if f.get(t, c.ID).State != model.CampaignAborted {
			t.Error("state changed after abort")
		}
	})
}

// TestCampaignPauseResumeCancel drives the operator actions.
func TestCampaignPauseResumeCancel(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFleet(t, srv, model.TenantEnterprise, 4)
		key := f.tn.Admin.Secret
		c := f.create(t, map[string]any{"wave_size": 2, "success_ratio": 1.0})
		first := f.waitFor(t, c.ID, model.UpdateNotified, 2)
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns/" + c.ID + "/pause", Key: key,
			Body: map[string]any{"reason": "weekend"}})
		for _, d := range first {
			f.report(t, d.DeviceID, model.UpdateSucceeded, "")
		}
		time.Sleep(500 * time.Millisecond) // a few scheduler ticks
		if n := len(f.devicesOf(t, c.ID, model.UpdateNotified)); n != 0 {
			t.Fatalf("a paused campaign told %d more devices", n)
		}
		res := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns/" + c.ID + "/pause", Key: key, Body: map[string]any{}})
		if res.Status != http.StatusConflict {
			t.Errorf("pausing a paused campaign: %s", res)
		}
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns/" + c.ID + "/resume", Key: key, Body: map[string]any{}})
		second := f.waitFor(t, c.ID, model.UpdateNotified, 2)
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns/" + c.ID + "/cancel", Key: key,
			Body: map[string]any{"reason": "wrong build"}})
		got := f.get(t, c.ID)
		if got.State != model.CampaignCancelled || got.Reason != "wrong build" || got.Counts[model.UpdateCancelled] != 2 ||
			got.Counts[model.UpdateSucceeded] != 2 {
			t.Errorf("cancelled campaign: %+v", got)
		}
		for _, d := range second {
			as, err := srv.Platform.Store.GetAssignment(context.Background(), f.tn.ID, d.DeviceID)
			if err != nil || as.Status != model.UpdateCancelled {
				t.Errorf("assignment of %s after cancel: %+v %v", d.DeviceID, as, err)
			}
		}
		res = srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns/" + c.ID + "/resume", Key: key, Body: map[string]any{}})
		if res.Status != http.StatusConflict {
			t.Errorf("resuming a cancelled campaign: %s", res)
		}
	})
}

// resumeRecords reads the summaries of the campaign's resume audit records.
func (f *fleet) resumeRecords(t *testing.T, id string) []map[string]any {
	t.Helper()
	recs, err := f.srv.Platform.Store.ListAudit(context.Background(), f.tn.ID, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, r := range recs {
		if r.Action == "ota.campaign_resume" && r.Target == id {
			var m map[string]any
			if err := json.Unmarshal(r.Summary, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	return out
}

func (f *fleet) resume(t *testing.T, id string) *model.Campaign {
	t.Helper()
	var c model.Campaign
	f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns/" + id + "/resume", Key: f.tn.Admin.Secret,
		Body: map[string]any{}}).Into(t, &c)
	return &c
}

// round runs one scheduler round now (the background one may run too).
func (f *fleet) round(t *testing.T) {
	t.Helper()
	if err := f.svc().StepCampaigns(context.Background()); err != nil {
		t.Fatalf("scheduler round: %v", err)
	}
}

// TestCampaignConcurrentRounds: every node runs the scheduler, so rounds
// over one campaign overlap; none of them fails, and each device of the
// wave is told once.
func TestCampaignConcurrentRounds(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFleet(t, srv, model.TenantEnterprise, 12)
		c := f.create(t, map[string]any{"wave_size": 12})
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- f.svc().StepCampaigns(context.Background())
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("a round beside others: %v", err)
			}
		}
		told := f.waitFor(t, c.ID, model.UpdateNotified, 12)
		if got := ids(told); !slices.Equal(got, f.devices) {
			t.Errorf("told %v, want %v", got, f.devices)
		}
	})
}

// TestCampaignResumeAfterFailurePause: resuming a campaign the failure gate
// paused re-arms the gates (the failures so far are accepted, the failed
// wave is taken as passed), so it neither pauses again at once nor waits
// for a wave that cannot pass; failures among the devices told afterwards
// still trip it. A campaign paused by hand while healthy resumes as it was:
// the wave in progress must still pass its success gate.
func TestCampaignResumeAfterFailurePause(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		for _, tc := range []struct {
			name string
			run  func(t *testing.T, f *fleet)
		}{
			{"tripped", func(t *testing.T, f *fleet) {
				c := f.create(t, map[string]any{"wave_size": 2, "success_ratio": 1.0, "max_failure_ratio": 0.4, "pause_on_failure": true})
				first := f.waitFor(t, c.ID, model.UpdateNotified, 2)
				f.report(t, first[0].DeviceID, model.UpdateSucceeded, "")
				f.report(t, first[1].DeviceID, model.UpdateFailed, "disk full")
				paused := f.waitState(t, c.ID, model.CampaignPaused)
				if !strings.Contains(paused.Reason, "1 of 2") {
					t.Errorf("paused by the gate: %+v", paused)
				}
				got := f.resume(t, c.ID)
				if got.State != model.CampaignRunning || got.GateFailed != 1 || got.GateTold != 2 || got.GateWave != 1 {
					t.Errorf("resumed: state %s, baseline %d/%d wave %d, want running, 1/2 wave 1", got.State, got.GateFailed, got.GateTold, got.GateWave)
				}
				recs := f.resumeRecords(t, c.ID)
				if len(recs) != 1 || recs[0]["gates_rearmed"] == nil {
					t.Fatalf("resume audit records: %v", recs)
				}
				if g := recs[0]["gates_rearmed"].(map[string]any); g["gate_failed"] != 1.0 || g["gate_told"] != 2.0 || g["gate_wave"] != 1.0 {
					t.Errorf("re-armed baseline in the audit record: %v", g)
				}
				// The next round neither pauses it again nor waits for wave 1.
				f.round(t)
				second := f.waitFor(t, c.ID, model.UpdateNotified, 2)
				if got := f.get(t, c.ID); got.State != model.CampaignRunning || got.Wave != 2 {
					t.Fatalf("after a round: state %s wave %d, want running in wave 2", got.State, got.Wave)
				}
				if got, want := ids(second), f.devices[2:4]; !slices.Equal(got, want) {
					t.Errorf("wave 2 took %v, want %v", got, want)
				}
				// The re-armed gate trips on the newly told devices: 1 of 2.
				f.report(t, second[0].DeviceID, model.UpdateSucceeded, "")
				f.report(t, second[1].DeviceID, model.UpdateRolledBack, "health check failed")
				again := f.waitState(t, c.ID, model.CampaignPaused)
				if !strings.Contains(again.Reason, "1 of 2") || !strings.Contains(again.Reason, "since the campaign was last resumed") {
					t.Errorf("paused again: %q", again.Reason)
				}
				f.round(t)
				for _, d := range f.devicesOf(t, c.ID, "") {
					if d.Wave > 2 {
						t.Errorf("device %s reached wave %d after the second trip", d.DeviceID, d.Wave)
					}
				}
				// Resuming again moves the baseline on and takes wave 2 as passed.
				got = f.resume(t, c.ID)
				if got.GateFailed != 2 || got.GateTold != 4 || got.GateWave != 2 {
					t.Errorf("second resume: baseline %d/%d wave %d, want 2/4 wave 2", got.GateFailed, got.GateTold, got.GateWave)
				}
				f.round(t)
				f.waitFor(t, c.ID, model.UpdateNotified, 2)
			}},
			{"paused by hand", func(t *testing.T, f *fleet) {
				c := f.create(t, map[string]any{"wave_size": 2, "success_ratio": 1.0, "max_failure_ratio": 0.4, "pause_on_failure": true})
				first := f.waitFor(t, c.ID, model.UpdateNotified, 2)
				f.srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns/" + c.ID + "/pause",
					Key: f.tn.Admin.Secret, Body: map[string]any{"reason": "look first"}})
				f.report(t, first[0].DeviceID, model.UpdateSucceeded, "")
				got := f.resume(t, c.ID)
				if got.State != model.CampaignRunning || got.GateFailed != 0 || got.GateTold != 0 || got.GateWave != 0 {
					t.Errorf("resumed healthy: %+v", got)
				}
				if recs := f.resumeRecords(t, c.ID); len(recs) != 1 || recs[0]["gates_rearmed"] != nil {
					t.Errorf("resume audit records of a healthy campaign: %v", recs)
				}
				// Wave 1 has not passed its success gate: no wave 2 yet.
				f.round(t)
				if got := f.get(t, c.ID); got.State != model.CampaignRunning || got.Wave != 1 {
					t.Fatalf("after a round: state %s wave %d, want running in wave 1", got.State, got.Wave)
				}
				if n := len(f.devicesOf(t, c.ID, model.UpdateNotified)); n != 1 {
					t.Fatalf("%d devices notified before wave 1 passed, want 1", n)
				}
				f.report(t, first[1].DeviceID, model.UpdateSucceeded, "")
				second := f.waitFor(t, c.ID, model.UpdateNotified, 2)
				if got, want := ids(second), f.devices[2:4]; !slices.Equal(got, want) {
					t.Errorf("wave 2 took %v, want %v", got, want)
				}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tc.run(t, newFleet(t, srv, model.TenantEnterprise, 6))
			})
		}
	})
}

// TestCampaignDynamicJoin: a device that comes to match later (a new
// tag) joins the wave in progress and is told at once.
func TestCampaignDynamicJoin(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFleet(t, srv, model.TenantEnterprise, 2, "beta")
		c := f.create(t, map[string]any{"dynamic": true, "query": map[string]any{"product_id": f.product, "tags": []string{"beta"}}})
		f.waitFor(t, c.ID, model.UpdateNotified, 2)
		late := f.addDevice(t)
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPatch, Path: api + "/devices/" + late, Key: f.tn.Admin.Secret,
			Body: map[string]any{"tags": []string{"beta"}}})
		told := f.waitFor(t, c.ID, model.UpdateNotified, 3)
		if !slices.Contains(ids(told), late) {
			t.Fatalf("the late device is not told: %+v", told)
		}
		for _, d := range told {
			f.report(t, d.DeviceID, model.UpdateSucceeded, "")
		}
		time.Sleep(500 * time.Millisecond)
		if got := f.get(t, c.ID); got.State != model.CampaignRunning || got.Total != 3 {
			t.Errorf("a dynamic campaign stays open: %+v", got)
		}
	})
}

// TestCampaignMaintenanceWindow: outside the window nobody is told.
func TestCampaignMaintenanceWindow(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFleet(t, srv, model.TenantEnterprise, 2)
		night := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
		noon := night.Add(9 * time.Hour)
		now := noon
		clock := make(chan time.Time, 1)
		clock <- now
		f.svc().SetClock(func() time.Time { t := <-clock; clock <- t; return t })
		c := f.create(t, map[string]any{"maintenance_window": map[string]any{"start": "02:00", "end": "05:00", "time_zone": "UTC"}})
		time.Sleep(500 * time.Millisecond)
		if n := len(f.devicesOf(t, c.ID, model.UpdateNotified)); n != 0 {
			t.Fatalf("%d devices told outside the maintenance window", n)
		}
		<-clock
		clock <- night
		f.svc().Kick()
		f.waitFor(t, c.ID, model.UpdateNotified, 2)
	})
}

// TestInvalidateRelease: open campaigns end, assignments are withdrawn,
// nobody may install it any more, and the devices on it are counted.
func TestInvalidateRelease(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFleet(t, srv, model.TenantEnterprise, 3)
		key := f.tn.Admin.Secret
		c := f.create(t, map[string]any{"wave_size": 3})
		told := f.waitFor(t, c.ID, model.UpdateNotified, 3)
		f.report(t, told[0].DeviceID, model.UpdateSucceeded, "")
		var res ota.InvalidationResult
		srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/artifacts/" + f.artifact + "/invalidate", Key: key,
			Body: map[string]any{"reason": "bricks the radio"}}).Into(t, &res)
		if !slices.Equal(res.CancelledCampaigns, []string{c.ID}) || res.Installed != 1 || res.FollowUpQuery.FirmwareVersion != "2.0.0" ||
			res.Artifact.InvalidatedAt == nil {
			t.Errorf("invalidation: %+v", res)
		}
		if got := f.get(t, c.ID); got.State != model.CampaignCancelled || got.Counts[model.UpdateCancelled] != 2 {
			t.Errorf("campaign after invalidation: %+v", got)
		}
		for _, d := range told[1:] {
			if _, _, err := f.svc().Bundle(context.Background(), f.tn.ID, d.DeviceID, 0); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("metadata of %s after invalidation: %v", d.DeviceID, err)
			}
		}
		for _, r := range []testserver.Req{
			{Method: http.MethodPut, Path: api + "/devices/" + f.devices[1] + "/ota/assignment", Body: map[string]any{"artifact_id": f.artifact}},
			{Method: http.MethodPost, Path: api + "/campaigns", Body: map[string]any{"name": "again", "artifact_id": f.artifact, "query": map[string]any{}}},
			{Method: http.MethodPost, Path: api + "/artifacts/" + f.artifact + "/invalidate", Body: map[string]any{"reason": "twice"}},
		} {
			r.Key = key
			if got := srv.Do(t, r); got.Status != http.StatusConflict {
				t.Errorf("%s %s with an invalidated release: %s", r.Method, r.Path, got)
			}
		}
	})
}

// TestCampaignConsent: a household is asked first; a yes installs, a no
// is recorded and that device is left alone.
func TestCampaignConsent(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		f := newFleet(t, srv, model.TenantHousehold, 2)
		key := f.tn.Admin.Secret
		c := f.create(t, map[string]any{})
		if !c.RequireConsent {
			t.Fatal("a household campaign does not ask for consent by default")
		}
		var asked []model.CampaignDevice
		testserver.Eventually(t, 10*time.Second, func() bool {
			asked = nil
			for _, d := range f.devicesOf(t, c.ID, model.UpdatePending) {
				if d.Consent == model.ConsentAsked {
					asked = append(asked, d)
				}
			}
			return len(asked) == 2
		}, "consent asked for both devices")
		consent := func(dev string, grant bool) *testserver.Resp {
			return srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns/" + c.ID + "/devices/" + dev + "/consent", Key: key,
				Body: map[string]any{"grant": grant}})
		}
		if res := consent(asked[0].DeviceID, true); res.Status != http.StatusOK {
			t.Fatalf("grant: %s", res)
		}
		if res := consent(asked[1].DeviceID, false); res.Status != http.StatusOK {
			t.Fatalf("refuse: %s", res)
		}
		told := f.waitFor(t, c.ID, model.UpdateNotified, 1)
		if told[0].DeviceID != asked[0].DeviceID {
			t.Errorf("told %s, want the consenting %s", told[0].DeviceID, asked[0].DeviceID)
		}
		if r := f.devicesOf(t, c.ID, model.UpdateRefused); len(r) != 1 || r[0].Consent != model.ConsentRefused {
			t.Errorf("refused: %+v", r)
		}
		if res := consent(asked[1].DeviceID, true); res.Status != http.StatusConflict {
			t.Errorf("a second answer: %s", res)
		}
		if _, err := srv.Platform.Store.GetAssignment(context.Background(), f.tn.ID, asked[1].DeviceID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the refusing device got an assignment: %v", err)
		}
	})
}

// TestCampaignBadInput: every refusal names the field and stores nothing.
func TestCampaignBadInput(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	f := newFleet(t, srv, model.TenantEnterprise, 1)
	unsigned := srv.Must(t, http.StatusCreated, testserver.Req{Method: http.MethodPost, Path: api + "/artifacts", Key: f.tn.Admin.Secret,
		Body: map[string]any{"name": "x.bin", "version": "3.0.0", "product_ids": []string{f.product}, "hardware_ids": []string{f.product}}}).Str("id")
	for _, tc := range []struct {
		name   string
		body   map[string]any
		status int
		want   string
	}{
		{"unknown artifact", map[string]any{"artifact_id": "art_nope"}, 422, "artifact_id"},
		{"artifact without content", map[string]any{"artifact_id": unsigned}, 409, "no content"},
		{"ratio above 1", map[string]any{"max_failure_ratio": 1.5}, 422, "max_failure_ratio"},
		{"bad interval", map[string]any{"wave_interval": "soon"}, 422, "wave_interval"},
		{"bad window", map[string]any{"maintenance_window": map[string]any{"start": "25:00", "end": "03:00"}}, 422, "maintenance_window"},
		{"bad zone", map[string]any{"maintenance_window": map[string]any{"start": "01:00", "end": "03:00", "time_zone": "Mars/Olympus"}}, 422, "time_zone"},
		{"empty name", map[string]any{"name": ""}, 422, "name"},
		{"bad query", map[string]any{"query": map[string]any{"min_version": "not a version!"}}, 422, "query"},
		{"unknown group", map[string]any{"query": map[string]any{"group_id": "grp_nope"}}, 422, "group"},
		{"unknown field", map[string]any{"canary_size": 3}, 422, "canary_size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"name": "bad", "artifact_id": f.artifact, "query": map[string]any{}}
			for k, v := range tc.body {
				body[k] = v
			}
			res := srv.Do(t, testserver.Req{Method: http.MethodPost, Path: api + "/campaigns", Key: f.tn.Admin.Secret, Body: body})
			if res.Status != tc.status || !strings.Contains(res.String(), tc.want) {
				t.Errorf("want %d naming %q, got %s", tc.status, tc.want, res)
			}
		})
	}
	list := srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodGet, Path: api + "/campaigns", Key: f.tn.Admin.Secret})
	if n := len(list.Items()); n != 0 {
		t.Errorf("%d campaigns stored by refused requests", n)
	}
}

// TestCampaignSupersededAndInUse: a device given a newer image directly
// leaves the campaign it was in (the campaign does not wait for it), and
// an artifact an open campaign hands out cannot be deleted.
func TestCampaignSupersededAndInUse(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Options{})
	f := newFleet(t, srv, model.TenantEnterprise, 2)
	key := f.tn.Admin.Secret
	c := f.create(t, map[string]any{"wave_size": 2, "success_ratio": 1.0})
	told := f.waitFor(t, c.ID, model.UpdateNotified, 2)
	res := srv.Do(t, testserver.Req{Method: http.MethodDelete, Path: api + "/artifacts/" + f.artifact, Key: key})
	if res.Status != http.StatusConflict || !strings.Contains(res.String(), c.ID) {
		t.Errorf("deleting a rolled out artifact: %s", res)
	}
	hotfix := f.vendor.Release(t, f.product, "2.0.1", []byte("firmware 2.0.1"))
	srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPut, Path: api + "/devices/" + told[0].DeviceID + "/ota/assignment", Key: key,
		Body: map[string]any{"artifact_id": hotfix}})
	cd, err := srv.Platform.Store.GetCampaignDevice(context.Background(), f.tn.ID, c.ID, told[0].DeviceID)
	if err != nil || cd.Status != model.UpdateCancelled || !strings.Contains(cd.Detail, "superseded") {
		t.Fatalf("superseded device: %+v %v", cd, err)
	}
	f.report(t, told[1].DeviceID, model.UpdateSucceeded, "")
	f.waitState(t, c.ID, model.CampaignCompleted)
	srv.Must(t, http.StatusNoContent, testserver.Req{Method: http.MethodDelete, Path: api + "/artifacts/" + f.artifact, Key: key})
}
