package model

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DeviceQuery selects devices of one tenant. Every set field narrows the
// result; the zero value selects all devices.
type DeviceQuery struct {
	ProductID string            `json:"product_id,omitempty"`
	States    []State           `json:"states,omitempty"`
	Tags      []string          `json:"tags,omitempty"`       // device carries all of them
	Attrs     map[string]string `json:"attributes,omitempty"` // exact matches
	// Firmware version range: MinVersion inclusive, MaxVersion exclusive,
	// compared numerically per dotted component ("1.10" > "1.9").
	FirmwareVersion string     `json:"firmware_version,omitempty"`
	MinVersion      string     `json:"min_version,omitempty"`
	MaxVersion      string     `json:"max_version,omitempty"`
	SeenAfter       *time.Time `json:"seen_after,omitempty"`
	SeenBefore      *time.Time `json:"seen_before,omitempty"`
	NeverSeen       bool       `json:"never_seen,omitempty"`
	GroupID         string     `json:"group_id,omitempty"`
	SerialPrefix    string     `json:"serial_prefix,omitempty"`
	// DeviceIDs narrows the query to these devices (at most 1000), e.g. a
	// campaign for the devices an alarm names.
	DeviceIDs []string `json:"device_ids,omitempty" maxItems:"1000" doc:"Only these devices."`
}

// SortField is a key the device list may be ordered by.
type SortField string

const (
	SortID       SortField = "id"
	SortSerial   SortField = "serial"
	SortLastSeen SortField = "last_seen"
	SortFirmware SortField = "firmware_version"
	SortCreated  SortField = "created_at"
)

// Valid reports whether f is a supported sort field.
func (f SortField) Valid() bool {
	switch f {
	case SortID, SortSerial, SortLastSeen, SortFirmware, SortCreated:
		return true
	}
	return false
}

// Page asks for one page of a keyset-paginated list.
type Page struct {
	Limit  int
	Cursor string // opaque, from the previous page's NextCursor
	Sort   SortField
	Desc   bool
}

// Validate checks the query's fields and says which one is wrong.
func (q *DeviceQuery) Validate() error {
	for _, s := range q.States {
		if !s.Known() {
			return fmt.Errorf("state %q is not a lifecycle state", s)
		}
	}
	for _, v := range []struct{ name, val string }{{"min_version", q.MinVersion}, {"max_version", q.MaxVersion}} {
		if v.val != "" {
			if _, err := VersionKey(v.val); err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
		}
	}
	for _, t := range q.Tags {
		if err := ValidTag(t); err != nil {
			return err
		}
	}
	if len(q.DeviceIDs) > 1000 {
		return fmt.Errorf("device_ids: at most 1000 devices, not %d", len(q.DeviceIDs))
	}
	return nil
}

// Known reports whether s is a lifecycle state.
func (s State) Known() bool {
	switch s {
	case StateManufactured, StateClaimed, StateProvisioned, StateActive, StateQuarantined,
		StateSuspended, StateEndOfSupport, StateDecommissioned:
		return true
	}
	return false
}

// VersionKey turns a dotted version ("1.2.10", "v2.0.0-rc1") into a string
// whose byte order is the version order, so ranges can use an index.
// Up to six numeric components, each below 10^9. A pre-release suffix sorts
// before the release itself, as in semantic versioning.
func VersionKey(v string) (string, error) {
	s := strings.TrimPrefix(strings.TrimSpace(v), "v")
	if s == "" {
		return "", fmt.Errorf("version %q is empty", v)
	}
	pre := ""
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		if s[i] == '-' {
			pre = s[i+1:]
			if j := strings.IndexByte(pre, '+'); j >= 0 {
				pre = pre[:j]
			}
		}
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) > 6 {
		return "", fmt.Errorf("version %q has more than 6 components", v)
	}
	var b strings.Builder
	for i := 0; i < 6; i++ {
		n := 0
		if i < len(parts) {
			var err error
			n, err = strconv.Atoi(parts[i])
			if err != nil || n < 0 || n >= 1e9 || parts[i] == "" {
				return "", fmt.Errorf("version %q: component %q is not a number below 10^9", v, parts[i])
			}
		}
		fmt.Fprintf(&b, "%09d.", n)
	}
	// "~" sorts after every printable ASCII character, so a release sorts
	// after all of its pre-releases.
	if pre == "" {
		b.WriteString("~")
	} else {
		b.WriteString(pre)
	}
	return b.String(), nil
}

// ValidTag checks a tag: 1-64 characters of letters, digits and -_.:=/
func ValidTag(t string) error {
	if t == "" || len(t) > 64 {
		return fmt.Errorf("tag %q must be 1 to 64 characters", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:=/", r)) {
			return fmt.Errorf("tag %q may only hold letters, digits and -_.:=/", t)
		}
	}
	return nil
}
