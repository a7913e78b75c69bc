package registry_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

const pw = "correct horse battery staple"

func newRegistry(t *testing.T) (*registry.Service, store.Store, *model.Tenant) {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "s.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.New(st)
	ten, err := reg.CreateTenant(context.Background(), root, "acme", model.TenantEnterprise)
	if err != nil {
		t.Fatal(err)
	}
	return reg, st, ten
}

var root = &authz.Principal{KeyID: "root", Role: model.RolePlatformAdmin}

func invalidField(t *testing.T, err error, field string) {
	t.Helper()
	var inv *registry.InvalidError
	if !errors.As(err, &inv) || inv.Field != field {
		t.Fatalf("got %v, want an invalid %s", err, field)
	}
}

func forbidden(t *testing.T, err error) {
	t.Helper()
	var f *registry.ForbiddenError
	if !errors.As(err, &f) {
		t.Fatalf("got %v, want forbidden", err)
	}
}

func TestCreateUser(t *testing.T) {
	reg, st, ten := newRegistry(t)
	ctx := context.Background()
	admin := &authz.Principal{KeyID: "k", TenantID: ten.ID, Role: model.RoleTenantAdmin}
	u, gen, err := reg.CreateUser(ctx, admin, ten.ID, registry.UserInput{Email: "  Ops@Acme.Example ", Role: model.RoleOperator, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	if u.Email != "ops@acme.example" || u.Name != "ops@acme.example" || gen != "" || u.TenantID != ten.ID {
		t.Fatalf("user %+v, generated %q", u, gen)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$") || strings.Contains(u.PasswordHash, pw) {
		t.Fatalf("stored hash %q", u.PasswordHash)
	}
	// A generated password works and is long.
	v, gen, err := reg.CreateUser(ctx, admin, ten.ID, registry.UserInput{Email: "v@acme.example", Name: "Vic", Role: model.RoleViewer})
	if err != nil || len(gen) < 20 {
		t.Fatalf("generated password %q: %v", gen, err)
	}
	if got, err := reg.Authenticate(ctx, "V@acme.example", gen); err != nil || got.ID != v.ID {
		t.Fatalf("signing in with the generated password: %v", err)
	}

	for _, c := range []struct {
		in    registry.UserInput
		field string
	}{
		{registry.UserInput{Email: "not an email", Role: model.RoleViewer, Password: pw}, "email"},
		{registry.UserInput{Email: "Name <n@acme.example>", Role: model.RoleViewer, Password: pw}, "email"},
		{registry.UserInput{Email: "n@acme.example", Role: model.RoleViewer, Password: "short"}, "password"},
		{registry.UserInput{Email: "n@acme.example", Role: model.RoleViewer, Password: "n@acme.example"}, "password"},
		{registry.UserInput{Email: "n@acme.example", Role: "root", Password: pw}, "role"},
		{registry.UserInput{Email: "n@acme.example", Role: model.RolePlatformAdmin, Password: pw}, "role"},
	} {
		_, _, err := reg.CreateUser(ctx, admin, ten.ID, c.in)
		invalidField(t, err, c.field)
	}
	_, _, err = reg.CreateUser(ctx, admin, ten.ID, registry.UserInput{Email: "ops@acme.example", Role: model.RoleViewer, Password: pw})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a taken email: %v", err)
	}
	op := &authz.Principal{UserID: u.ID, TenantID: ten.ID, Role: model.RoleOperator}
	_, _, err = reg.CreateUser(ctx, op, ten.ID, registry.UserInput{Email: "boss@acme.example", Role: model.RoleTenantAdmin, Password: pw})
	forbidden(t, err)
	_, _, err = reg.CreateUser(ctx, admin, "ten_nope", registry.UserInput{Email: "x@acme.example", Role: model.RoleViewer, Password: pw})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a user in a tenant that does not exist: %v", err)
	}

	// The audit trail has the creation, without any secret.
	recs, err := st.ListAuditByTarget(ctx, ten.ID, u.ID, 0, 10)
	if err != nil || len(recs) != 1 || recs[0].Action != "user.create" || recs[0].Actor != "key:k" {
		t.Fatalf("audit of the creation: %+v %v", recs, err)
	}
	if s := string(recs[0].Summary); strings.Contains(s, "argon2") || strings.Contains(s, pw) {
		t.Fatalf("the audit summary holds a secret: %s", s)
	}
}

func TestUpdateUserAndSessions(t *testing.T) {
	reg, st, ten := newRegistry(t)
	ctx := context.Background()
	admin := &authz.Principal{KeyID: "k", TenantID: ten.ID, Role: model.RoleTenantAdmin}
	boss, _, _ := reg.CreateUser(ctx, admin, ten.ID, registry.UserInput{Email: "boss@acme.example", Role: model.RoleTenantAdmin, Password: pw})
	op, _, _ := reg.CreateUser(ctx, admin, ten.ID, registry.UserInput{Email: "op@acme.example", Role: model.RoleOperator, Password: pw})
	now := time.Now()
	for _, id := range []string{"s1", "s2"} {
		if err := st.CreateSession(ctx, &model.Session{ID: id, UserID: op.ID, TenantID: ten.ID, CSRF: "c", CreatedAt: now,
			ExpiresAt: now.Add(time.Hour), LastSeen: now}); err != nil {
			t.Fatal(err)
		}
	}
	yes := true
	u, err := reg.UpdateUser(ctx, admin, ten.ID, op.ID, registry.UserPatch{Disabled: &yes})
	if err != nil || !u.Disabled() {
		t.Fatalf("disabling: %+v %v", u, err)
	}
	if _, err := st.GetSession(ctx, "s1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a disabled user's session survives: %v", err)
	}
	if _, err := reg.Authenticate(ctx, "op@acme.example", pw); !errors.Is(err, registry.ErrBadCredentials) {
		t.Fatalf("a disabled user signs in: %v", err)
	}
	no := false
	if _, err := reg.UpdateUser(ctx, admin, ten.ID, op.ID, registry.UserPatch{Disabled: &no}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Authenticate(ctx, "op@acme.example", pw); err != nil {
		t.Fatalf("re-enabled user: %v", err)
	}

	// Nobody disables themselves or changes their own role; an operator
	// cannot touch an admin; a role above the caller's is refused.
	self := &authz.Principal{UserID: boss.ID, TenantID: ten.ID, Role: model.RoleTenantAdmin}
	_, err = reg.UpdateUser(ctx, self, ten.ID, boss.ID, registry.UserPatch{Disabled: &yes})
	invalidField(t, err, "user")
	opP := &authz.Principal{UserID: op.ID, TenantID: ten.ID, Role: model.RoleOperator}
	_, err = reg.UpdateUser(ctx, opP, ten.ID, boss.ID, registry.UserPatch{Disabled: &yes})
	forbidden(t, err)
	r := model.RoleTenantAdmin
	_, err = reg.UpdateUser(ctx, opP, ten.ID, op.ID, registry.UserPatch{Role: &r})
	if err == nil {
		t.Fatal("an operator made itself tenant admin")
	}
	// Across tenants: not found.
	other, _ := reg.CreateTenant(ctx, root, "other", model.TenantHousehold)
	_, err = reg.UpdateUser(ctx, &authz.Principal{KeyID: "k2", TenantID: other.ID, Role: model.RoleTenantAdmin}, other.ID, op.ID,
		registry.UserPatch{Disabled: &yes})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("disabling another tenant's user: %v", err)
	}
}

func TestSetPassword(t *testing.T) {
	reg, st, ten := newRegistry(t)
	ctx := context.Background()
	admin := &authz.Principal{KeyID: "k", TenantID: ten.ID, Role: model.RoleTenantAdmin}
	u, _, _ := reg.CreateUser(ctx, admin, ten.ID, registry.UserInput{Email: "op@acme.example", Role: model.RoleOperator, Password: pw})
	now := time.Now()
	for _, id := range []string{"mine", "other"} {
		st.CreateSession(ctx, &model.Session{ID: id, UserID: u.ID, TenantID: ten.ID, CSRF: "c", CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now})
	}
	me := &authz.Principal{UserID: u.ID, TenantID: ten.ID, Role: model.RoleOperator}
	invalidField(t, reg.SetPassword(ctx, me, ten.ID, u.ID, "wrong", "another long passphrase", "mine"), "current_password")
	invalidField(t, reg.SetPassword(ctx, me, ten.ID, u.ID, pw, "short", "mine"), "password")
	if err := reg.SetPassword(ctx, me, ten.ID, u.ID, pw, "another long passphrase", "mine"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetSession(ctx, "mine"); err != nil {
		t.Fatalf("the session that changed the password ended: %v", err)
	}
	if _, err := st.GetSession(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another session survived: %v", err)
	}
	if _, err := reg.Authenticate(ctx, "op@acme.example", pw); err == nil {
		t.Fatal("the old password still works")
	}
	// An admin resets it without the current one.
	if err := reg.SetPassword(ctx, admin, ten.ID, u.ID, "", "reset by the admin ok", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Authenticate(ctx, "op@acme.example", "reset by the admin ok"); err != nil {
		t.Fatal(err)
	}
}

func TestBootstrapUser(t *testing.T) {
	reg, _, _ := newRegistry(t)
	ctx := context.Background()
	u, pass, err := reg.BootstrapUser(ctx, "admin@localhost")
	if err != nil || u == nil || u.Role != model.RolePlatformAdmin || u.TenantID != "" || len(pass) < 20 {
		t.Fatalf("first start: %+v %q %v", u, pass, err)
	}
	if _, err := reg.Authenticate(ctx, "admin@localhost", pass); err != nil {
		t.Fatal(err)
	}
	u, pass, err = reg.BootstrapUser(ctx, "admin@localhost")
	if err != nil || u != nil || pass != "" {
		t.Fatalf("second start made another admin: %+v %q %v", u, pass, err)
	}
}
