package model

import (
	"encoding/json"
	"time"
)

// Twin is a device's desired and reported state, each a JSON object with
// its own version (0 = never set).
type Twin struct {
	TenantID        string          `json:"-"`
	DeviceID        string          `json:"device_id"`
	Desired         json.RawMessage `json:"desired"`
	DesiredVersion  int64           `json:"desired_version"`
	DesiredAt       *time.Time      `json:"desired_at,omitempty"`
	Reported        json.RawMessage `json:"reported"`
	ReportedVersion int64           `json:"reported_version"`
	ReportedAt      *time.Time      `json:"reported_at,omitempty"`
}

// CommandStatus is where a command is in its life.
type CommandStatus string

const (
	CommandQueued    CommandStatus = "queued"    // waiting for the device
	CommandSent      CommandStatus = "sent"      // published to the device, no answer yet
	CommandSucceeded CommandStatus = "succeeded" // the device answered: done
	CommandFailed    CommandStatus = "failed"    // the device answered: failed
	CommandExpired   CommandStatus = "expired"   // not delivered before it expired
	CommandTimedOut  CommandStatus = "timed_out" // delivered, no answer in time
)

// Final reports whether the status can no longer change.
func (s CommandStatus) Final() bool {
	return s != CommandQueued && s != CommandSent
}

// Command is a request to one device, with its result.
type Command struct {
	ID        string          `json:"id"`
	TenantID  string          `json:"-"`
	DeviceID  string          `json:"device_id"`
	Name      string          `json:"name"`
	Params    json.RawMessage `json:"params,omitempty"`
	Status    CommandStatus   `json:"status"`
	CreatedAt time.Time       `json:"created_at"`
	CreatedBy string          `json:"created_by"`
	// ExpiresAt: a command not delivered by then is dropped (expired).
	ExpiresAt time.Time `json:"expires_at"`
	// Timeout is how long the device has to answer once it was sent.
	Timeout     time.Duration   `json:"-"`
	SentAt      *time.Time      `json:"sent_at,omitempty"`
	Attempts    int             `json:"attempts"`
	CompletedAt *time.Time      `json:"completed_at,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"`
}

// ValueKind says which field of a telemetry value is set.
type ValueKind string

const (
	KindNumber ValueKind = "n"
	KindString ValueKind = "s"
	KindBool   ValueKind = "b"
	KindData   ValueKind = "d" // base64 data (SenML vd), kept as text
)

// TelemetryPoint is one measurement.
type TelemetryPoint struct {
	TenantID string    `json:"-"`
	DeviceID string    `json:"-"`
	Metric   string    `json:"metric"`
	Time     time.Time `json:"ts"`
	Kind     ValueKind `json:"-"`
	Num      float64   `json:"-"`
	Text     string    `json:"-"`
}

// Value returns the point's value as a Go value (float64, string or bool).
func (p *TelemetryPoint) Value() any {
	switch p.Kind {
	case KindNumber:
		return p.Num
	case KindBool:
		return p.Num != 0
	}
	return p.Text
}

// TelemetryBucket is one step of a downsampled series.
type TelemetryBucket struct {
	Start time.Time `json:"start"`
	Count int64     `json:"count"`
	Avg   float64   `json:"avg"`
	Min   float64   `json:"min"`
	Max   float64   `json:"max"`
}
