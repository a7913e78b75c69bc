package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/steward-iot/steward/internal/model"
)

// SettingsError names the detection setting that is out of range.
type SettingsError struct{ Field, Message string }

func (e *SettingsError) Error() string { return "detection." + e.Field + ": " + e.Message }

// CheckSettings checks a tenant's detection settings: thresholds within
// their ranges (0 turns a rule off), a sane baseline and clear window, and
// mitigations naming known alarm kinds and actions.
func CheckSettings(s model.DetectionSettings) error {
	for _, c := range []struct {
		field   string
		v, most int
	}{
		{"messages_per_minute", s.MessagesPerMinute, 1_000_000},
		{"bytes_per_minute", s.BytesPerMinute, 1 << 34},
		{"auth_failures_per_5min", s.AuthFailuresPer5Min, 100_000},
		{"connects_per_10min", s.ConnectsPer10Min, 100_000},
		{"new_sources_per_hour", s.NewSourcesPerHour, 1000},
		{"new_listening_ports", s.NewListeningPorts, MaxPorts},
		{"new_outbound_destinations", s.NewOutbound, MaxOutbound},
		{"process_count_jump", s.ProcessJump, MaxProcessCount},
		{"learning_minutes", s.LearningMinutes, 30 * 24 * 60},
		{"rate_floor_per_minute", s.RateFloor, 1_000_000},
	} {
		if c.v < 0 || c.v > c.most {
			return &SettingsError{c.field, fmt.Sprintf("must be 0 (off) to %d", c.most)}
		}
	}
	if math.IsNaN(s.Sigma) || s.Sigma < 1 || s.Sigma > 100 {
		return &SettingsError{"sigma", "must be 1 to 100 (standard deviations above the learned mean)"}
	}
	if s.ClearAfterMinutes < 1 || s.ClearAfterMinutes > 7*24*60 {
		return &SettingsError{"clear_after_minutes", fmt.Sprintf("must be 1 to %d", 7*24*60)}
	}
	if len(s.Mitigations) > len(model.AlarmKinds()) {
		return &SettingsError{"mitigations", "one action per alarm kind at most"}
	}
	for k, a := range s.Mitigations {
		if !k.Valid() {
			return &SettingsError{"mitigations", fmt.Sprintf("%q is not an alarm kind; use one of %s", k, joinKinds())}
		}
		if !a.Valid() {
			return &SettingsError{"mitigations." + string(k), fmt.Sprintf("%q is not an action; use one of %s", a, joinActions())}
		}
	}
	return nil
}

func joinKinds() string {
	var out []string
	for _, k := range model.AlarmKinds() {
		out = append(out, string(k))
	}
	return strings.Join(out, ", ")
}

func joinActions() string {
	var out []string
	for _, a := range model.MitigationActions() {
		out = append(out, string(a))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
