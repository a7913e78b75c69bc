package model

import (
	"encoding/json"
	"time"
)

// AlarmState is where an alarm is in its life: active while its condition
// holds, acknowledged once an operator has seen it (and it still holds),
// cleared when the metric was back to normal for a window.
type AlarmState string

const (
	AlarmActive       AlarmState = "active"
	AlarmAcknowledged AlarmState = "acknowledged"
	AlarmCleared      AlarmState = "cleared"
)

// Open reports whether the alarm still stands (active or acknowledged).
func (s AlarmState) Open() bool { return s == AlarmActive || s == AlarmAcknowledged }

// AlarmKind names what an alarm is about (the rule or baseline that fired).
type AlarmKind string

const (
	// Rules over what the broker sees.
	AlarmMessageRate     AlarmKind = "message_rate"
	AlarmByteRate        AlarmKind = "byte_rate"
	AlarmAuthFailures    AlarmKind = "auth_failures"
	AlarmConnectionChurn AlarmKind = "connection_churn"
	AlarmNewSources      AlarmKind = "new_source_addresses"
	// Learned per-device baselines over the same rates.
	AlarmMessageRateAnomaly AlarmKind = "message_rate_anomaly"
	AlarmByteRateAnomaly    AlarmKind = "byte_rate_anomaly"
	// What the agent reports on d/{id}/security/metrics.
	AlarmNewListeningPorts AlarmKind = "new_listening_ports"
	AlarmNewOutbound       AlarmKind = "new_outbound_destinations"
	AlarmOutsideProfile    AlarmKind = "outbound_outside_profile"
	AlarmProcessJump       AlarmKind = "process_count_jump"
)

// AlarmKinds lists every kind, in the order the docs describe them.
func AlarmKinds() []AlarmKind {
	return []AlarmKind{AlarmMessageRate, AlarmByteRate, AlarmAuthFailures, AlarmConnectionChurn, AlarmNewSources,
		AlarmMessageRateAnomaly, AlarmByteRateAnomaly, AlarmNewListeningPorts, AlarmNewOutbound, AlarmOutsideProfile,
		AlarmProcessJump}
}

// Valid reports whether k is a known kind.
func (k AlarmKind) Valid() bool {
	for _, o := range AlarmKinds() {
		if o == k {
			return true
		}
	}
	return false
}

// Severity is how bad an alarm of this kind is.
func (k AlarmKind) Severity() Severity {
	switch k {
	case AlarmNewListeningPorts, AlarmOutsideProfile, AlarmAuthFailures:
		return SeverityHigh
	case AlarmNewOutbound, AlarmMessageRate, AlarmByteRate, AlarmProcessJump:
		return SeverityMedium
	}
	return SeverityLow
}

// MitigationAction is what the platform does about an alarm.
type MitigationAction string

const (
	// MitigateQuarantine reduces the device to its update-only topics at once.
	MitigateQuarantine MitigationAction = "quarantine"
	// MitigateDisconnect ends the device's connection (it may connect again).
	MitigateDisconnect MitigationAction = "disconnect"
	// MitigateRevoke revokes the device's current certificate.
	MitigateRevoke MitigationAction = "revoke_certificate"
	// MitigateSuspend suspends the device (it may not connect).
	MitigateSuspend MitigationAction = "suspend"
	// MitigateUpdate asks for an update of the device (see docs/security.md).
	MitigateUpdate MitigationAction = "update"
	// MitigateNotify only raises device.mitigated (webhooks, event stream).
	MitigateNotify MitigationAction = "notify"
)

// MitigationActions lists every action.
func MitigationActions() []MitigationAction {
	return []MitigationAction{MitigateQuarantine, MitigateDisconnect, MitigateRevoke, MitigateSuspend, MitigateUpdate, MitigateNotify}
}

// Valid reports whether a is a known action.
func (a MitigationAction) Valid() bool {
	for _, o := range MitigationActions() {
		if o == a {
			return true
		}
	}
	return false
}

// Mitigation is what was done about an alarm.
type Mitigation struct {
	Action MitigationAction `json:"action"`
	At     time.Time        `json:"at"`
	// Result is applied, failed or skipped (e.g. already quarantined).
	Result string `json:"result" doc:"applied, failed or skipped."`
	Detail string `json:"detail,omitempty"`
}

// Alarm is one misbehaviour of one device: there is at most one open
// alarm per device and kind; raising it again counts up.
type Alarm struct {
	ID          string          `json:"id"`
	TenantID    string          `json:"tenant_id"`
	DeviceID    string          `json:"device_id"`
	Kind        AlarmKind       `json:"kind"`
	Severity    Severity        `json:"severity"`
	State       AlarmState      `json:"state"`
	Title       string          `json:"title"`
	FirstRaised time.Time       `json:"first_raised"`
	LastRaised  time.Time       `json:"last_raised"`
	Count       int64           `json:"count" doc:"How often it was raised while open."`
	Evidence    json.RawMessage `json:"evidence" doc:"What the detector saw: the metric, its window, the threshold or baseline."`
	// Acknowledgement by an operator.
	AcknowledgedBy string      `json:"acknowledged_by,omitempty"`
	AcknowledgedAt *time.Time  `json:"acknowledged_at,omitempty"`
	AckNote        string      `json:"ack_note,omitempty"`
	ClearedAt      *time.Time  `json:"cleared_at,omitempty"`
	Mitigation     *Mitigation `json:"mitigation,omitempty"`
}

// AlarmQuery filters a list of alarms; zero values match everything.
type AlarmQuery struct {
	// State: one state, or "open" for active and acknowledged.
	State    string
	DeviceID string
	Kind     AlarmKind
}

// DetectionSettings are a tenant's detection thresholds and the alarms it
// mitigates automatically. A threshold of 0 turns its rule off.
type DetectionSettings struct {
	// Rules over windows of what the broker sees.
	MessagesPerMinute   int `json:"messages_per_minute"`
	BytesPerMinute      int `json:"bytes_per_minute"`
	AuthFailuresPer5Min int `json:"auth_failures_per_5min"`
	ConnectsPer10Min    int `json:"connects_per_10min"`
	NewSourcesPerHour   int `json:"new_sources_per_hour"`
	// Rules over what the agent reports: how many listening ports or
	// outbound destinations outside the device's baseline raise an alarm,
	// and how far the process count may rise above its baseline.
	NewListeningPorts int `json:"new_listening_ports"`
	NewOutbound       int `json:"new_outbound_destinations"`
	ProcessJump       int `json:"process_count_jump"`
	// Learned baselines: a device's rates are learned for LearningMinutes;
	// then a minute above mean + Sigma·stddev and above RateFloor
	// messages raises an anomaly.
	LearningMinutes int     `json:"learning_minutes"`
	Sigma           float64 `json:"sigma"`
	RateFloor       int     `json:"rate_floor_per_minute"`
	// ClearAfterMinutes: an alarm clears when its metric was normal this long.
	ClearAfterMinutes int `json:"clear_after_minutes"`
	// Mitigations maps alarm kinds to the action taken automatically when
	// an alarm of that kind is raised; kinds not listed are only notified.
	Mitigations map[AlarmKind]MitigationAction `json:"mitigations,omitempty"`
}

// DefaultDetectionSettings are used until a tenant sets its own: every rule
// on, nothing mitigated automatically.
func DefaultDetectionSettings() DetectionSettings {
	return DetectionSettings{MessagesPerMinute: 1200, BytesPerMinute: 8 << 20, AuthFailuresPer5Min: 10, ConnectsPer10Min: 20,
		NewSourcesPerHour: 5, NewListeningPorts: 1, NewOutbound: 3, ProcessJump: 50, LearningMinutes: 60, Sigma: 6,
		RateFloor: 120, ClearAfterMinutes: 10}
}
