package secretbox

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	box, err := New(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New(bytes.Repeat([]byte{8}, KeySize))
	sealed := box.Seal("whsec_abc", "webhooks/ten-1/whk-1")
	if !IsSealed(sealed) || strings.Contains(sealed, "whsec_abc") {
		t.Fatalf("sealed value %q shows the secret or lacks the marker", sealed)
	}
	if again := box.Seal("whsec_abc", "webhooks/ten-1/whk-1"); again == sealed {
		t.Fatal("two seals of the same value are equal: the nonce is not fresh")
	}
	got, err := box.Open(sealed, "webhooks/ten-1/whk-1")
	if err != nil || got != "whsec_abc" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if got, err := box.Open(box.Seal("", "b"), "b"); err != nil || got != "" {
		t.Fatalf("empty value: %q, %v", got, err)
	}

	flip := []byte(sealed)
	flip[len(flip)-3] ^= 1
	tests := []struct {
		name    string
		box     *Box
		sealed  string
		binding string
		want    error // nil: any error
	}{
		{"another row", box, sealed, "webhooks/ten-1/whk-2", ErrOpen},
		{"another tenant", box, sealed, "webhooks/ten-2/whk-1", ErrOpen},
		{"another key", other, sealed, "webhooks/ten-1/whk-1", ErrOpen},
		{"altered", box, string(flip), "webhooks/ten-1/whk-1", nil},
		{"plain value", box, "whsec_abc", "webhooks/ten-1/whk-1", nil},
		{"not base64", box, Prefix + "!!!", "b", nil},
		{"too short", box, Prefix + "AAAA", "b", nil},
		{"empty", box, "", "b", nil},
	}
	for _, tt := range tests {
		got, err := tt.box.Open(tt.sealed, tt.binding)
		if err == nil || got != "" {
			t.Errorf("%s: Open = %q, %v; want an error", tt.name, got, err)
			continue
		}
		if tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestNewKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("a %d-byte key was taken", n)
		}
	}
	if k := NewKey(); len(k) != KeySize || bytes.Equal(k, make([]byte, KeySize)) {
		t.Fatalf("NewKey = %x", k)
	}
}

// FuzzOpen: no input makes Open panic, and only what Seal made opens: a
// value comes back only for the seeded sealed bytes (however they are
// spelled in base64) and their binding.
func FuzzOpen(f *testing.F) {
	box, _ := New(bytes.Repeat([]byte{7}, KeySize))
	sealed := box.Seal("whsec_abc", "b")
	f.Add(sealed, "b")
	f.Add(Prefix, "b")
	f.Add(Prefix+"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "")
	f.Add("whsec_plain", "b")
	f.Add(sealed, "c")
	f.Fuzz(func(t *testing.T, in, binding string) {
		got, err := box.Open(in, binding)
		if err != nil {
			if got != "" {
				t.Fatalf("error %v with a value %q", err, got)
			}
			return
		}
		if binding != "b" || got != "whsec_abc" {
			t.Fatalf("Open(%q, %q) = %q without an error: only the seeded value may open", in, binding, got)
		}
	})
}
