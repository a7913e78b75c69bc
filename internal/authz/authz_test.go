package authz

import (
	"errors"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

func TestKeyRoundTrip(t *testing.T) {
	secret, k := NewKey("ten_x", "ci", model.RoleOperator, "key:admin", nil)
	prefix, err := ParseKey(secret)
	if err != nil || prefix != k.Prefix {
		t.Fatalf("ParseKey(%q) = %q, %v; want %q", secret, prefix, err, k.Prefix)
	}
	now := time.Now()
	if err := CheckKey(secret, k, now); err != nil {
		t.Fatalf("fresh key refused: %v", err)
	}
	cases := []struct {
		name string
		key  string
		edit func(*model.APIKey)
	}{
		{"wrong secret", flipLast(secret), nil},
		{"revoked", secret, func(k *model.APIKey) { r := now.Add(-time.Second); k.RevokedAt = &r }},
		{"expired", secret, func(k *model.APIKey) { e := now.Add(-time.Second); k.ExpiresAt = &e }},
	}
	for _, tc := range cases {
		kk := *k
		if tc.edit != nil {
			tc.edit(&kk)
		}
		if err := CheckKey(tc.key, &kk, now); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: got %v, want ErrBadKey", tc.name, err)
		}
	}
	if k.Hash == nil || string(k.Hash) == secret {
		t.Fatal("the key must be stored hashed")
	}
}

func TestParseKeyRejects(t *testing.T) {
	for _, s := range []string{"", "stw", "stw_abc_def", "xyz_abcdefghijkl_abcdefghijklmnopqrstuvwxyz012345", "stw_abcdefghijkl_short"} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
}

func TestRoleTable(t *testing.T) {
	cases := []struct {
		role model.Role
		perm Permission
		want bool
	}{
		{model.RolePlatformAdmin, TenantsWrite, true},
		{model.RoleTenantAdmin, TenantsWrite, false},
		{model.RoleTenantAdmin, KeysWrite, true},
		{model.RoleOperator, DevicesLifecycle, true},
		{model.RoleOperator, KeysWrite, false},
		{model.RoleViewer, DevicesRead, true},
		{model.RoleViewer, DevicesWrite, false},
		{model.RoleViewer, DevicesLifecycle, false},
		{model.RoleVendor, ProductsWrite, true},
		{model.RoleVendor, DevicesLifecycle, false},
		{model.RoleDevice, DevicesRead, false},
		{"", DevicesRead, false},
	}
	for _, tc := range cases {
		if got := Allowed(tc.role, tc.perm); got != tc.want {
			t.Errorf("Allowed(%s, %s) = %v", tc.role, tc.perm, got)
		}
	}
}

// flipLast changes the last character, whatever it is.
func flipLast(s string) string {
	last := "x"
	if s[len(s)-1] == 'x' {
		last = "y"
	}
	return s[:len(s)-1] + last
}
