package agent

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The agent's reports for the security engine (docs/protocol.md): what
// the device listens on, whom it talks to and how many processes run
// (d/{id}/security/metrics), and which devices it sees on its network
// (d/{id}/security/neighbours). On Linux they come from /proc; elsewhere
// the members are left out (not measured).

// Limits of the protocol.
const (
	maxPorts      = 256
	maxOutbound   = 256
	maxNeighbours = 512
)

// socket is one line of /proc/net/{tcp,udp}[6].
type socket struct {
	local, remote netip.AddrPort
	state         string
}

// parseSockets reads the table of /proc/net/tcp and the like.
func parseSockets(b []byte) []socket {
	var out []socket
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 4 {
			continue
		}
		l, ok1 := parseHexAddr(f[1])
		r, ok2 := parseHexAddr(f[2])
		if ok1 && ok2 {
			out = append(out, socket{local: l, remote: r, state: f[3]})
		}
	}
	return out
}

// parseHexAddr reads "0100007F:1F90" (IPv4) or 32 hex digits and a port
// (IPv6): the address in the kernel's byte order, 32 bits at a time.
func parseHexAddr(s string) (netip.AddrPort, bool) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	// Each 32-bit word is in host (little-endian) order.
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), true
}

// Socket states of /proc/net/tcp.
const (
	tcpEstablished = "01"
	tcpListen      = "0A"
	udpUnconnected = "07"
)

// SecurityMetrics is the device's report on d/{id}/security/metrics, read
// from procRoot (normally "/proc"); nil when nothing could be measured.
func SecurityMetrics(procRoot string) map[string]any {
	type port struct {
		Proto string `json:"proto"`
		Port  uint16 `json:"port"`
	}
	type dest struct {
		Proto string `json:"proto"`
		Host  string `json:"host"`
		Port  uint16 `json:"port"`
	}
	out := map[string]any{}
	listening := map[port]bool{}
	type conn struct {
		localPort uint16
		to        dest
	}
	var established []conn
	measured := false
	for _, proto := range []string{"tcp", "udp"} {
		for _, file := range []string{proto, proto + "6"} {
			b, err := os.ReadFile(filepath.Join(procRoot, "net", file))
			if err != nil {
				continue
			}
			measured = true
			for _, s := range parseSockets(b) {
				switch {
				case proto == "tcp" && s.state == tcpListen,
					proto == "udp" && s.state == udpUnconnected && s.remote.Addr().IsUnspecified():
					if !s.local.Addr().IsLoopback() {
						listening[port{proto, s.local.Port()}] = true
					}
				case proto == "tcp" && s.state == tcpEstablished && !s.remote.Addr().IsLoopback():
					established = append(established, conn{s.local.Port(), dest{proto, s.remote.Addr().String(), s.remote.Port()}})
				}
			}
		}
	}
	if measured {
		var ports []port
		for p := range listening {
			ports = append(ports, p)
		}
		sort.Slice(ports, func(i, j int) bool {
			return ports[i].Proto < ports[j].Proto || (ports[i].Proto == ports[j].Proto && ports[i].Port < ports[j].Port)
		})
		// A connection on one of our listening ports came in: not a
		// destination of ours.
		var dests []dest
		seen := map[dest]bool{}
		for _, c := range established {
			if !listening[port{c.to.Proto, c.localPort}] && !seen[c.to] {
				seen[c.to] = true
				dests = append(dests, c.to)
			}
		}
		sort.Slice(dests, func(i, j int) bool {
			if dests[i].Host != dests[j].Host {
				return dests[i].Host < dests[j].Host
			}
			return dests[i].Port < dests[j].Port
		})
		out["listening_ports"] = ports[:min(len(ports), maxPorts)]
		out["outbound"] = dests[:min(len(dests), maxOutbound)]
		if ports == nil {
			out["listening_ports"] = []port{}
		}
		if dests == nil {
			out["outbound"] = []dest{}
		}
	}
	if entries, err := os.ReadDir(procRoot); err == nil {
		n := 0
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
				n++
			}
		}
		if n > 0 {
			out["process_count"] = n
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Neighbour is one entry of d/{id}/security/neighbours.
type Neighbour struct {
	MAC    string `json:"mac"`
	IP     string `json:"ip,omitempty"`
	Source string `json:"source"`
}

// Neighbours reads the ARP table (procRoot/net/arp): complete entries only.
func Neighbours(procRoot string) []Neighbour {
	b, err := os.ReadFile(filepath.Join(procRoot, "net", "arp"))
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []Neighbour
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 4 {
			continue
		}
		ip, flags, mac := f[0], f[2], strings.ToLower(f[3])
		if flags == "0x0" || mac == "00:00:00:00:00:00" || seen[mac+ip] {
			continue // incomplete
		}
		if _, err := netip.ParseAddr(ip); err != nil {
			continue
		}
		seen[mac+ip] = true
		out = append(out, Neighbour{MAC: mac, IP: ip, Source: "arp"})
		if len(out) == maxNeighbours {
			break
		}
	}
	return out
}
