// Package netpolicy holds device network policy: MUD files (RFC 8520)
// imported per product, the flows they allow, flows agents or gateways
// observe and whether those stay inside the profile, and the profile as
// nftables rules for a gateway.
package netpolicy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// MaxMUDBytes bounds a MUD file; real ones are a few kilobytes.
const (
	MaxMUDBytes = 1 << 20
	maxACEs     = 10000
)

// InputError is a MUD file that cannot be used; it names where and why.
type InputError struct {
	Where string
	Err   error
}

func (e *InputError) Error() string {
	if e.Where == "" {
		return e.Err.Error()
	}
	return e.Where + ": " + e.Err.Error()
}
func (e *InputError) Unwrap() error { return e.Err }

func bad(where, format string, a ...any) error {
	return &InputError{Where: where, Err: fmt.Errorf(format, a...)}
}

// The JSON of a MUD file: the ietf-mud container (RFC 8520 §2) and the
// ACLs of ietf-access-control-list (RFC 8519) with the MUD and DNS-name
// augmentations. Unknown members are refused inside the parts that decide
// what is allowed, so a file is never read more permissively than written.

type mudFile struct {
	MUD  *mudContainer `json:"ietf-mud:mud"`
	ACLs *struct {
		ACL []acl `json:"acl"`
	} `json:"ietf-access-control-list:acls"`
}

type mudContainer struct {
	Version       int         `json:"mud-version"`
	URL           string      `json:"mud-url"`
	LastUpdate    string      `json:"last-update"`
	CacheValidity *int        `json:"cache-validity,omitempty"`
	IsSupported   *bool       `json:"is-supported"`
	SystemInfo    string      `json:"systeminfo,omitempty"`
	MfgName       string      `json:"mfg-name,omitempty"`
	ModelName     string      `json:"model-name,omitempty"`
	FromDevice    *policyRefs `json:"from-device-policy,omitempty"`
	ToDevice      *policyRefs `json:"to-device-policy,omitempty"`
	Extensions    []string    `json:"extensions,omitempty"`
	Documentation string      `json:"documentation,omitempty"`
	Signature     string      `json:"mud-signature,omitempty"`
}

type policyRefs struct {
	AccessLists struct {
		AccessList []struct {
			Name string `json:"name"`
		} `json:"access-list"`
	} `json:"access-lists"`
}

type acl struct {
	Name string `json:"name"`
	Type string `json:"type"`
	ACEs struct {
		ACE []ace `json:"ace"`
	} `json:"aces"`
}

type ace struct {
	Name    string          `json:"name"`
	Matches json.RawMessage `json:"matches"`
	Actions struct {
		Forwarding string `json:"forwarding"`
		Logging    string `json:"logging,omitempty"`
	} `json:"actions"`
}

type ipMatch struct {
	Protocol    *int   `json:"protocol,omitempty"`
	SrcDNSName  string `json:"ietf-acldns:src-dnsname,omitempty"`
	DstDNSName  string `json:"ietf-acldns:dst-dnsname,omitempty"`
	DstNetwork4 string `json:"destination-ipv4-network,omitempty"`
	SrcNetwork4 string `json:"source-ipv4-network,omitempty"`
	DstNetwork6 string `json:"destination-ipv6-network,omitempty"`
	SrcNetwork6 string `json:"source-ipv6-network,omitempty"`
	DSCP        *int   `json:"dscp,omitempty"`
	ECN         *int   `json:"ecn,omitempty"`
	Length      *int   `json:"length,omitempty"`
	TTL         *int   `json:"ttl,omitempty"`
	HopLimit    *int   `json:"hoplimit,omitempty"`
	Flags       string `json:"flags,omitempty"`
	FlowLabel   *int   `json:"flow-label,omitempty"`
}

type portMatch struct {
	Operator  string `json:"operator,omitempty"`
	Port      *int   `json:"port,omitempty"`
	LowerPort *int   `json:"lower-port,omitempty"`
	UpperPort *int   `json:"upper-port,omitempty"`
}

type l4Match struct {
	SrcPort   *portMatch `json:"source-port,omitempty"`
	DstPort   *portMatch `json:"destination-port,omitempty"`
	Initiated string     `json:"ietf-mud:direction-initiated,omitempty"`
	Flags     string     `json:"flags,omitempty"`
}

type mudMatch struct {
	Manufacturer     string `json:"manufacturer,omitempty"`
	SameManufacturer []any  `json:"same-manufacturer,omitempty"`
	Model            string `json:"model,omitempty"`
	LocalNetworks    []any  `json:"local-networks,omitempty"`
	Controller       string `json:"controller,omitempty"`
	MyController     []any  `json:"my-controller,omitempty"`
}

// Profile is a parsed MUD file.
type Profile struct {
	MUDURL     string
	SystemInfo string
	MfgName    string
	ModelName  string
	LastUpdate time.Time
	Flows      []model.AllowedFlow
	// Document is the file as imported (compacted).
	Document []byte
}

var dnsName = regexp.MustCompile(`^(?i)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$`)

// decodeStrict decodes JSON refusing unknown members.
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the value")
	}
	return nil
}

// ParseMUD reads and checks a MUD file and derives the flows it allows.
func ParseMUD(data []byte) (*Profile, error) {
	if len(data) > MaxMUDBytes {
		return nil, bad("", "MUD file of %d bytes is larger than %d KiB", len(data), MaxMUDBytes>>10)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, bad("", "not a MUD file: want a JSON object with ietf-mud:mud and ietf-access-control-list:acls")
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, bad("", "not valid JSON: %v", err)
	}
	switch {
	case probe["bomFormat"] != nil || probe["spdxVersion"] != nil:
		return nil, bad("", "this is an SBOM, not a MUD file")
	case probe["affected"] != nil:
		return nil, bad("", "this is an OSV advisory, not a MUD file")
	case probe["ietf-mud:mud"] == nil:
		return nil, bad("", "not a MUD file: the ietf-mud:mud container is missing")
	case probe["ietf-access-control-list:acls"] == nil:
		return nil, bad("", "the ietf-access-control-list:acls container is missing")
	}
	var f mudFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, bad("", "not a MUD file: %s", jsonMsg(err))
	}
	m := f.MUD
	if m == nil {
		return nil, bad("ietf-mud:mud", "must be an object")
	}
	if m.Version != 1 {
		return nil, bad("ietf-mud:mud.mud-version", "must be 1, not %d", m.Version)
	}
	u, err := url.Parse(m.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || len(m.URL) > 2048 {
		return nil, bad("ietf-mud:mud.mud-url", "must be an https URL")
	}
	if m.LastUpdate == "" {
		return nil, bad("ietf-mud:mud.last-update", "is required")
	}
	last, err := time.Parse(time.RFC3339Nano, m.LastUpdate)
	if err != nil {
		return nil, bad("ietf-mud:mud.last-update", "%q is not a date-and-time", m.LastUpdate)
	}
	if m.IsSupported == nil {
		return nil, bad("ietf-mud:mud.is-supported", "is required")
	}
	if m.CacheValidity != nil && (*m.CacheValidity < 1 || *m.CacheValidity > 168) {
		return nil, bad("ietf-mud:mud.cache-validity", "must be 1 to 168 hours")
	}
	if m.FromDevice == nil && m.ToDevice == nil {
		return nil, bad("ietf-mud:mud", "names neither a from-device-policy nor a to-device-policy")
	}
	acls := map[string]*acl{}
	total := 0
	for i := range f.ACLs.ACL {
		a := &f.ACLs.ACL[i]
		if a.Name == "" {
			return nil, bad(fmt.Sprintf("acls.acl[%d]", i), "has no name")
		}
		if _, dup := acls[a.Name]; dup {
			return nil, bad("acls.acl", "%q is defined twice", a.Name)
		}
		acls[a.Name] = a
		total += len(a.ACEs.ACE)
	}
	if total > maxACEs {
		return nil, bad("acls", "more than %d ACEs", maxACEs)
	}
	p := &Profile{MUDURL: m.URL, SystemInfo: trimTo(m.SystemInfo, 256), MfgName: trimTo(m.MfgName, 256),
		ModelName: trimTo(m.ModelName, 256), LastUpdate: last.UTC().Truncate(time.Microsecond)}
	used := map[string]bool{}
	for _, pol := range []struct {
		dir  string
		refs *policyRefs
	}{{"from-device", m.FromDevice}, {"to-device", m.ToDevice}} {
		if pol.refs == nil {
			continue
		}
		for _, ref := range pol.refs.AccessLists.AccessList {
			a, ok := acls[ref.Name]
			if !ok {
				return nil, bad("ietf-mud:mud."+pol.dir+"-policy", "names ACL %q, which the file does not define", ref.Name)
			}
			used[ref.Name] = true
			flows, err := deriveACL(a, pol.dir)
			if err != nil {
				return nil, err
			}
			p.Flows = append(p.Flows, flows...)
		}
	}
	for name := range acls {
		if !used[name] {
			return nil, bad("acls.acl", "%q is defined but no policy uses it", name)
		}
	}
	if p.Flows == nil {
		p.Flows = []model.AllowedFlow{}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return nil, bad("", "not valid JSON: %v", err)
	}
	p.Document = compact.Bytes()
	return p, nil
}

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func jsonMsg(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s has the wrong type (%s)", te.Field, te.Value)
	}
	return err.Error()
}

// deriveACL turns the accepting ACEs of one ACL into allowed flows.
func deriveACL(a *acl, dir string) ([]model.AllowedFlow, error) {
	family := ""
	switch a.Type {
	case "ipv4-acl-type":
		family = "ipv4"
	case "ipv6-acl-type":
		family = "ipv6"
	case "", "mixed-eth-ipv4-acl-type", "mixed-eth-ipv6-acl-type", "mixed-eth-ipv4-ipv6-acl-type", "eth-acl-type":
	default:
		return nil, bad("acl "+a.Name+".type", "%q is not an ACL type", a.Type)
	}
	if len(a.ACEs.ACE) == 0 {
		return nil, bad("acl "+a.Name, "has no ACEs")
	}
	var out []model.AllowedFlow
	for i, e := range a.ACEs.ACE {
		where := fmt.Sprintf("acl %s.ace[%d]", a.Name, i)
		if e.Name != "" {
			where = fmt.Sprintf("acl %s.ace %s", a.Name, e.Name)
		}
		switch e.Actions.Forwarding {
		case "accept", "drop", "reject":
		case "":
			return nil, bad(where+".actions.forwarding", "is required (accept, drop or reject)")
		default:
			return nil, bad(where+".actions.forwarding", "%q is not accept, drop or reject", e.Actions.Forwarding)
		}
		flow, skip, err := deriveACE(e, dir, family, where)
		if err != nil {
			return nil, err
		}
		// Only accepting ACEs allow anything; the rest of a profile is
		// denied anyway.
		if skip || e.Actions.Forwarding != "accept" {
			continue
		}
		flow.ACL, flow.ACE = a.Name, e.Name
		out = append(out, flow)
	}
	return out, nil
}

var matchKeys = map[string]bool{"ipv4": true, "ipv6": true, "tcp": true, "udp": true, "icmp": true, "eth": true,
	"ietf-mud:mud": true, "egress-interface": true, "ingress-interface": true}

func deriveACE(e ace, dir, family, where string) (model.AllowedFlow, bool, error) {
	f := model.AllowedFlow{Direction: dir, Family: family}
	if len(e.Matches) == 0 {
		return f, false, bad(where+".matches", "is required")
	}
	var parts map[string]json.RawMessage
	if err := json.Unmarshal(e.Matches, &parts); err != nil {
		return f, false, bad(where+".matches", "must be an object")
	}
	for k := range parts {
		if !matchKeys[k] {
			return f, false, bad(where+".matches", "unknown match %q", k)
		}
	}
	if _, ok := parts["eth"]; ok {
		if len(parts) == 1 {
			return f, true, nil // a layer-2 rule (e.g. ARP): not an IP flow
		}
	}
	remoteSrc := dir == "to-device" // packets to the device come from the remote
	for _, fam := range []string{"ipv4", "ipv6"} {
		raw, ok := parts[fam]
		if !ok {
			continue
		}
		if f.Family != "" && f.Family != fam {
			return f, false, bad(where+".matches."+fam, "does not fit an %s ACL", f.Family)
		}
		f.Family = fam
		var m ipMatch
		if err := decodeStrict(raw, &m); err != nil {
			return f, false, bad(where+".matches."+fam, "%s", jsonMsg(err))
		}
		if m.Protocol != nil {
			if *m.Protocol < 0 || *m.Protocol > 255 {
				return f, false, bad(where+".matches."+fam+".protocol", "must be 0 to 255")
			}
			f.Protocol = protoName(*m.Protocol)
		}
		host := m.DstDNSName
		otherHost := m.SrcDNSName
		if remoteSrc {
			host, otherHost = m.SrcDNSName, m.DstDNSName
		}
		if otherHost != "" {
			return f, false, bad(where+".matches."+fam, "names the device's own DNS name; the remote end must be named")
		}
		if host != "" {
			if !dnsName.MatchString(host) || len(host) > 253 {
				return f, false, bad(where+".matches."+fam, "%q is not a DNS name", host)
			}
			f.RemoteHost = strings.TrimSuffix(strings.ToLower(host), ".")
		}
		netw := m.DstNetwork4 + m.DstNetwork6
		if remoteSrc {
			netw = m.SrcNetwork4 + m.SrcNetwork6
		}
		if netw != "" {
			pfx, err := netip.ParsePrefix(netw)
			if err != nil {
				return f, false, bad(where+".matches."+fam, "%q is not a network (address/length)", netw)
			}
			if (fam == "ipv4") != pfx.Addr().Is4() {
				return f, false, bad(where+".matches."+fam, "network %s is not %s", netw, fam)
			}
			f.RemoteNetwork = pfx.Masked().String()
		}
		if f.RemoteHost != "" && f.RemoteNetwork != "" {
			return f, false, bad(where+".matches."+fam, "names both a DNS name and a network")
		}
	}
	for _, l4 := range []string{"tcp", "udp"} {
		raw, ok := parts[l4]
		if !ok {
			continue
		}
		if f.Protocol != "" && f.Protocol != l4 {
			return f, false, bad(where+".matches."+l4, "contradicts protocol %s", f.Protocol)
		}
		f.Protocol = l4
		var m l4Match
		if err := decodeStrict(raw, &m); err != nil {
			return f, false, bad(where+".matches."+l4, "%s", jsonMsg(err))
		}
		src, err := portRange(m.SrcPort, where+".matches."+l4+".source-port")
		if err != nil {
			return f, false, err
		}
		dst, err := portRange(m.DstPort, where+".matches."+l4+".destination-port")
		if err != nil {
			return f, false, err
		}
		if remoteSrc {
			f.RemotePorts, f.LocalPorts = src, dst
		} else {
			f.RemotePorts, f.LocalPorts = dst, src
		}
		switch m.Initiated {
		case "":
		case "from-device", "to-device":
			if l4 != "tcp" {
				return f, false, bad(where+".matches.udp", "direction-initiated applies to TCP only")
			}
			f.InitiatedBy = m.Initiated
		default:
			return f, false, bad(where+".matches.tcp.ietf-mud:direction-initiated", "%q is not from-device or to-device", m.Initiated)
		}
	}
	if _, ok := parts["icmp"]; ok {
		if f.Protocol != "" && f.Protocol != "icmp" {
			return f, false, bad(where+".matches.icmp", "contradicts protocol %s", f.Protocol)
		}
		f.Protocol = "icmp"
	}
	if raw, ok := parts["ietf-mud:mud"]; ok {
		var m mudMatch
		if err := decodeStrict(raw, &m); err != nil {
			return f, false, bad(where+".matches.ietf-mud:mud", "%s", jsonMsg(err))
		}
		n := 0
		set := func(class, value string) {
			n++
			f.RemoteClass, f.ClassValue = class, value
		}
		if m.Manufacturer != "" {
			set("manufacturer", m.Manufacturer)
		}
		if m.SameManufacturer != nil {
			set("same-manufacturer", "")
		}
		if m.Model != "" {
			set("model", m.Model)
		}
		if m.LocalNetworks != nil {
			set("local-networks", "")
		}
		if m.Controller != "" {
			set("controller", m.Controller)
		}
		if m.MyController != nil {
			set("my-controller", "")
		}
		if n != 1 {
			return f, false, bad(where+".matches.ietf-mud:mud", "must name exactly one class (manufacturer, same-manufacturer, model, local-networks, controller, my-controller)")
		}
		if f.RemoteHost != "" || f.RemoteNetwork != "" {
			return f, false, bad(where+".matches", "names a MUD class and an address of the remote end")
		}
	}
	return f, false, nil
}

func protoName(n int) string {
	switch n {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1, 58:
		return "icmp"
	}
	return strconv.Itoa(n)
}

func portRange(p *portMatch, where string) ([2]int, error) {
	if p == nil {
		return [2]int{}, nil
	}
	check := func(v *int, name string) (int, error) {
		if v == nil {
			return 0, bad(where, "%s is required", name)
		}
		if *v < 0 || *v > 65535 {
			return 0, bad(where, "%s %d is not a port (0 to 65535)", name, *v)
		}
		return *v, nil
	}
	if p.LowerPort != nil || p.UpperPort != nil {
		lo, err := check(p.LowerPort, "lower-port")
		if err != nil {
			return [2]int{}, err
		}
		hi, err := check(p.UpperPort, "upper-port")
		if err != nil {
			return [2]int{}, err
		}
		if lo > hi {
			return [2]int{}, bad(where, "lower-port %d is above upper-port %d", lo, hi)
		}
		return [2]int{max(lo, 1), hi}, nil
	}
	v, err := check(p.Port, "port")
	if err != nil {
		return [2]int{}, err
	}
	switch p.Operator {
	case "", "eq":
		return [2]int{v, v}, nil
	case "lte":
		return [2]int{1, v}, nil
	case "gte":
		return [2]int{max(v, 1), 65535}, nil
	case "neq":
		return [2]int{}, bad(where, "operator neq is not supported in a MUD profile; list the allowed ports")
	}
	return [2]int{}, bad(where, "operator %q is not eq, lte, gte or neq", p.Operator)
}
