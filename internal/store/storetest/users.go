package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

func newUser(id, tenant, email string, role model.Role) model.User {
	return model.User{ID: id, TenantID: tenant, Email: email, Name: "User " + id,
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", Role: role,
		CreatedAt: base, CreatedBy: "key:root", UpdatedAt: base}
}

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	users := []model.User{
		newUser("usr-a2", tenA, "op@a.example", model.RoleOperator),
		newUser("usr-a1", tenA, "admin@a.example", model.RoleTenantAdmin),
		newUser("usr-b1", tenB, "viewer@b.example", model.RoleViewer),
		newUser("usr-p1", "", "root@example.com", model.RolePlatformAdmin),
	}
	disabled := at(time.Hour)
	users[0].DisabledAt = &disabled
	mustUpdate(t, s, func(tx store.Tx) error {
		for i := range users {
			if err := tx.CreateUser(ctx, &users[i]); err != nil {
				return err
			}
		}
		return nil
	})

	t.Run("get", func(t *testing.T) {
		for _, u := range users {
			got, err := s.GetUser(ctx, u.TenantID, u.ID)
			noErr(t, err, "GetUser "+u.ID)
			wantEqual(t, *got, u, "user")
			got, err = s.GetUserByEmail(ctx, u.Email)
			noErr(t, err, "GetUserByEmail "+u.Email)
			wantEqual(t, *got, u, "user by email")
		}
		_, err := s.GetUser(ctx, tenB, "usr-a1")
		wantErr(t, err, store.ErrNotFound, "GetUser across tenants")
		_, err = s.GetUser(ctx, "", "usr-a1")
		wantErr(t, err, store.ErrNotFound, "GetUser of a tenant user as a platform user")
		_, err = s.GetUser(ctx, tenA, "usr-p1")
		wantErr(t, err, store.ErrNotFound, "GetUser of a platform user in a tenant")
		_, err = s.GetUserByEmail(ctx, "nobody@example.com")
		wantErr(t, err, store.ErrNotFound, "GetUserByEmail of an unknown email")
	})

	t.Run("email is unique across tenants", func(t *testing.T) {
		dup := newUser("usr-x", tenB, "admin@a.example", model.RoleViewer)
		err := s.Update(ctx, func(tx store.Tx) error { return tx.CreateUser(ctx, &dup) })
		wantConflict(t, err, "admin@a.example", "CreateUser with a taken email")
		_, err = s.GetUser(ctx, tenB, "usr-x")
		wantErr(t, err, store.ErrNotFound, "the refused user")
	})

	t.Run("list", func(t *testing.T) {
		for _, c := range []struct {
			tenant string
			want   []string
		}{
			{tenA, []string{"usr-a1", "usr-a2"}},
			{tenB, []string{"usr-b1"}},
			{"", []string{"usr-p1"}},
			{"ten-none", nil},
		} {
			for _, limit := range []int{0, 1, 2} {
				got := walk(t, limit, func(u model.User) string { return u.ID }, func(cur string) ([]model.User, string, error) {
					return s.ListUsers(ctx, c.tenant, store.ListOptions{Limit: limit, Cursor: cur})
				})
				wantIDs(t, got, c.want, fmt.Sprintf("users of tenant %q, limit %d", c.tenant, limit))
			}
		}
		for _, bad := range garbageCursors {
			_, _, err := s.ListUsers(ctx, tenA, store.ListOptions{Cursor: bad})
			wantErr(t, err, store.ErrBadCursor, "ListUsers with cursor "+bad[:min(len(bad), 20)])
		}
	})

	t.Run("update", func(t *testing.T) {
		u := users[1]
		u.Name, u.Role, u.PasswordHash, u.UpdatedAt = "Renamed", model.RoleViewer, "$argon2id$new", at(2*time.Hour)
		u.DisabledAt = ptr(at(3 * time.Hour))
		mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateUser(ctx, &u) })
		got, err := s.GetUser(ctx, tenA, u.ID)
		noErr(t, err, "GetUser after update")
		wantEqual(t, *got, u, "updated user")

		// Enabling again clears the time.
		u.DisabledAt = nil
		mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateUser(ctx, &u) })
		got, _ = s.GetUser(ctx, tenA, u.ID)
		wantEqual(t, *got, u, "re-enabled user")

		// Email and tenant do not change; another tenant's update misses.
		moved := u
		moved.Email, moved.Name = "changed@a.example", "Again"
		mustUpdate(t, s, func(tx store.Tx) error { return tx.UpdateUser(ctx, &moved) })
		got, _ = s.GetUser(ctx, tenA, u.ID)
		if got.Email != u.Email {
			t.Fatalf("UpdateUser changed the email to %q", got.Email)
		}
		across := u
		across.TenantID, across.Name = tenB, "Hijacked"
		err = s.Update(ctx, func(tx store.Tx) error { return tx.UpdateUser(ctx, &across) })
		wantErr(t, err, store.ErrNotFound, "UpdateUser across tenants")
		got, _ = s.GetUser(ctx, tenA, u.ID)
		if got.Name == "Hijacked" {
			t.Fatal("UpdateUser across tenants changed the user")
		}
	})
}

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	ua := newUser("usr-a", tenA, "a@example.com", model.RoleOperator)
	ub := newUser("usr-b", tenB, "b@example.com", model.RoleOperator)
	mustUpdate(t, s, func(tx store.Tx) error {
		if err := tx.CreateUser(ctx, &ua); err != nil {
			return err
		}
		return tx.CreateUser(ctx, &ub)
	})
	mk := func(id string, u model.User, expires time.Duration) model.Session {
		return model.Session{ID: id, UserID: u.ID, TenantID: u.TenantID, CSRF: "csrf-" + id, CreatedAt: base,
			ExpiresAt: at(expires), LastSeen: base}
	}
	sessions := []model.Session{mk("s1", ua, time.Hour), mk("s2", ua, 2*time.Hour), mk("s3", ua, time.Minute),
		mk("s4", ub, time.Hour)}
	for i := range sessions {
		noErr(t, s.CreateSession(ctx, &sessions[i]), "CreateSession")
	}
	for _, want := range sessions {
		got, err := s.GetSession(ctx, want.ID)
		noErr(t, err, "GetSession "+want.ID)
		wantEqual(t, *got, want, "session")
	}
	dup := mk("s1", ub, time.Hour)
	wantErr(t, s.CreateSession(ctx, &dup), store.ErrConflict, "CreateSession with a taken ID")
	orphan := mk("s9", model.User{ID: "usr-nobody", TenantID: tenA}, time.Hour)
	if err := s.CreateSession(ctx, &orphan); err == nil {
		t.Fatal("CreateSession for a user that does not exist was accepted")
	}
	_, err := s.GetSession(ctx, "nope")
	wantErr(t, err, store.ErrNotFound, "GetSession of an unknown ID")

	noErr(t, s.TouchSession(ctx, "s1", at(10*time.Minute), at(5*time.Hour)), "TouchSession")
	noErr(t, s.SetSessionTenant(ctx, "s1", tenB), "SetSessionTenant")
	got, _ := s.GetSession(ctx, "s1")
	want := sessions[0]
	want.LastSeen, want.ExpiresAt, want.ViewTenant = at(10*time.Minute), at(5*time.Hour), tenB
	wantEqual(t, *got, want, "touched session")
	wantErr(t, s.TouchSession(ctx, "nope", base, base), store.ErrNotFound, "TouchSession of an unknown ID")
	wantErr(t, s.SetSessionTenant(ctx, "nope", tenA), store.ErrNotFound, "SetSessionTenant of an unknown ID")

	n, err := s.DeleteExpiredSessions(ctx, at(30*time.Minute))
	noErr(t, err, "DeleteExpiredSessions")
	wantEqual(t, n, int64(1), "expired sessions deleted")
	_, err = s.GetSession(ctx, "s3")
	wantErr(t, err, store.ErrNotFound, "an expired session after the sweep")

	// Signing a user out is tenant-scoped and may keep the current session.
	var ended int64
	mustUpdate(t, s, func(tx store.Tx) error {
		var err error
		ended, err = tx.DeleteUserSessions(ctx, tenB, "usr-a", "")
		return err
	})
	wantEqual(t, ended, int64(0), "sessions ended by another tenant")
	mustUpdate(t, s, func(tx store.Tx) error {
		var err error
		ended, err = tx.DeleteUserSessions(ctx, tenA, "usr-a", "s2")
		return err
	})
	wantEqual(t, ended, int64(1), "sessions ended")
	_, err = s.GetSession(ctx, "s1")
	wantErr(t, err, store.ErrNotFound, "a session of the signed-out user")
	_, err = s.GetSession(ctx, "s2")
	noErr(t, err, "the kept session")
	_, err = s.GetSession(ctx, "s4")
	noErr(t, err, "another user's session")

	noErr(t, s.DeleteSession(ctx, "s2"), "DeleteSession")
	wantErr(t, s.DeleteSession(ctx, "s2"), store.ErrNotFound, "DeleteSession twice")
}

func vc(v string, n int64) store.VersionCount { return store.VersionCount{Version: v, Count: n} }

func testOverview(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	pa := createProduct(t, s, tenA, "prd-a")
	pb := createProduct(t, s, tenB, "prd-b")
	// Tenant A: 3 × 1.10.0 (one spelled "1.10"), 2 × 1.9.2, 2 × 2.0.0-rc1, 1 without a version.
	versions := []string{"1.10.0", "1.10", "1.10.0", "1.9.2", "1.9.2", "2.0.0-rc1", "2.0.0-rc1", ""}
	for i, v := range versions {
		d := newDevice(tenA, pa.ID, fmt.Sprintf("dev-a%02d", i), fmt.Sprintf("A%02d", i))
		d.FirmwareVersion = v
		createDevice(t, s, d)
	}
	for i := range 5 {
		d := newDevice(tenB, pb.ID, fmt.Sprintf("dev-b%02d", i), fmt.Sprintf("B%02d", i))
		d.FirmwareVersion = "9.9.9"
		createDevice(t, s, d)
	}
	got, err := s.CountDevicesByFirmware(ctx, tenA, 10)
	noErr(t, err, "CountDevicesByFirmware")
	wantEqual(t, got, []store.VersionCount{vc("1.10", 3), vc("2.0.0-rc1", 2), vc("1.9.2", 2), vc("", 1)}, "firmware counts of A")
	got, err = s.CountDevicesByFirmware(ctx, tenA, 2)
	noErr(t, err, "CountDevicesByFirmware limit 2")
	wantEqual(t, got, []store.VersionCount{vc("1.10", 3), vc("2.0.0-rc1", 2)}, "top 2 firmware versions of A")
	got, err = s.CountDevicesByFirmware(ctx, "ten-none", 10)
	noErr(t, err, "CountDevicesByFirmware of an empty tenant")
	wantEqual(t, len(got), 0, "firmware counts of an empty tenant")

	for i := range 5 {
		for _, ten := range []string{tenA, tenB} {
			mustUpdate(t, s, func(tx store.Tx) error {
				target := "dev-x"
				if i%2 == 1 {
					target = "dev-y"
				}
				_, err := tx.Audit(ctx, ten, model.AuditEntry{Actor: "key:k", Action: "device.update", Target: target,
					Summary: map[string]int{"i": i}})
				return err
			})
		}
	}
	seqs := func(rs []model.AuditRecord) []int64 {
		out := []int64{}
		for _, r := range rs {
			if r.TenantID != tenA || r.Target != "dev-x" {
				t.Fatalf("record %d of %s about %s in A's trail of dev-x", r.Seq, r.TenantID, r.Target)
			}
			out = append(out, r.Seq)
		}
		return out
	}
	rs, err := s.ListAuditByTarget(ctx, tenA, "dev-x", 0, 10)
	noErr(t, err, "ListAuditByTarget")
	wantEqual(t, seqs(rs), []int64{5, 3, 1}, "dev-x's trail, newest first")
	if string(rs[0].Summary) != `{"i":4}` {
		t.Fatalf("summary %s, want {\"i\":4}", rs[0].Summary)
	}
	all, _ := s.ListAudit(ctx, tenA, 4, 1)
	wantEqual(t, rs[0], all[0], "record by target and by sequence")
	rs, err = s.ListAuditByTarget(ctx, tenA, "dev-x", 5, 1)
	noErr(t, err, "ListAuditByTarget before 5")
	wantEqual(t, seqs(rs), []int64{3}, "one page before 5")
	rs, _ = s.ListAuditByTarget(ctx, tenA, "dev-x", 1, 10)
	wantEqual(t, seqs(rs), []int64{}, "nothing before the first")
	rs, _ = s.ListAuditByTarget(ctx, tenA, "dev-none", 0, 10)
	wantEqual(t, len(rs), 0, "records of an unknown target")

	head, err := s.GetAuditHead(ctx, tenA)
	noErr(t, err, "GetAuditHead")
	last, _ := s.ListAudit(ctx, tenA, 4, 1)
	if head.TenantID != tenA || head.Seq != 5 || string(head.Hash) != string(last[0].Hash) {
		t.Fatalf("head of A: %+v, want seq 5 and the hash of record 5", head)
	}
	head, err = s.GetAuditHead(ctx, "ten-none")
	noErr(t, err, "GetAuditHead of a tenant without records")
	if head.Seq != 0 || head.TenantID != "ten-none" {
		t.Fatalf("head of an empty chain: %+v", head)
	}
}
