package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

func testGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	p := createProduct(t, s, tenA, "prd-1")
	for i := range 6 {
		d := newDevice(tenA, p.ID, fmt.Sprintf("dev-%d", i), fmt.Sprintf("SN-%d", i))
		if i%2 == 0 {
			d.Tags = []string{"beta"}
		}
		if i < 3 {
			d.State = model.StateActive
		}
		createDevice(t, s, d)
	}
	members := func(t *testing.T, tenantID, groupID string) []string {
		t.Helper()
		ds, _, err := s.QueryDevices(ctx, tenantID, model.DeviceQuery{GroupID: groupID}, model.Page{Limit: 100})
		noErr(t, err, "QueryDevices by group "+groupID)
		n, err := s.CountDevices(ctx, tenantID, model.DeviceQuery{GroupID: groupID})
		noErr(t, err, "CountDevices by group "+groupID)
		if n != int64(len(ds)) {
			t.Fatalf("group %s: CountDevices %d, QueryDevices %d", groupID, n, len(ds))
		}
		return ids(ds)
	}

	static := model.Group{ID: "grp-s", TenantID: tenA, Name: "lab", Kind: model.GroupStatic,
		Description: "devices on the lab bench", CreatedAt: at(time.Minute)}
	dynQ := model.DeviceQuery{Tags: []string{"beta"}, States: []model.State{model.StateActive}}
	dynamic := model.Group{ID: "grp-d", TenantID: tenA, Name: "active beta", Kind: model.GroupDynamic,
		Query: &dynQ, CreatedAt: at(2 * time.Minute)}
	mustUpdate(t, s, func(tx store.Tx) error {
		if err := tx.CreateGroup(ctx, &static); err != nil {
			return err
		}
		return tx.CreateGroup(ctx, &dynamic)
	})

	t.Run("get", func(t *testing.T) {
		for _, g := range []model.Group{static, dynamic} {
			got, err := s.GetGroup(ctx, tenA, g.ID)
			noErr(t, err, "GetGroup")
			wantEqual(t, *got, g, "group "+g.ID)
			_, err = s.GetGroup(ctx, tenB, g.ID)
			wantErr(t, err, store.ErrNotFound, "GetGroup across tenants")
		}
		_, err := s.GetGroup(ctx, tenA, "grp-missing")
		wantErr(t, err, store.ErrNotFound, "GetGroup of a missing group")
	})

	t.Run("duplicate name", func(t *testing.T) {
		dup := model.Group{ID: "grp-dup", TenantID: tenA, Name: static.Name, Kind: model.GroupStatic, CreatedAt: base}
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateGroup(ctx, &dup) })
		wantConflict(t, err, static.Name, "CreateGroup with a taken name")
		// Names are per tenant.
		other := model.Group{ID: "grp-b", TenantID: tenB, Name: static.Name, Kind: model.GroupStatic, CreatedAt: base}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateGroup(ctx, &other) })
	})

	t.Run("static membership", func(t *testing.T) {
		if got := members(t, tenA, static.ID); len(got) != 0 {
			t.Fatalf("a new static group has members %v", got)
		}
		mustUpdate(t, s, func(tx store.Tx) error {
			return tx.AddGroupMembers(ctx, tenA, static.ID, []string{"dev-4", "dev-1", "dev-3"})
		})
		wantIDs(t, members(t, tenA, static.ID), []string{"dev-1", "dev-3", "dev-4"}, "members after add")
		// Adding a member again is harmless.
		mustUpdate(t, s, func(tx store.Tx) error {
			return tx.AddGroupMembers(ctx, tenA, static.ID, []string{"dev-1", "dev-5"})
		})
		wantIDs(t, members(t, tenA, static.ID), []string{"dev-1", "dev-3", "dev-4", "dev-5"}, "members after re-add")

		// A missing device fails the whole call: nothing of it is kept.
		err := s.Update(ctx, func(tx store.Tx) error {
			return tx.AddGroupMembers(ctx, tenA, static.ID, []string{"dev-0", "dev-missing"})
		})
		wantErr(t, err, store.ErrNotFound, "AddGroupMembers with a missing device")
		wantIDs(t, members(t, tenA, static.ID), []string{"dev-1", "dev-3", "dev-4", "dev-5"}, "members after a failed add")
		err = s.Update(ctx, func(tx store.Tx) error {
			return tx.AddGroupMembers(ctx, tenA, "grp-missing", []string{"dev-0"})
		})
		wantErr(t, err, store.ErrNotFound, "AddGroupMembers to a missing group")

		mustUpdate(t, s, func(tx store.Tx) error {
			return tx.RemoveGroupMembers(ctx, tenA, static.ID, []string{"dev-3", "dev-1"})
		})
		wantIDs(t, members(t, tenA, static.ID), []string{"dev-4", "dev-5"}, "members after remove")
		err = s.Update(ctx, func(tx store.Tx) error {
			return tx.RemoveGroupMembers(ctx, tenA, static.ID, []string{"dev-1"})
		})
		wantErr(t, err, store.ErrNotFound, "RemoveGroupMembers of a non-member")

		// A deleted device leaves its groups.
		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteDevice(ctx, tenA, "dev-5") })
		wantIDs(t, members(t, tenA, static.ID), []string{"dev-4"}, "members after the device was deleted")
	})

	t.Run("dynamic evaluation", func(t *testing.T) {
		// dev-0 and dev-2: beta and active.
		wantIDs(t, members(t, tenA, dynamic.ID), []string{"dev-0", "dev-2"}, "dynamic members")
		// The query is evaluated when read: a device that starts to match
		// joins, one that stops matching leaves.
		d1 := getDevice(t, s, tenA, "dev-1")
		d1.Tags = []string{"beta", "extra"}
		mustUpdate(t, s, func(tx store.Tx) error {
			if err := tx.UpdateDevice(ctx, &d1); err != nil {
				return err
			}
			return tx.SetDeviceState(ctx, tenA, &model.Transition{DeviceID: "dev-2", From: model.StateActive,
				To: model.StateQuarantined, Actor: "svc:defender", Reason: "anomaly", At: at(time.Hour)})
		})
		wantIDs(t, members(t, tenA, dynamic.ID), []string{"dev-0", "dev-1"}, "dynamic members after changes")
		// Combined with the caller's own filter.
		ds, _, err := s.QueryDevices(ctx, tenA, model.DeviceQuery{GroupID: dynamic.ID, SerialPrefix: "SN-1"}, model.Page{})
		noErr(t, err, "QueryDevices")
		wantIDs(t, ids(ds), []string{"dev-1"}, "dynamic group and serial prefix")
		// Adding explicit members to a dynamic group does not change what it selects.
		_ = s.Update(ctx, func(tx store.Tx) error { return tx.AddGroupMembers(ctx, tenA, dynamic.ID, []string{"dev-4"}) })
		wantIDs(t, members(t, tenA, dynamic.ID), []string{"dev-0", "dev-1"}, "dynamic members after an explicit add")
	})

	t.Run("list", func(t *testing.T) {
		extra := []string{"grp-x3", "grp-x1", "grp-x2"}
		mustUpdate(t, s, func(tx store.Tx) error {
			for _, id := range extra {
				if err := tx.CreateGroup(ctx, &model.Group{ID: id, TenantID: tenA, Name: "name " + id,
					Kind: model.GroupStatic, CreatedAt: base}); err != nil {
					return err
				}
			}
			return nil
		})
		want := append([]string{static.ID, dynamic.ID}, extra...)
		slices.Sort(want)
		for _, limit := range []int{0, 1, 2, 5} {
			got := walk(t, limit, func(g model.Group) string { return g.ID }, func(c string) ([]model.Group, string, error) {
				return s.ListGroups(ctx, tenA, store.ListOptions{Limit: limit, Cursor: c})
			})
			wantIDs(t, got, want, fmt.Sprintf("A's groups by pages of %d", limit))
		}
		got, _, err := s.ListGroups(ctx, tenB, store.ListOptions{})
		noErr(t, err, "ListGroups")
		if len(got) != 1 || got[0].ID != "grp-b" {
			t.Fatalf("B's groups: %+v", got)
		}
		for _, c := range garbageCursors {
			_, _, err := s.ListGroups(ctx, tenA, store.ListOptions{Cursor: c})
			wantErr(t, err, store.ErrBadCursor, "ListGroups with a garbage cursor")
		}
	})

	t.Run("delete", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error { return tx.DeleteGroup(ctx, tenB, static.ID) })
		wantErr(t, err, store.ErrNotFound, "DeleteGroup across tenants")
		wantIDs(t, members(t, tenA, static.ID), []string{"dev-4"}, "members after B's delete attempt")

		for _, id := range []string{static.ID, dynamic.ID} {
			mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteGroup(ctx, tenA, id) })
			_, err := s.GetGroup(ctx, tenA, id)
			wantErr(t, err, store.ErrNotFound, "GetGroup after delete")
			_, _, err = s.QueryDevices(ctx, tenA, model.DeviceQuery{GroupID: id}, model.Page{})
			wantErr(t, err, store.ErrNotFound, "QueryDevices by a deleted group")
			err = s.Update(ctx, func(tx store.Tx) error { return tx.DeleteGroup(ctx, tenA, id) })
			wantErr(t, err, store.ErrNotFound, "second DeleteGroup")
		}
		// The devices stay.
		n, err := s.CountDevices(ctx, tenA, model.DeviceQuery{})
		noErr(t, err, "CountDevices")
		if n != 5 {
			t.Fatalf("%d devices after deleting the groups, want 5", n)
		}
		// The name is free again, and the new group starts empty.
		again := model.Group{ID: "grp-s2", TenantID: tenA, Name: static.Name, Kind: model.GroupStatic, CreatedAt: base}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateGroup(ctx, &again) })
		if got := members(t, tenA, again.ID); len(got) != 0 {
			t.Fatalf("a re-created group has members %v", got)
		}
	})
}

func testAPIKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	exp := at(90 * 24 * time.Hour)
	mk := func(id, tenant, prefix string, role model.Role) model.APIKey {
		return model.APIKey{ID: id, TenantID: tenant, Name: "key " + id, Prefix: prefix,
			Hash: []byte("hash-of-" + id + "\x00\xff"), Role: role, CreatedAt: base, CreatedBy: "user:root"}
	}
	keys := []model.APIKey{
		mk("key-a2", tenA, "stw_a2", model.RoleOperator),
		mk("key-a1", tenA, "stw_a1", model.RoleTenantAdmin),
		mk("key-a3", tenA, "stw_a3", model.RoleViewer),
		mk("key-b1", tenB, "stw_b1", model.RoleViewer),
		mk("key-p2", "", "stw_p2", model.RolePlatformAdmin),
		mk("key-p1", "", "stw_p1", model.RolePlatformAdmin),
	}
	keys[0].ExpiresAt = &exp
	mustUpdate(t, s, func(tx store.Tx) error {
		for i := range keys {
			if err := tx.CreateAPIKey(ctx, &keys[i]); err != nil {
				return err
			}
		}
		return nil
	})

	t.Run("by prefix", func(t *testing.T) {
		for _, k := range keys {
			got, err := s.GetAPIKeyByPrefix(ctx, k.Prefix)
			noErr(t, err, "GetAPIKeyByPrefix "+k.Prefix)
			wantEqual(t, *got, k, "key by prefix")
		}
		_, err := s.GetAPIKeyByPrefix(ctx, "stw_nope")
		wantErr(t, err, store.ErrNotFound, "GetAPIKeyByPrefix of an unknown prefix")
	})

	t.Run("get", func(t *testing.T) {
		for _, k := range keys {
			got, err := s.GetAPIKey(ctx, k.TenantID, k.ID)
			noErr(t, err, "GetAPIKey "+k.ID)
			wantEqual(t, *got, k, "key")
		}
		_, err := s.GetAPIKey(ctx, tenB, "key-a1")
		wantErr(t, err, store.ErrNotFound, "GetAPIKey across tenants")
		_, err = s.GetAPIKey(ctx, "", "key-a1")
		wantErr(t, err, store.ErrNotFound, "GetAPIKey of a tenant key as a platform key")
		_, err = s.GetAPIKey(ctx, tenA, "key-p1")
		wantErr(t, err, store.ErrNotFound, "GetAPIKey of a platform key in a tenant")
	})

	t.Run("duplicate prefix", func(t *testing.T) {
		dup := mk("key-x", tenB, "stw_a1", model.RoleViewer)
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateAPIKey(ctx, &dup) })
		wantErr(t, err, store.ErrConflict, "CreateAPIKey with a taken prefix")
	})

	t.Run("list", func(t *testing.T) {
		for _, c := range []struct {
			tenant string
			want   []string
		}{
			{tenA, []string{"key-a1", "key-a2", "key-a3"}},
			{tenB, []string{"key-b1"}},
			{"", []string{"key-p1", "key-p2"}},
			{"ten-none", nil},
		} {
			for _, limit := range []int{0, 1, 2} {
				got := walk(t, limit, func(k model.APIKey) string { return k.ID }, func(cur string) ([]model.APIKey, string, error) {
					return s.ListAPIKeys(ctx, c.tenant, store.ListOptions{Limit: limit, Cursor: cur})
				})
				wantIDs(t, got, c.want, fmt.Sprintf("keys of tenant %q, limit %d", c.tenant, limit))
			}
		}
		for _, c := range garbageCursors {
			_, _, err := s.ListAPIKeys(ctx, tenA, store.ListOptions{Cursor: c})
			wantErr(t, err, store.ErrBadCursor, "ListAPIKeys with a garbage cursor")
		}
	})

	t.Run("revoke", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error { return tx.RevokeAPIKey(ctx, tenB, "key-a1", at(time.Hour)) })
		wantErr(t, err, store.ErrNotFound, "RevokeAPIKey across tenants")
		if k, _ := s.GetAPIKey(ctx, tenA, "key-a1"); k == nil || k.RevokedAt != nil {
			t.Fatalf("key after a revoke across tenants: %+v", k)
		}

		when := at(2 * time.Hour)
		mustUpdate(t, s, func(tx store.Tx) error { return tx.RevokeAPIKey(ctx, tenA, "key-a1", when) })
		got, err := s.GetAPIKeyByPrefix(ctx, "stw_a1")
		noErr(t, err, "GetAPIKeyByPrefix")
		if got.RevokedAt == nil || !got.RevokedAt.Equal(when) {
			t.Fatalf("RevokedAt = %v, want %v", got.RevokedAt, when)
		}
		err = s.Update(ctx, func(tx store.Tx) error { return tx.RevokeAPIKey(ctx, tenA, "key-a1", at(3*time.Hour)) })
		wantErr(t, err, store.ErrNotFound, "second RevokeAPIKey")
		got, _ = s.GetAPIKey(ctx, tenA, "key-a1")
		if got == nil || got.RevokedAt == nil || !got.RevokedAt.Equal(when) {
			t.Fatalf("a second revoke moved RevokedAt: %+v", got)
		}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.RevokeAPIKey(ctx, "", "key-p1", when) })
		err = s.Update(ctx, func(tx store.Tx) error { return tx.RevokeAPIKey(ctx, tenA, "key-missing", when) })
		wantErr(t, err, store.ErrNotFound, "RevokeAPIKey of a missing key")
		// Revoked keys are still listed (the list shows their state).
		list, _, err := s.ListAPIKeys(ctx, tenA, store.ListOptions{})
		noErr(t, err, "ListAPIKeys")
		if len(list) != 3 {
			t.Fatalf("A lists %d keys after a revoke, want 3", len(list))
		}
	})

	t.Run("touch", func(t *testing.T) {
		for _, when := range []time.Time{at(4 * time.Hour), at(5*time.Hour + 123456*time.Microsecond)} {
			noErr(t, s.TouchAPIKey(ctx, "key-a2", when), "TouchAPIKey")
			got, err := s.GetAPIKey(ctx, tenA, "key-a2")
			noErr(t, err, "GetAPIKey")
			if got.LastUsed == nil || !got.LastUsed.Equal(when) {
				t.Fatalf("LastUsed = %v, want %v", got.LastUsed, when)
			}
		}
		other, err := s.GetAPIKey(ctx, tenA, "key-a3")
		noErr(t, err, "GetAPIKey")
		if other.LastUsed != nil {
			t.Fatalf("touching one key set LastUsed of another: %v", other.LastUsed)
		}
	})
}
