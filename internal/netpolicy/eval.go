package netpolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/steward-iot/steward/internal/model"
)

// Verdicts of an observed flow.
const (
	VerdictAllowed   = "allowed"
	VerdictOutside   = "outside_profile"
	VerdictNoProfile = "no_profile"
)

// FlowKey identifies a flow for aggregation: who opened it, the protocol,
// the remote end (its name when known, else its address) and the port
// that is not ephemeral (the remote port of a flow the device opened, the
// device's port of one opened towards it).
func FlowKey(f model.ObservedFlow) string {
	remote := f.RemoteHost
	if remote == "" {
		remote = f.RemoteAddress
	}
	port := f.RemotePort
	if f.Direction == "to-device" {
		port = f.LocalPort
	}
	sum := sha256.Sum256([]byte(f.Direction + "|" + f.Protocol + "|" + strings.ToLower(remote) + "|" + strconv.Itoa(port)))
	return "flw_" + hex.EncodeToString(sum[:10])
}

// NormalizeFlow checks a reported flow and puts it into its stored form:
// the ephemeral port dropped, the name lower-cased, the protocol named.
func NormalizeFlow(f model.ObservedFlow) (model.ObservedFlow, error) {
	switch f.Direction {
	case "from-device", "to-device":
	default:
		return f, fmt.Errorf("direction %q must be from-device (the device opened it) or to-device", f.Direction)
	}
	f.Protocol = strings.ToLower(f.Protocol)
	switch f.Protocol {
	case "tcp", "udp", "icmp":
	case "6":
		f.Protocol = "tcp"
	case "17":
		f.Protocol = "udp"
	default:
		n, err := strconv.Atoi(f.Protocol)
		if err != nil || n < 0 || n > 255 {
			return f, fmt.Errorf("protocol %q must be tcp, udp, icmp or an IP protocol number", f.Protocol)
		}
	}
	f.RemoteHost = strings.TrimSuffix(strings.ToLower(f.RemoteHost), ".")
	if f.RemoteHost != "" && (!dnsName.MatchString(f.RemoteHost) || len(f.RemoteHost) > 253) {
		return f, fmt.Errorf("remote_host %q is not a DNS name", f.RemoteHost)
	}
	if f.RemoteAddress != "" {
		a, err := netip.ParseAddr(f.RemoteAddress)
		if err != nil {
			return f, fmt.Errorf("remote_address %q is not an IP address", f.RemoteAddress)
		}
		f.RemoteAddress = a.Unmap().String()
	}
	if f.RemoteHost == "" && f.RemoteAddress == "" {
		return f, fmt.Errorf("a flow needs remote_host or remote_address")
	}
	for name, p := range map[string]int{"remote_port": f.RemotePort, "local_port": f.LocalPort} {
		if p < 0 || p > 65535 {
			return f, fmt.Errorf("%s %d is not a port", name, p)
		}
	}
	if f.Protocol != "tcp" && f.Protocol != "udp" {
		f.RemotePort, f.LocalPort = 0, 0
	} else if f.Direction == "from-device" {
		f.LocalPort = 0
	} else {
		f.RemotePort = 0
	}
	if f.Bytes < 0 || f.Packets < 0 {
		return f, fmt.Errorf("bytes and packets cannot be negative")
	}
	f.Key = FlowKey(f)
	return f, nil
}

var localNets = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("fe80::/10"),
}

// LocalNetworks are the networks the local-networks class (and the
// device classes, which name local devices) stand for.
func LocalNetworks() []netip.Prefix { return localNets }

func isLocal(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, p := range localNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func inPorts(r [2]int, p int) bool {
	if r == [2]int{} {
		return true
	}
	return p >= r[0] && p <= r[1]
}

// Allows reports whether the allowed flow a covers the observed flow f
// (f as NormalizeFlow made it).
func Allows(a model.AllowedFlow, f model.ObservedFlow) bool {
	if a.Direction != f.Direction {
		return false
	}
	if a.InitiatedBy != "" && a.InitiatedBy != f.Direction {
		return false
	}
	if a.Protocol != "" && a.Protocol != f.Protocol {
		return false
	}
	if a.Family != "" && f.RemoteAddress != "" {
		addr, err := netip.ParseAddr(f.RemoteAddress)
		if err != nil || (a.Family == "ipv4") != addr.Is4() {
			return false
		}
	}
	switch {
	case a.RemoteHost != "":
		if f.RemoteHost != a.RemoteHost {
			return false
		}
	case a.RemoteNetwork != "":
		pfx, err := netip.ParsePrefix(a.RemoteNetwork)
		addr, err2 := netip.ParseAddr(f.RemoteAddress)
		if err != nil || err2 != nil || !pfx.Contains(addr) {
			return false
		}
	case a.RemoteClass != "":
		// Every MUD class names local hosts (the local networks, devices
		// of a manufacturer or model, controllers); without an inventory
		// of which local host is which, a local address stands for them.
		if !isLocal(f.RemoteAddress) {
			return false
		}
	}
	if f.Protocol == "tcp" || f.Protocol == "udp" {
		if f.Direction == "from-device" {
			if a.RemotePorts != [2]int{} && !inPorts(a.RemotePorts, f.RemotePort) {
				return false
			}
		} else if a.LocalPorts != [2]int{} && !inPorts(a.LocalPorts, f.LocalPort) {
			return false
		}
	}
	return true
}

// Evaluate gives a flow's verdict against a profile's flows (nil profile:
// no_profile).
func Evaluate(p *model.MUDProfile, f model.ObservedFlow) string {
	if p == nil {
		return VerdictNoProfile
	}
	for _, a := range p.Flows {
		if Allows(a, f) {
			return VerdictAllowed
		}
	}
	return VerdictOutside
}
