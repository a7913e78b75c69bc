package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

func testDevices(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA)
	p1 := createProduct(t, s, tenA, "prd-1")
	p2 := createProduct(t, s, tenA, "prd-2")

	d := model.Device{ID: "dev-1", TenantID: tenA, ProductID: p1.ID, Serial: "SN-0001", Name: "Boiler room",
		State: model.StateManufactured, Tags: []string{"beta", "zone:north"},
		Attributes: map[string]string{"site": "s1", "floor": "2"}, FirmwareVersion: "1.2.3",
		CreatedAt: base, UpdatedAt: base}
	mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateDevice(ctx, &d) })
	if d.Version != 1 {
		t.Fatalf("a created device has version %d, want 1", d.Version)
	}

	t.Run("create and get", func(t *testing.T) {
		wantEqual(t, getDevice(t, s, tenA, d.ID), d, "device")
		_, err := s.GetDevice(ctx, tenA, "dev-missing")
		wantErr(t, err, store.ErrNotFound, "GetDevice of a missing device")

		bare := createDevice(t, s, newDevice(tenA, p1.ID, "dev-bare", "SN-bare"))
		got := getDevice(t, s, tenA, bare.ID)
		if got.Tags == nil || got.Attributes == nil || len(got.Tags) != 0 || len(got.Attributes) != 0 {
			t.Fatalf("device without tags/attributes reads back as tags %#v, attributes %#v; want empty, not nil",
				got.Tags, got.Attributes)
		}
		if got.LastSeen != nil {
			t.Fatalf("a new device has LastSeen %v", got.LastSeen)
		}
	})

	t.Run("duplicate serial", func(t *testing.T) {
		dup := newDevice(tenA, p1.ID, "dev-dup", d.Serial)
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateDevice(ctx, &dup) })
		wantConflict(t, err, d.Serial, "CreateDevice with a taken (product, serial)")
		_, err = s.GetDevice(ctx, tenA, dup.ID)
		wantErr(t, err, store.ErrNotFound, "GetDevice after the refused create")
		// The same serial under another product is a different device.
		createDevice(t, s, newDevice(tenA, p2.ID, "dev-other-product", d.Serial))
	})

	t.Run("update", func(t *testing.T) {
		cur := getDevice(t, s, tenA, d.ID)
		stale := cur
		stale.Tags = append([]string(nil), cur.Tags...)
		cur.Name, cur.FirmwareVersion, cur.UpdatedAt = "Boiler room (east)", "1.3.0", at(time.Minute)
		cur.Tags = []string{"zone:south"}
		cur.Attributes = map[string]string{"site": "s2", "rack": "r1"}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateDevice(ctx, &cur) })
		if cur.Version != 2 {
			t.Fatalf("UpdateDevice left the version at %d, want 2", cur.Version)
		}
		wantEqual(t, getDevice(t, s, tenA, d.ID), cur, "updated device")

		// The filters follow the new tags and attributes, not the old ones.
		for _, c := range []struct {
			q    model.DeviceQuery
			want bool
		}{
			{model.DeviceQuery{Tags: []string{"zone:north"}}, false},
			{model.DeviceQuery{Tags: []string{"beta"}}, false},
			{model.DeviceQuery{Tags: []string{"zone:south"}}, true},
			{model.DeviceQuery{Attrs: map[string]string{"site": "s1"}}, false},
			{model.DeviceQuery{Attrs: map[string]string{"floor": "2"}}, false},
			{model.DeviceQuery{Attrs: map[string]string{"site": "s2", "rack": "r1"}}, true},
			{model.DeviceQuery{FirmwareVersion: "1.3.0"}, true},
		} {
			ds, _, err := s.QueryDevices(ctx, tenA, c.q, model.Page{})
			noErr(t, err, "QueryDevices")
			found := false
			for _, x := range ds {
				found = found || x.ID == d.ID
			}
			if found != c.want {
				t.Fatalf("after update, query %+v finds the device: %v, want %v", c.q, found, c.want)
			}
		}

		stale.Name = "lost update"
		err := s.Update(ctx, func(tx store.Tx) error { return tx.UpdateDevice(ctx, &stale) })
		wantErr(t, err, store.ErrStale, "UpdateDevice with a stale version")
		wantEqual(t, getDevice(t, s, tenA, d.ID), cur, "device after the stale update")

		missing := newDevice(tenA, p1.ID, "dev-missing", "SN-missing")
		missing.Version = 1
		err = s.Update(ctx, func(tx store.Tx) error { return tx.UpdateDevice(ctx, &missing) })
		wantErr(t, err, store.ErrNotFound, "UpdateDevice of a missing device")
		d = cur
	})

	var done []model.Transition
	t.Run("set state", func(t *testing.T) {
		tr := model.Transition{DeviceID: d.ID, From: model.StateManufactured, To: model.StateClaimed,
			Actor: "user:alice", Reason: "claimed with code", At: at(2 * time.Minute)}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.SetDeviceState(ctx, tenA, &tr) })
		if tr.ID == 0 {
			t.Fatal("SetDeviceState did not set the transition's ID")
		}
		done = append(done, tr)
		got := getDevice(t, s, tenA, d.ID)
		if got.State != model.StateClaimed || got.Version != d.Version+1 || !got.UpdatedAt.Equal(tr.At) {
			t.Fatalf("after the transition: state %s version %d updated %v; want %s %d %v",
				got.State, got.Version, got.UpdatedAt, model.StateClaimed, d.Version+1, tr.At)
		}
		d = got

		wrong := model.Transition{DeviceID: d.ID, From: model.StateManufactured, To: model.StateActive,
			Actor: "user:mallory", Reason: "from a state it left", At: at(3 * time.Minute)}
		err := s.Update(ctx, func(tx store.Tx) error { return tx.SetDeviceState(ctx, tenA, &wrong) })
		wantErr(t, err, store.ErrStale, "SetDeviceState from a state the device is not in")
		wantEqual(t, getDevice(t, s, tenA, d.ID), d, "device after the refused transition")

		missing := model.Transition{DeviceID: "dev-missing", From: model.StateManufactured, To: model.StateClaimed,
			Actor: "user:alice", Reason: "no such device", At: at(3 * time.Minute)}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.SetDeviceState(ctx, tenA, &missing) })
		wantErr(t, err, store.ErrNotFound, "SetDeviceState of a missing device")

		for i, step := range [][2]model.State{
			{model.StateClaimed, model.StateProvisioned},
			{model.StateProvisioned, model.StateActive},
			{model.StateActive, model.StateQuarantined},
		} {
			tr := model.Transition{DeviceID: d.ID, From: step[0], To: step[1], Actor: fmt.Sprintf("svc:%d", i),
				Reason: fmt.Sprintf("step %d", i), At: at(time.Duration(10+i) * time.Minute)}
			mustUpdate(t, s, func(tx store.Tx) error { return tx.SetDeviceState(ctx, tenA, &tr) })
			done = append(done, tr)
		}
		if got := getDevice(t, s, tenA, d.ID); got.State != model.StateQuarantined || got.Version != d.Version+3 {
			t.Fatalf("after 3 more transitions: state %s version %d", got.State, got.Version)
		}
	})

	t.Run("transitions", func(t *testing.T) {
		got, next, err := s.ListTransitions(ctx, tenA, d.ID, store.ListOptions{})
		noErr(t, err, "ListTransitions")
		if next != "" {
			t.Fatalf("a single page has next cursor %q", next)
		}
		wantEqual(t, got, done, "transitions")
		var wantIDsSeq []string
		for _, tr := range done {
			wantIDsSeq = append(wantIDsSeq, fmt.Sprint(tr.ID))
		}
		for _, limit := range []int{1, 3} {
			paged := walk(t, limit, func(tr model.Transition) string { return fmt.Sprint(tr.ID) },
				func(c string) ([]model.Transition, string, error) {
					return s.ListTransitions(ctx, tenA, d.ID, store.ListOptions{Limit: limit, Cursor: c})
				})
			wantIDs(t, paged, wantIDsSeq, fmt.Sprintf("transitions by pages of %d", limit))
		}
		other, _, err := s.ListTransitions(ctx, tenA, "dev-bare", store.ListOptions{})
		noErr(t, err, "ListTransitions")
		if len(other) != 0 {
			t.Fatalf("a device without transitions lists %d", len(other))
		}
		for _, c := range garbageCursors {
			_, _, err := s.ListTransitions(ctx, tenA, d.ID, store.ListOptions{Cursor: c})
			wantErr(t, err, store.ErrBadCursor, "ListTransitions with a garbage cursor")
		}
	})

	t.Run("count by state", func(t *testing.T) {
		got, err := s.CountDevicesByState(ctx, tenA)
		noErr(t, err, "CountDevicesByState")
		want := map[model.State]int64{model.StateQuarantined: 1, model.StateManufactured: 2}
		wantEqual(t, got, want, "devices by state")
		n, err := s.CountDevices(ctx, tenA, model.DeviceQuery{})
		noErr(t, err, "CountDevices")
		if n != 3 {
			t.Fatalf("CountDevices = %d, want 3", n)
		}
	})

	t.Run("touch", func(t *testing.T) {
		before := getDevice(t, s, tenA, d.ID)
		t1, t0, t2 := at(time.Hour), at(30*time.Minute), at(2*time.Hour)
		noErr(t, s.TouchDevice(ctx, tenA, d.ID, t1), "TouchDevice")
		if got := getDevice(t, s, tenA, d.ID); got.LastSeen == nil || !got.LastSeen.Equal(t1) {
			t.Fatalf("LastSeen = %v, want %v", got.LastSeen, t1)
		}
		// A late report of an older sighting does not move the clock back.
		noErr(t, s.TouchDevice(ctx, tenA, d.ID, t0), "TouchDevice with an older time")
		if got := getDevice(t, s, tenA, d.ID); got.LastSeen == nil || !got.LastSeen.Equal(t1) {
			t.Fatalf("LastSeen after an older touch = %v, want %v", got.LastSeen, t1)
		}
		noErr(t, s.TouchDevice(ctx, tenA, d.ID, t2), "TouchDevice")
		got := getDevice(t, s, tenA, d.ID)
		if got.LastSeen == nil || !got.LastSeen.Equal(t2) {
			t.Fatalf("LastSeen = %v, want %v", got.LastSeen, t2)
		}
		// Only LastSeen moves.
		got.LastSeen = before.LastSeen
		wantEqual(t, got, before, "device apart from LastSeen after touches")
		wantErr(t, s.TouchDevice(ctx, tenA, "dev-missing", t2), store.ErrNotFound, "TouchDevice of a missing device")
	})

	t.Run("delete", func(t *testing.T) {
		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteDevice(ctx, tenA, d.ID) })
		_, err := s.GetDevice(ctx, tenA, d.ID)
		wantErr(t, err, store.ErrNotFound, "GetDevice after delete")
		err = s.Update(ctx, func(tx store.Tx) error { return tx.DeleteDevice(ctx, tenA, d.ID) })
		wantErr(t, err, store.ErrNotFound, "second DeleteDevice")
		// The serial is free again.
		createDevice(t, s, newDevice(tenA, p1.ID, "dev-1b", d.Serial))
	})
}

// testDeviceTenantWall tries every device method of tenant B on tenant A's
// device and checks each one fails as if the device did not exist, and
// that A's data is untouched afterwards.
func testDeviceTenantWall(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	pA := createProduct(t, s, tenA, "prd-a")
	pB := createProduct(t, s, tenB, "prd-b")
	a := newDevice(tenA, pA.ID, "dev-a", "SN-A-1")
	a.Tags, a.Attributes, a.FirmwareVersion = []string{"zone:north"}, map[string]string{"site": "s1"}, "1.0"
	createDevice(t, s, a)
	b := createDevice(t, s, newDevice(tenB, pB.ID, "dev-b", "SN-B-1"))
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, g := range []model.Group{
			{ID: "grp-a", TenantID: tenA, Name: "A's", Kind: model.GroupStatic, CreatedAt: base},
			{ID: "grp-b", TenantID: tenB, Name: "B's", Kind: model.GroupStatic, CreatedAt: base},
		} {
			if err := tx.CreateGroup(ctx, &g); err != nil {
				return err
			}
		}
		if err := tx.AddGroupMembers(ctx, tenA, "grp-a", []string{a.ID}); err != nil {
			return err
		}
		return tx.SetDeviceState(ctx, tenA, &model.Transition{DeviceID: a.ID, From: model.StateManufactured,
			To: model.StateActive, Actor: "user:alice", Reason: "setup", At: at(time.Minute)})
	})
	noErr(t, s.TouchDevice(ctx, tenA, a.ID, at(time.Hour)), "TouchDevice")
	snapshot := getDevice(t, s, tenA, a.ID)

	writes := []struct {
		name string
		fn   func(tx store.Tx) error
	}{
		{"GetDevice (in a Tx)", func(tx store.Tx) error { _, err := tx.GetDevice(ctx, tenB, a.ID); return err }},
		{"UpdateDevice", func(tx store.Tx) error {
			h := snapshot
			h.TenantID, h.Name, h.Tags = tenB, "hijacked", []string{"pwned"}
			return tx.UpdateDevice(ctx, &h)
		}},
		{"SetDeviceState", func(tx store.Tx) error {
			return tx.SetDeviceState(ctx, tenB, &model.Transition{DeviceID: a.ID, From: model.StateActive,
				To: model.StateQuarantined, Actor: "user:mallory", Reason: "across the wall", At: at(2 * time.Hour)})
		}},
		{"DeleteDevice", func(tx store.Tx) error { return tx.DeleteDevice(ctx, tenB, a.ID) }},
		{"AddGroupMembers (other tenant's device)", func(tx store.Tx) error {
			return tx.AddGroupMembers(ctx, tenB, "grp-b", []string{a.ID})
		}},
		{"AddGroupMembers (other tenant's group)", func(tx store.Tx) error {
			return tx.AddGroupMembers(ctx, tenB, "grp-a", []string{b.ID})
		}},
		{"RemoveGroupMembers", func(tx store.Tx) error {
			return tx.RemoveGroupMembers(ctx, tenB, "grp-a", []string{a.ID})
		}},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			err := s.Update(ctx, w.fn)
			wantErr(t, err, store.ErrNotFound, w.name+" across tenants")
		})
	}
	t.Run("GetDevice", func(t *testing.T) {
		_, err := s.GetDevice(ctx, tenB, a.ID)
		wantErr(t, err, store.ErrNotFound, "GetDevice across tenants")
	})
	t.Run("TouchDevice", func(t *testing.T) {
		err := s.TouchDevice(ctx, tenB, a.ID, at(3*time.Hour))
		wantErr(t, err, store.ErrNotFound, "TouchDevice across tenants")
	})
	t.Run("QueryDevices", func(t *testing.T) {
		for _, q := range []model.DeviceQuery{
			{},
			{ProductID: pA.ID},
			{SerialPrefix: "SN-A"},
			{Tags: []string{"zone:north"}},
			{Attrs: map[string]string{"site": "s1"}},
			{FirmwareVersion: "1.0"},
			{States: []model.State{model.StateActive}},
		} {
			ds, _, err := s.QueryDevices(ctx, tenB, q, model.Page{})
			noErr(t, err, "QueryDevices")
			for _, x := range ds {
				if x.TenantID != tenB {
					t.Fatalf("QueryDevices(B, %+v) returned %s of tenant %s", q, x.ID, x.TenantID)
				}
			}
			n, err := s.CountDevices(ctx, tenB, q)
			noErr(t, err, "CountDevices")
			if n != int64(len(ds)) {
				t.Fatalf("CountDevices(B, %+v) = %d, QueryDevices found %d", q, n, len(ds))
			}
		}
		_, _, err := s.QueryDevices(ctx, tenB, model.DeviceQuery{GroupID: "grp-a"}, model.Page{})
		wantErr(t, err, store.ErrNotFound, "QueryDevices by another tenant's group")
		_, err = s.CountDevices(ctx, tenB, model.DeviceQuery{GroupID: "grp-a"})
		wantErr(t, err, store.ErrNotFound, "CountDevices by another tenant's group")
	})
	t.Run("CountDevicesByState", func(t *testing.T) {
		got, err := s.CountDevicesByState(ctx, tenB)
		noErr(t, err, "CountDevicesByState")
		wantEqual(t, got, map[model.State]int64{model.StateManufactured: 1}, "B's devices by state")
	})
	t.Run("ListTransitions", func(t *testing.T) {
		trs, _, err := s.ListTransitions(ctx, tenB, a.ID, store.ListOptions{})
		if err != nil {
			wantErr(t, err, store.ErrNotFound, "ListTransitions across tenants")
		}
		if len(trs) != 0 {
			t.Fatalf("ListTransitions across tenants returned %d transitions", len(trs))
		}
	})

	t.Run("A untouched", func(t *testing.T) {
		wantEqual(t, getDevice(t, s, tenA, a.ID), snapshot, "A's device after B's attempts")
		trs, _, err := s.ListTransitions(ctx, tenA, a.ID, store.ListOptions{})
		noErr(t, err, "ListTransitions")
		if len(trs) != 1 {
			t.Fatalf("A's device has %d transitions, want 1", len(trs))
		}
		members, _, err := s.QueryDevices(ctx, tenA, model.DeviceQuery{GroupID: "grp-a"}, model.Page{})
		noErr(t, err, "QueryDevices")
		wantIDs(t, ids(members), []string{a.ID}, "members of A's group")
		members, _, err = s.QueryDevices(ctx, tenB, model.DeviceQuery{GroupID: "grp-b"}, model.Page{})
		noErr(t, err, "QueryDevices")
		wantIDs(t, ids(members), nil, "members of B's group")
		got, err := s.CountDevicesByState(ctx, tenA)
		noErr(t, err, "CountDevicesByState")
		wantEqual(t, got, map[model.State]int64{model.StateActive: 1}, "A's devices by state")
	})
}

func ids(ds []model.Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}
