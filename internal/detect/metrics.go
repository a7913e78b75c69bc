package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Limits of one security metrics report (d/{id}/security/metrics).
const (
	MaxPorts        = 256
	MaxOutbound     = 256
	MaxProcessCount = 1_000_000
	maxHostLen      = 253
)

// Metrics is what a device's agent reports about itself on
// d/{id}/security/metrics (docs/protocol.md). A field left out was not
// measured; an empty list says there is nothing.
type Metrics struct {
	// TS is when the agent measured (RFC 3339); the broker's clock when absent.
	TS             *time.Time    `json:"ts,omitempty"`
	ListeningPorts []Port        `json:"listening_ports,omitempty"`
	Outbound       []Destination `json:"outbound,omitempty"`
	ProcessCount   *int          `json:"process_count,omitempty"`
}

// Port is a port the device listens on.
type Port struct {
	Proto string `json:"proto"`
	Port  int    `json:"port"`
}

// Key is "tcp/22".
func (p Port) Key() string { return p.Proto + "/" + strconv.Itoa(p.Port) }

// Destination is a remote end the device opened a connection or sent
// datagrams to.
type Destination struct {
	Proto string `json:"proto"`
	// Host is an IP address or a DNS name.
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Key is "tcp/1.2.3.4:443".
func (d Destination) Key() string { return d.Proto + "/" + d.Host + ":" + strconv.Itoa(d.Port) }

// IsAddress reports whether Host is an IP address (not a name).
func (d Destination) IsAddress() bool {
	_, err := netip.ParseAddr(d.Host)
	return err == nil
}

var dnsName = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,62}[a-z0-9_])?)*$`)

// ParseMetrics decodes and checks a report strictly: one JSON object, no
// unknown fields, at least one measurement, lists within their limits, each
// entry well formed. Duplicates are merged. Errors name the field.
func ParseMetrics(data []byte, now time.Time) (*Metrics, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw struct {
		TS             *string           `json:"ts"`
		ListeningPorts []json.RawMessage `json:"listening_ports"`
		Outbound       []json.RawMessage `json:"outbound"`
		ProcessCount   *float64          `json:"process_count"`
	}
	if err := dec.Decode(&raw); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute) && ute.Field != "":
			return nil, fmt.Errorf("%s: must be %s", ute.Field, jsonKind(ute.Type.String()))
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return nil, fmt.Errorf("%s; a report has ts, listening_ports, outbound and process_count", strings.TrimPrefix(err.Error(), "json: "))
		}
		return nil, errors.New("payload must be a JSON object (see docs/protocol.md, security metrics)")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("payload has data after the JSON object")
	}
	if raw.ListeningPorts == nil && raw.Outbound == nil && raw.ProcessCount == nil {
		return nil, errors.New("a report needs at least one of listening_ports, outbound and process_count")
	}
	m := &Metrics{}
	if raw.TS != nil {
		ts, err := time.Parse(time.RFC3339Nano, *raw.TS)
		if err != nil {
			return nil, fmt.Errorf("ts: %q is not an RFC 3339 time", *raw.TS)
		}
		if ts.After(now.Add(5 * time.Minute)) {
			return nil, fmt.Errorf("ts: %s is in the future; check the device clock", *raw.TS)
		}
		ts = ts.UTC()
		m.TS = &ts
	}
	if raw.ListeningPorts != nil {
		if len(raw.ListeningPorts) > MaxPorts {
			return nil, fmt.Errorf("listening_ports: %d entries, at most %d", len(raw.ListeningPorts), MaxPorts)
		}
		seen := map[string]bool{}
		m.ListeningPorts = []Port{}
		for i, r := range raw.ListeningPorts {
			var p Port
			if err := strictDecode(r, &p); err != nil {
				return nil, fmt.Errorf("listening_ports[%d]: %v", i, err)
			}
			p.Proto = strings.ToLower(p.Proto)
			if p.Proto != "tcp" && p.Proto != "udp" {
				return nil, fmt.Errorf("listening_ports[%d].proto: %q must be tcp or udp", i, p.Proto)
			}
			if p.Port < 1 || p.Port > 65535 {
				return nil, fmt.Errorf("listening_ports[%d].port: %d is not a port (1 to 65535)", i, p.Port)
			}
			if !seen[p.Key()] {
				seen[p.Key()] = true
				m.ListeningPorts = append(m.ListeningPorts, p)
			}
		}
	}
	if raw.Outbound != nil {
		if len(raw.Outbound) > MaxOutbound {
			return nil, fmt.Errorf("outbound: %d entries, at most %d", len(raw.Outbound), MaxOutbound)
		}
		seen := map[string]bool{}
		m.Outbound = []Destination{}
		for i, r := range raw.Outbound {
			var d Destination
			if err := strictDecode(r, &d); err != nil {
				return nil, fmt.Errorf("outbound[%d]: %v", i, err)
			}
			d.Proto = strings.ToLower(d.Proto)
			if d.Proto != "tcp" && d.Proto != "udp" {
				return nil, fmt.Errorf("outbound[%d].proto: %q must be tcp or udp", i, d.Proto)
			}
			if d.Port < 1 || d.Port > 65535 {
				return nil, fmt.Errorf("outbound[%d].port: %d is not a port (1 to 65535)", i, d.Port)
			}
			if a, err := netip.ParseAddr(d.Host); err == nil {
				d.Host = a.Unmap().String()
			} else {
				d.Host = strings.TrimSuffix(strings.ToLower(d.Host), ".")
				if d.Host == "" || len(d.Host) > maxHostLen || !dnsName.MatchString(d.Host) {
					return nil, fmt.Errorf("outbound[%d].host: %q is neither an IP address nor a DNS name", i, d.Host)
				}
			}
			if !seen[d.Key()] {
				seen[d.Key()] = true
				m.Outbound = append(m.Outbound, d)
			}
		}
	}
	if raw.ProcessCount != nil {
		f := *raw.ProcessCount
		if f != float64(int(f)) || f < 0 || f > MaxProcessCount {
			return nil, fmt.Errorf("process_count: %v must be a whole number from 0 to %d", f, MaxProcessCount)
		}
		n := int(f)
		m.ProcessCount = &n
	}
	return m, nil
}

func strictDecode(r json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(r))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return fmt.Errorf("%s must be %s", ute.Field, jsonKind(ute.Type.String()))
		}
		if s, ok := strings.CutPrefix(err.Error(), "json: "); ok {
			return errors.New(s)
		}
		return errors.New("must be an object")
	}
	return nil
}

func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "int" || goType == "float64":
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	}
	return "an object"
}
