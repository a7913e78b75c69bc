package storetest

import (
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// testCampaigns: targeting by query and product in one statement, waves
// taken in device ID order, counts, the rev guard, dynamic joins, ending,
// and the tenant wall on every read.
func testCampaigns(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	pa := createProduct(t, s, tenA, "prd-a")
	pz := createProduct(t, s, tenA, "prd-z")
	pb := createProduct(t, s, tenB, "prd-b")
	var ids []string
	for i, st := range []model.State{model.StateActive, model.StateActive, model.StateClaimed, model.StateManufactured, model.StateActive} {
		d := newDevice(tenA, pa.ID, "dev-c"+string(rune('1'+i)), "SN-C"+string(rune('1'+i)))
		d.State = st
		createDevice(t, s, d)
		ids = append(ids, d.ID)
	}
	createDevice(t, s, newDevice(tenA, pz.ID, "dev-other-product", "SN-Z"))
	createDevice(t, s, newDevice(tenB, pb.ID, "dev-b", "SN-B"))

	c := &model.Campaign{ID: "cmp-1", TenantID: tenA, Name: "roll", ArtifactID: "art-1", Version: "2.0", Query: model.DeviceQuery{},
		State: model.CampaignRunning, Canary: 1, WaveSize: 2, WaveInterval: time.Minute, SuccessRatio: 0.9, MaxFailureRatio: 0.1,
		Window: &model.MaintenanceWindow{Start: "02:00", End: "04:00", TimeZone: "UTC"}, Rev: 1, CreatedAt: at(0), CreatedBy: "key-1", UpdatedAt: at(0)}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateCampaign(ctx, c, []string{pa.ID}) })
	// The manufactured device and the other product's are not targeted.
	wantEqual(t, c.Total, int64(4), "targeted devices")
	got, err := s.GetCampaign(ctx, tenA, "cmp-1")
	noErr(t, err, "GetCampaign")
	wantEqual(t, got.Total, int64(4), "stored total")
	wantEqual(t, *got.Window, *c.Window, "window")
	_, err = s.GetCampaign(ctx, tenB, "cmp-1")
	wantErr(t, err, store.ErrNotFound, "GetCampaign across the wall")
	if _, _, err := s.ListCampaignDevices(ctx, tenB, "cmp-1", "", store.ListOptions{}); err != nil {
		t.Fatal(err)
	} else if l, _, _ := s.ListCampaignDevices(ctx, tenB, "cmp-1", "", store.ListOptions{}); len(l) != 0 {
		t.Fatal("tenant B lists A's campaign devices")
	}
	if n, _ := s.CampaignWaiting(ctx, tenB, "cmp-1"); n != 0 {
		t.Fatal("tenant B counts A's campaign devices")
	}
	n, err := s.CampaignWaiting(ctx, tenA, "cmp-1")
	noErr(t, err, "CampaignWaiting")
	wantEqual(t, n, int64(4), "waiting")

	// The rev guard.
	stale := *got
	got.Wave = 1
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateCampaign(ctx, got) })
	wantEqual(t, got.Rev, int64(2), "rev after update")
	wantErr(t, s.Update(ctx, func(tx store.Tx) error { return tx.UpdateCampaign(ctx, &stale) }), store.ErrStale, "update from a stale read")
	// The failure gate's baseline round-trips.
	got.GateFailed, got.GateTold, got.GateWave = 3, 7, 1
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateCampaign(ctx, got) })
	base, err := s.GetCampaign(ctx, tenA, "cmp-1")
	noErr(t, err, "GetCampaign after setting the baseline")
	wantEqual(t, [3]int64{base.GateFailed, base.GateTold, int64(base.GateWave)}, [3]int64{3, 7, 1}, "gate baseline")
	got.GateFailed, got.GateTold, got.GateWave = 0, 0, 0
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateCampaign(ctx, got) })

	var wave1 []string
	mustUpdate(t, s, func(tx store.Tx) error {
		var err error
		wave1, err = tx.TakeWave(ctx, tenA, "cmp-1", 1, 1, model.ConsentNone, at(time.Minute))
		return err
	})
	wantIDs(t, wave1, []string{"dev-c1"}, "canary: lowest ID first")
	var wave2 []string
	mustUpdate(t, s, func(tx store.Tx) error {
		var err error
		wave2, err = tx.TakeWave(ctx, tenA, "cmp-1", 2, 2, model.ConsentAsked, at(2*time.Minute))
		return err
	})
	wantIDs(t, wave2, []string{"dev-c2", "dev-c3"}, "wave 2")
	// Consent asked: not ready; wave 1 without consent: ready.
	ready, err := s.ReadyCampaignDevices(ctx, tenA, "cmp-1", 10)
	noErr(t, err, "ReadyCampaignDevices")
	if len(ready) != 1 || ready[0].DeviceID != "dev-c1" {
		t.Fatalf("ready: %+v", ready)
	}
	cd := ready[0]
	cd.Status, cd.Detail, cd.UpdatedAt = model.UpdateRolledBack, "health check failed", at(3*time.Minute)
	mustUpdate(t, s, func(tx store.Tx) error { return tx.SetCampaignDevice(ctx, &cd) })
	back, err := s.GetCampaignDevice(ctx, tenA, "cmp-1", "dev-c1")
	noErr(t, err, "GetCampaignDevice")
	wantEqual(t, *back, cd, "campaign device")
	_, err = s.GetCampaignDevice(ctx, tenB, "cmp-1", "dev-c1")
	wantErr(t, err, store.ErrNotFound, "GetCampaignDevice across the wall")

	counts, err := s.CampaignCounts(ctx, tenA, "cmp-1", 0)
	noErr(t, err, "CampaignCounts")
	wantEqual(t, counts[model.UpdateRolledBack], int64(1), "rolled back")
	wantEqual(t, counts[model.UpdatePending], int64(2), "pending in started waves")
	w2, _ := s.CampaignCounts(ctx, tenA, "cmp-1", 2)
	wantEqual(t, len(w2), 1, "wave 2 statuses")
	wantEqual(t, w2[model.UpdatePending], int64(2), "wave 2 pending")

	// A device that comes to match joins once; a device of another
	// product or tenant does not.
	late := newDevice(tenA, pa.ID, "dev-late", "SN-LATE")
	late.State = model.StateActive
	createDevice(t, s, late)
	for i, want := range []bool{true, false} {
		var joined bool
		mustUpdate(t, s, func(tx store.Tx) error {
			var err error
			joined, err = tx.JoinCampaign(ctx, got, []string{pa.ID}, "dev-late", 2, at(4*time.Minute))
			return err
		})
		if joined != want {
			t.Fatalf("join %d: %v, want %v", i, joined, want)
		}
	}
	for _, dev := range []string{"dev-other-product", "dev-b"} {
		mustUpdate(t, s, func(tx store.Tx) error {
			joined, err := tx.JoinCampaign(ctx, got, []string{pa.ID}, dev, 2, at(4*time.Minute))
			if joined {
				t.Errorf("%s joined", dev)
			}
			return err
		})
	}
	got, _ = s.GetCampaign(ctx, tenA, "cmp-1")
	wantEqual(t, got.Total, int64(5), "total after the join")

	open, err := s.OpenCampaigns(ctx, "")
	noErr(t, err, "OpenCampaigns")
	wantEqual(t, len(open), 1, "open campaigns")
	if o, _ := s.OpenCampaigns(ctx, tenB); len(o) != 0 {
		t.Fatal("tenant B sees A's open campaigns")
	}

	// Ending: unfinished devices are cancelled; those of started waves are
	// returned (they were told and must be withdrawn).
	var told []string
	mustUpdate(t, s, func(tx store.Tx) error {
		var err error
		told, err = tx.EndCampaignDevices(ctx, tenA, "cmp-1", model.UpdateCancelled, "cancelled", at(5*time.Minute))
		return err
	})
	wantIDs(t, told, []string{"dev-c2", "dev-c3", "dev-late"}, "told and unfinished")
	counts, _ = s.CampaignCounts(ctx, tenA, "cmp-1", 0)
	wantEqual(t, counts[model.UpdateRolledBack], int64(1), "a final status stays")
	wantEqual(t, counts[model.UpdateCancelled], int64(3), "cancelled in started waves")
	n, _ = s.CampaignWaiting(ctx, tenA, "cmp-1")
	wantEqual(t, n, int64(1), "waiting until the campaign itself ends (dev-c5)")
	got, _ = s.GetCampaign(ctx, tenA, "cmp-1")
	got.State = model.CampaignCancelled
	mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateCampaign(ctx, got) })
	n, _ = s.CampaignWaiting(ctx, tenA, "cmp-1")
	wantEqual(t, n, int64(0), "nothing waits after the end")

	list, _, err := s.ListCampaignDevices(ctx, tenA, "cmp-1", model.UpdateCancelled, store.ListOptions{Limit: 10})
	noErr(t, err, "ListCampaignDevices")
	wantEqual(t, len(list), 4, "cancelled devices (one never told)")
	wantIDs(t, walk(t, 2, func(d model.CampaignDevice) string { return d.DeviceID }, func(cur string) ([]model.CampaignDevice, string, error) {
		return s.ListCampaignDevices(ctx, tenA, "cmp-1", "", store.ListOptions{Limit: 2, Cursor: cur})
	}), []string{"dev-c1", "dev-c2", "dev-c3", "dev-c5", "dev-late"}, "paged campaign devices")

	// The next wave reads on from the last device taken; a device that
	// joined below that point (while the first wave was being taken) is
	// found too, once.
	c2 := &model.Campaign{ID: "cmp-2", TenantID: tenA, Name: "second", ArtifactID: "art-1", Version: "2.0", State: model.CampaignRunning,
		WaveSize: 5, SuccessRatio: 1, MaxFailureRatio: 1, Rev: 1, CreatedAt: at(0), CreatedBy: "key-1", UpdatedAt: at(0)}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateCampaign(ctx, c2, []string{pa.ID}) })
	take := func(wave, n int) []string {
		var ids []string
		mustUpdate(t, s, func(tx store.Tx) error {
			var err error
			ids, err = tx.TakeWave(ctx, tenA, "cmp-2", wave, n, model.ConsentNone, at(time.Hour))
			return err
		})
		return ids
	}
	wantIDs(t, take(1, 2), []string{"dev-c1", "dev-c2"}, "cursor: wave 1")
	straggler := newDevice(tenA, pa.ID, "dev-c0", "SN-C0")
	straggler.State = model.StateActive
	createDevice(t, s, straggler)
	mustUpdate(t, s, func(tx store.Tx) error {
		joined, err := tx.JoinCampaign(ctx, c2, []string{pa.ID}, "dev-c0", 0, at(time.Hour))
		if !joined {
			t.Error("the straggler did not join")
		}
		return err
	})
	wantIDs(t, take(2, 5), []string{"dev-c0", "dev-c3", "dev-c5", "dev-late"}, "cursor: wave 2 with the straggler")
	wantIDs(t, take(3, 5), nil, "cursor: nothing left")
}
