// Package lifecycle is the device state machine: one table of allowed
// transitions, and the error that names what is allowed when a caller asks
// for something else.
package lifecycle

import (
	"fmt"
	"slices"
	"strings"

	"github.com/steward-iot/steward/internal/model"
)

// allowed is the whole state machine. A device moves
// manufactured → claimed → provisioned → active ⇄ quarantined →
// end_of_support → decommissioned, may be suspended and resumed, and goes
// back to claimed when its ownership is transferred.
var allowed = map[model.State][]model.State{
	model.StateManufactured: {model.StateClaimed, model.StateDecommissioned},
	model.StateClaimed:      {model.StateProvisioned, model.StateManufactured, model.StateDecommissioned},
	model.StateProvisioned:  {model.StateActive, model.StateSuspended, model.StateClaimed, model.StateDecommissioned},
	model.StateActive: {model.StateQuarantined, model.StateSuspended, model.StateEndOfSupport,
		model.StateClaimed, model.StateDecommissioned},
	model.StateQuarantined: {model.StateActive, model.StateSuspended, model.StateEndOfSupport, model.StateDecommissioned},
	model.StateSuspended:   {model.StateActive, model.StateQuarantined, model.StateClaimed, model.StateDecommissioned},
	model.StateEndOfSupport: {model.StateActive, model.StateQuarantined, model.StateClaimed,
		model.StateDecommissioned},
	model.StateDecommissioned: nil,
}

// Initial are the states a device may be registered in.
var Initial = []model.State{model.StateManufactured, model.StateClaimed, model.StateProvisioned, model.StateActive}

// Next returns the states a device in state s may move to.
func Next(s model.State) []model.State {
	return slices.Clone(allowed[s])
}

// IllegalTransitionError says what was asked, what the device is in and
// what it could move to instead.
type IllegalTransitionError struct {
	From    model.State
	To      model.State
	Allowed []model.State
}

func (e *IllegalTransitionError) Error() string {
	if len(e.Allowed) == 0 {
		return fmt.Sprintf("cannot move a device from %q to %q: %q is final", e.From, e.To, e.From)
	}
	names := make([]string, len(e.Allowed))
	for i, s := range e.Allowed {
		names[i] = string(s)
	}
	return fmt.Sprintf("cannot move a device from %q to %q; from %q it may move to: %s",
		e.From, e.To, e.From, strings.Join(names, ", "))
}

// Check returns nil when from → to is allowed, and an error naming the
// current state and the allowed next states otherwise.
func Check(from, to model.State) error {
	if !to.Known() {
		return fmt.Errorf("%q is not a lifecycle state", to)
	}
	if slices.Contains(allowed[from], to) {
		return nil
	}
	return &IllegalTransitionError{From: from, To: to, Allowed: Next(from)}
}

// States lists every state in lifecycle order.
func States() []model.State {
	return []model.State{model.StateManufactured, model.StateClaimed, model.StateProvisioned,
		model.StateActive, model.StateQuarantined, model.StateSuspended, model.StateEndOfSupport,
		model.StateDecommissioned}
}
