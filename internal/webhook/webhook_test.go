package webhook

import (
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":"evt_1"}`)
	now := time.Now()
	h := Sign("whsec_x", now, body)
	if err := Verify("whsec_x", h, body, now, 5*time.Minute); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	cases := []struct {
		name   string
		secret string
		header string
		body   []byte
		at     time.Time
	}{
		{"wrong secret", "whsec_y", h, body, now},
		{"changed body", "whsec_x", h, []byte(`{"id":"evt_2"}`), now},
		{"stale", "whsec_x", h, body, now.Add(10 * time.Minute)},
		{"garbage", "whsec_x", "v1=abc", body, now},
		{"empty", "whsec_x", "", body, now},
	}
	for _, tc := range cases {
		if err := Verify(tc.secret, tc.header, tc.body, tc.at, 5*time.Minute); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestMatches(t *testing.T) {
	cases := []struct {
		types []string
		ev    string
		want  bool
	}{
		{nil, "device.created", true},
		{[]string{"device.created"}, "device.created", true},
		{[]string{"device.created"}, "device.deleted", false},
		{[]string{"device.*"}, "device.state_changed", true},
		{[]string{"device.*"}, "devices.x", false},
		{[]string{"product.created", "*"}, "anything", true},
	}
	for _, tc := range cases {
		if got := Matches(tc.types, tc.ev); got != tc.want {
			t.Errorf("Matches(%v, %s) = %v", tc.types, tc.ev, got)
		}
	}
}
