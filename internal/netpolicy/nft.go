package netpolicy

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/steward-iot/steward/internal/model"
)

var notIdent = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// NFTables renders a MUD profile as an nftables ruleset for a gateway
// (load it with `nft -f`). The gateway fills the sets the rules refer
// to: @devices_v4/@devices_v6 with the addresses of the product's devices,
// @host_N_v4/@host_N_v6 with the addresses each DNS name of the profile
// resolves to (the comment names it), and @class_N_* with the local hosts a
// MUD class stands for (devices of a manufacturer, controllers). Traffic of
// the devices that no rule accepts is counted, logged and dropped; replies
// of allowed connections pass as established.
func NFTables(p *model.MUDProfile) string {
	var b strings.Builder
	table := "steward_mud_" + notIdent.ReplaceAllString(p.ProductID, "_")
	fmt.Fprintf(&b, "#!/usr/sbin/nft -f\n# Steward network policy of product %s from MUD file %s\n", p.ProductID, quoteComment(p.MUDURL))
	fmt.Fprintf(&b, "# (%d allowed flows). Fill @devices_v4/@devices_v6 with the devices' addresses.\n\n", len(p.Flows))
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n\n", table, table)
	fmt.Fprintf(&b, "table inet %s {\n", table)
	b.WriteString("\tset devices_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t}\n")
	b.WriteString("\tset devices_v6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n\t}\n")

	// One pair of sets per DNS name and per MUD class.
	hosts, classes := map[string]int{}, map[string]int{}
	var hostOrder, classOrder []string
	for _, f := range p.Flows {
		switch {
		case f.RemoteHost != "":
			if _, ok := hosts[f.RemoteHost]; !ok {
				hosts[f.RemoteHost] = len(hostOrder)
				hostOrder = append(hostOrder, f.RemoteHost)
			}
		case f.RemoteClass != "" && f.RemoteClass != "local-networks":
			c := f.RemoteClass + " " + f.ClassValue
			if _, ok := classes[c]; !ok {
				classes[c] = len(classOrder)
				classOrder = append(classOrder, c)
			}
		}
	}
	for i, h := range hostOrder {
		for _, fam := range []string{"v4", "v6"} {
			fmt.Fprintf(&b, "\tset host_%d_%s {\n\t\ttype %s_addr\n\t\tflags interval\n\t\tcomment \"%s\"\n\t}\n", i, fam,
				famType(fam), quoteComment(h))
		}
	}
	for i, c := range classOrder {
		for _, fam := range []string{"v4", "v6"} {
			fmt.Fprintf(&b, "\tset class_%d_%s {\n\t\ttype %s_addr\n\t\tflags interval\n\t\tcomment \"%s\"\n\t}\n", i, fam,
				famType(fam), quoteComment(strings.TrimSpace(c)))
		}
	}

	b.WriteString("\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
	b.WriteString("\t\tct state established,related accept\n")
	b.WriteString("\t\tip saddr @devices_v4 jump from_device\n\t\tip6 saddr @devices_v6 jump from_device\n")
	b.WriteString("\t\tip daddr @devices_v4 jump to_device\n\t\tip6 daddr @devices_v6 jump to_device\n\t}\n")

	for _, dir := range []string{"from-device", "to-device"} {
		chain := strings.ReplaceAll(dir, "-", "_")
		fmt.Fprintf(&b, "\n\tchain %s {\n", chain)
		for _, f := range p.Flows {
			if f.Direction != dir {
				continue
			}
			// A TCP rule for connections the other side opens only admits
			// replies, which the established rule already passes.
			if f.InitiatedBy != "" && f.InitiatedBy != dir {
				continue
			}
			for _, rule := range rules(f, hosts, classes) {
				fmt.Fprintf(&b, "\t\t%s accept comment \"%s\"\n", rule, quoteComment(f.ACL+"/"+f.ACE))
			}
		}
		fmt.Fprintf(&b, "\t\tcounter log prefix \"steward-mud %s: \" drop\n\t}\n", dir)
	}
	b.WriteString("}\n")
	return b.String()
}

func famType(fam string) string {
	if fam == "v4" {
		return "ipv4"
	}
	return "ipv6"
}

func quoteComment(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return '_'
		}
		return r
	}, s)
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// rules renders one allowed flow as one rule per address family it needs.
func rules(f model.AllowedFlow, hosts, classes map[string]int) []string {
	remote := "daddr"
	if f.Direction == "to-device" {
		remote = "saddr"
	}
	type famRule struct{ fam, addr string }
	var fams []famRule
	switch {
	case f.RemoteHost != "":
		i := hosts[f.RemoteHost]
		fams = []famRule{{"v4", fmt.Sprintf("ip %s @host_%d_v4", remote, i)}, {"v6", fmt.Sprintf("ip6 %s @host_%d_v6", remote, i)}}
	case f.RemoteNetwork != "":
		if strings.Contains(f.RemoteNetwork, ":") {
			fams = []famRule{{"v6", "ip6 " + remote + " " + f.RemoteNetwork}}
		} else {
			fams = []famRule{{"v4", "ip " + remote + " " + f.RemoteNetwork}}
		}
	case f.RemoteClass == "local-networks":
		var v4, v6 []string
		for _, p := range LocalNetworks() {
			if p.Addr().Is4() {
				v4 = append(v4, p.String())
			} else {
				v6 = append(v6, p.String())
			}
		}
		fams = []famRule{{"v4", "ip " + remote + " { " + strings.Join(v4, ", ") + " }"},
			{"v6", "ip6 " + remote + " { " + strings.Join(v6, ", ") + " }"}}
	case f.RemoteClass != "":
		i := classes[f.RemoteClass+" "+f.ClassValue]
		fams = []famRule{{"v4", fmt.Sprintf("ip %s @class_%d_v4", remote, i)}, {"v6", fmt.Sprintf("ip6 %s @class_%d_v6", remote, i)}}
	default:
		fams = []famRule{{"v4", "meta nfproto ipv4"}, {"v6", "meta nfproto ipv6"}}
	}
	var out []string
	for _, fr := range fams {
		if (f.Family == "ipv4" && fr.fam != "v4") || (f.Family == "ipv6" && fr.fam != "v6") {
			continue
		}
		parts := []string{fr.addr}
		switch f.Protocol {
		case "":
		case "tcp", "udp":
			parts = append(parts, portExpr(f))
		case "icmp":
			if fr.fam == "v4" {
				parts = append(parts, "meta l4proto icmp")
			} else {
				parts = append(parts, "meta l4proto ipv6-icmp")
			}
		default:
			parts = append(parts, "meta l4proto "+f.Protocol)
		}
		if f.InitiatedBy != "" {
			parts = append(parts, "ct state new")
		}
		out = append(out, strings.Join(strings.Fields(strings.Join(parts, " ")), " "))
	}
	return out
}

// portExpr is the protocol match with the ports of a TCP/UDP flow, from
// the packet's point of view (the remote port is dport from the device).
func portExpr(f model.AllowedFlow) string {
	src, dst := f.LocalPorts, f.RemotePorts
	if f.Direction == "to-device" {
		src, dst = f.RemotePorts, f.LocalPorts
	}
	e := "meta l4proto " + f.Protocol
	if src != [2]int{} || dst != [2]int{} {
		e = f.Protocol
		if src != [2]int{} {
			e += " sport " + portText(src)
		}
		if dst != [2]int{} {
			e += " dport " + portText(dst)
		}
	}
	return e
}

func portText(r [2]int) string {
	if r[0] == r[1] {
		return fmt.Sprint(r[0])
	}
	return fmt.Sprintf("%d-%d", r[0], r[1])
}
