package lifecycle

import (
	"errors"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/model"
)

func TestCheck(t *testing.T) {
	cases := []struct {
		from, to model.State
		ok       bool
	}{
		{model.StateManufactured, model.StateClaimed, true},
		{model.StateClaimed, model.StateProvisioned, true},
		{model.StateProvisioned, model.StateActive, true},
		{model.StateActive, model.StateQuarantined, true},
		{model.StateQuarantined, model.StateActive, true},
		{model.StateActive, model.StateEndOfSupport, true},
		{model.StateEndOfSupport, model.StateDecommissioned, true},
		{model.StateActive, model.StateClaimed, true}, // ownership transfer
		{model.StateSuspended, model.StateActive, true},
		{model.StateManufactured, model.StateActive, false},
		{model.StateDecommissioned, model.StateActive, false},
		{model.StateQuarantined, model.StateClaimed, false},
		{model.StateActive, model.StateActive, false},
		{model.StateActive, "flying", false},
	}
	for _, tc := range cases {
		err := Check(tc.from, tc.to)
		if (err == nil) != tc.ok {
			t.Errorf("%s → %s: err = %v, want ok=%v", tc.from, tc.to, err, tc.ok)
		}
	}
}

func TestIllegalTransitionNamesAllowedStates(t *testing.T) {
	err := Check(model.StateManufactured, model.StateActive)
	var ill *IllegalTransitionError
	if !errors.As(err, &ill) {
		t.Fatalf("got %T", err)
	}
	msg := err.Error()
	for _, want := range []string{`"manufactured"`, `"active"`, "claimed", "decommissioned"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %s", msg, want)
		}
	}
	if err := Check(model.StateDecommissioned, model.StateActive); !strings.Contains(err.Error(), "final") {
		t.Errorf("decommissioned should be final: %v", err)
	}
}

// Every state is reachable from the initial one and can reach
// decommissioned: no dead ends in the table.
func TestTableIsConnected(t *testing.T) {
	seen := map[model.State]bool{model.StateManufactured: true}
	queue := []model.State{model.StateManufactured}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, n := range Next(s) {
			if !seen[n] {
				seen[n] = true
				queue = append(queue, n)
			}
		}
	}
	for _, s := range States() {
		if !seen[s] {
			t.Errorf("%s is unreachable", s)
		}
		if s != model.StateDecommissioned && Check(s, model.StateDecommissioned) != nil {
			t.Errorf("%s cannot be decommissioned", s)
		}
	}
}
