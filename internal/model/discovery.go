package model

import (
	"encoding/json"
	"time"
)

// Connection observations the broker records for the audit checks. They
// are observations, not changes of record: counted per device, kind, key
// and hour, and never audited.
const (
	ObsRevokedCert      = "revoked_cert"       // key: certificate serial
	ObsClientIDMismatch = "client_id_mismatch" // key: the client ID claimed
	ObsTakeover         = "session_takeover"   // key: "" (detail: the addresses)
	ObsTokenAuth        = "token_auth"         // key: "" (a device logged in with its token)
)

// ConnectionObservation is how often something was seen at connect time
// in one hour.
type ConnectionObservation struct {
	TenantID  string          `json:"tenant_id"`
	DeviceID  string          `json:"device_id"`
	Kind      string          `json:"kind"`
	Key       string          `json:"key"`
	Hour      time.Time       `json:"hour"`
	Count     int64           `json:"count"`
	FirstSeen time.Time       `json:"first_seen"`
	LastSeen  time.Time       `json:"last_seen"`
	Detail    json.RawMessage `json:"detail,omitempty"`
}

// NeighbourStatus is what the tenant decided about a device seen on its
// network.
type NeighbourStatus string

const (
	NeighbourUnmanaged NeighbourStatus = "unmanaged"
	NeighbourKnown     NeighbourStatus = "known"
	NeighbourAdopted   NeighbourStatus = "adopted"
)

// Valid reports whether s is a known status.
func (s NeighbourStatus) Valid() bool {
	return s == NeighbourUnmanaged || s == NeighbourKnown || s == NeighbourAdopted
}

// Neighbour is a network neighbour an agent or gateway reported that is
// not one of the tenant's managed devices.
type Neighbour struct {
	TenantID   string          `json:"-"`
	MAC        string          `json:"mac"`
	Site       string          `json:"site,omitempty" doc:"The reporting device's site attribute; empty for the tenant as a whole."`
	IP         string          `json:"ip,omitempty"`
	Hostname   string          `json:"hostname,omitempty"`
	Sources    []string        `json:"sources"`
	Services   []string        `json:"services"`
	Vendor     string          `json:"vendor,omitempty" doc:"From the MAC's IEEE vendor prefix, when it is in the embedded table."`
	ReportedBy string          `json:"reported_by" doc:"The device that reported it last."`
	Reports    int64           `json:"reports"`
	FirstSeen  time.Time       `json:"first_seen"`
	LastSeen   time.Time       `json:"last_seen"`
	Status     NeighbourStatus `json:"status"`
	Note       string          `json:"note,omitempty"`
	DeviceID   string          `json:"device_id,omitempty" doc:"The device record created when it was adopted."`
	ChangedBy  string          `json:"changed_by,omitempty"`
	ChangedAt  *time.Time      `json:"changed_at,omitempty"`
}

// NeighbourQuery filters the neighbour list.
type NeighbourQuery struct {
	Status NeighbourStatus // "" = any
	Site   string
	// SeenAfter keeps neighbours last seen at or after it.
	SeenAfter *time.Time
}

// DeviceDataCounts says how many records of a device's data were erased.
type DeviceDataCounts struct {
	TelemetryPoints int64 `json:"telemetry_points"`
	Commands        int64 `json:"commands"`
	Twin            int64 `json:"twin"`
	Findings        int64 `json:"findings"`
	Flows           int64 `json:"flows"`
	Observations    int64 `json:"observations"`
}
