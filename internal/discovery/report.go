// Package discovery keeps the devices that agents and gateways see on
// their networks (ARP/NDP neighbour tables, mDNS) but that the tenant
// does not manage: with their MAC vendor, first and last seen, and what
// the tenant decided (mark known, or adopt: register and start claiming).
package discovery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"unicode"
)

// Limits of one report.
const (
	MaxNeighbours  = 512
	MaxServices    = 32
	MaxServiceLen  = 64
	MaxHostnameLen = 253
	MaxReportBytes = 256 << 10
)

// Sources a neighbour may be seen by.
var Sources = []string{"arp", "ndp", "mdns"}

// ReportedNeighbour is one entry of a report.
type ReportedNeighbour struct {
	MAC      string   `json:"mac" doc:"EUI-48, any of the usual notations (aa:bb:cc:dd:ee:ff, AA-BB-…, aabb.ccdd.eeff)."`
	IP       string   `json:"ip,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	Source   string   `json:"source" enum:"arp,ndp,mdns"`
	Services []string `json:"services,omitempty" doc:"mDNS service types, e.g. _hap._tcp."`
}

// NeighbourReport is what a device sends on d/{id}/security/neighbours.
type NeighbourReport struct {
	Neighbours []ReportedNeighbour `json:"neighbours"`
}

// InvalidError is a refused report; it names the entry and field.
type InvalidError struct{ Field, Message string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, format string, a ...any) error {
	return &InvalidError{Field: field, Message: fmt.Sprintf(format, a...)}
}

// ParseReport decodes and checks a report: a JSON object
// {"neighbours": [...]} (or the bare array), unknown fields refused.
func ParseReport(payload []byte) (*NeighbourReport, error) {
	if len(payload) > MaxReportBytes {
		return nil, invalid("payload", "%d bytes; at most %d", len(payload), MaxReportBytes)
	}
	var r NeighbourReport
	trimmed := bytes.TrimLeft(payload, " \t\r\n")
	var target any = &r
	if len(trimmed) > 0 && trimmed[0] == '[' {
		target = &r.Neighbours
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(target); err != nil {
		return nil, invalid("payload", "not a neighbour report (want {\"neighbours\": [{\"mac\", \"ip\", \"hostname\", \"source\", \"services\"}]}): %v", err)
	}
	if dec.More() {
		return nil, invalid("payload", "data after the JSON document")
	}
	if r.Neighbours == nil {
		return nil, invalid("neighbours", "is required (an empty list is fine)")
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Check validates and normalises the report in place: MACs in lower case
// with colons, entries for one MAC merged.
func (r *NeighbourReport) Check() error {
	if len(r.Neighbours) > MaxNeighbours {
		return invalid("neighbours", "%d entries; at most %d per report", len(r.Neighbours), MaxNeighbours)
	}
	byMAC := map[string]int{}
	var out []ReportedNeighbour
	for i, n := range r.Neighbours {
		field := fmt.Sprintf("neighbours[%d]", i)
		mac, err := NormalizeMAC(n.MAC)
		if err != nil {
			return invalid(field+".mac", "%v", err)
		}
		n.MAC = mac
		if n.IP != "" {
			a, err := netip.ParseAddr(n.IP)
			if err != nil {
				return invalid(field+".ip", "%q is not an IP address", n.IP)
			}
			n.IP = a.String()
		}
		if len(n.Hostname) > MaxHostnameLen || !printable(n.Hostname) {
			return invalid(field+".hostname", "at most %d printable characters", MaxHostnameLen)
		}
		if !slices.Contains(Sources, n.Source) {
			return invalid(field+".source", "%q: one of arp, ndp, mdns", n.Source)
		}
		if len(n.Services) > MaxServices {
			return invalid(field+".services", "%d entries; at most %d", len(n.Services), MaxServices)
		}
		for j, s := range n.Services {
			if s == "" || len(s) > MaxServiceLen || !printable(s) {
				return invalid(fmt.Sprintf("%s.services[%d]", field, j), "1 to %d printable characters", MaxServiceLen)
			}
		}
		if k, ok := byMAC[mac]; ok {
			m := &out[k]
			if m.IP == "" {
				m.IP = n.IP
			}
			if m.Hostname == "" {
				m.Hostname = n.Hostname
			}
			if !strings.Contains(m.Source, n.Source) {
				m.Source += "," + n.Source
			}
			for _, s := range n.Services {
				if !slices.Contains(m.Services, s) && len(m.Services) < MaxServices {
					m.Services = append(m.Services, s)
				}
			}
			continue
		}
		byMAC[mac] = len(out)
		out = append(out, n)
	}
	r.Neighbours = out
	return nil
}

// NormalizeMAC parses an EUI-48 in any usual notation and returns it in
// lower case with colons. Group (multicast/broadcast) addresses are
// refused: no device has one.
func NormalizeMAC(s string) (string, error) {
	if len(s) == 12 && !strings.ContainsAny(s, ":-.") {
		var b strings.Builder
		for i := 0; i < 12; i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(s[i : i+2])
		}
		s = b.String()
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a MAC address (EUI-48)", s)
	}
	if hw[0]&1 == 1 {
		return "", fmt.Errorf("%s is a multicast or broadcast address, not a device's", hw)
	}
	return hw.String(), nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
