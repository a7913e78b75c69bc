package netpolicy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/netpolicy"
)

func lightbulb(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/lightbulb.mud.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseMUD(t *testing.T) {
	p, err := netpolicy.ParseMUD(lightbulb(t))
	if err != nil {
		t.Fatal(err)
	}
	if p.MUDURL != "https://lighting.example.com/lightbulb2000" || p.MfgName != "Example Lighting" || p.LastUpdate.IsZero() {
		t.Fatalf("profile: %+v", p)
	}
	want := []model.AllowedFlow{
		{ACL: "mud-76100-v6fr", ACE: "cl0-frdev", Direction: "from-device", Family: "ipv6", Protocol: "tcp",
			RemoteHost: "test.example.com", RemotePorts: [2]int{443, 443}, InitiatedBy: "from-device"},
		{ACL: "mud-76100-v4fr", ACE: "cl0-frdev", Direction: "from-device", Family: "ipv4", Protocol: "tcp",
			RemoteHost: "test.example.com", RemotePorts: [2]int{443, 443}, InitiatedBy: "from-device"},
		{ACL: "mud-76100-v4fr", ACE: "ntp-frdev", Direction: "from-device", Family: "ipv4", Protocol: "udp",
			RemoteNetwork: "192.0.2.0/24", RemotePorts: [2]int{123, 124}},
		{ACL: "mud-76100-v4fr", ACE: "ctl-frdev", Direction: "from-device", Family: "ipv4", Protocol: "udp",
			RemoteClass: "controller", ClassValue: "urn:ietf:params:mud:dns", RemotePorts: [2]int{53, 53}},
		{ACL: "mud-76100-v6to", ACE: "cl0-todev", Direction: "to-device", Family: "ipv6", Protocol: "tcp",
			RemoteHost: "test.example.com", RemotePorts: [2]int{443, 443}, InitiatedBy: "from-device"},
		{ACL: "mud-76100-v4to", ACE: "cl0-todev", Direction: "to-device", Family: "ipv4", Protocol: "tcp",
			RemoteHost: "test.example.com", RemotePorts: [2]int{443, 443}, InitiatedBy: "from-device"},
		{ACL: "mud-76100-v4to", ACE: "loc0-todev", Direction: "to-device", Family: "ipv4", Protocol: "udp",
			RemoteClass: "local-networks", LocalPorts: [2]int{5683, 5683}},
	}
	if len(p.Flows) != len(want) {
		t.Fatalf("%d flows, want %d: %+v", len(p.Flows), len(want), p.Flows)
	}
	for i := range want {
		if p.Flows[i] != want[i] {
			t.Errorf("flow %d:\n got  %+v\n want %+v", i, p.Flows[i], want[i])
		}
	}
}

func TestEvaluate(t *testing.T) {
	parsed, err := netpolicy.ParseMUD(lightbulb(t))
	if err != nil {
		t.Fatal(err)
	}
	profile := &model.MUDProfile{MUDURL: parsed.MUDURL, Flows: parsed.Flows}
	tests := []struct {
		name string
		flow model.ObservedFlow
		want string
	}{
		{"HTTPS to the named host", model.ObservedFlow{Direction: "from-device", Protocol: "tcp", RemoteHost: "Test.Example.com.",
			RemoteAddress: "203.0.113.7", RemotePort: 443, LocalPort: 50000}, netpolicy.VerdictAllowed},
		{"same host over IPv6", model.ObservedFlow{Direction: "from-device", Protocol: "tcp", RemoteHost: "test.example.com",
			RemoteAddress: "2001:db8::7", RemotePort: 443}, netpolicy.VerdictAllowed},
		{"same host, other port", model.ObservedFlow{Direction: "from-device", Protocol: "tcp", RemoteHost: "test.example.com",
			RemotePort: 8080}, netpolicy.VerdictOutside},
		{"other host", model.ObservedFlow{Direction: "from-device", Protocol: "tcp", RemoteHost: "evil.example.net", RemotePort: 443},
			netpolicy.VerdictOutside},
		{"address only, profile names a host", model.ObservedFlow{Direction: "from-device", Protocol: "tcp", RemoteAddress: "203.0.113.7",
			RemotePort: 443}, netpolicy.VerdictOutside},
		{"opened towards the device", model.ObservedFlow{Direction: "to-device", Protocol: "tcp", RemoteHost: "test.example.com",
			LocalPort: 443}, netpolicy.VerdictOutside},
		{"NTP in the network", model.ObservedFlow{Direction: "from-device", Protocol: "udp", RemoteAddress: "192.0.2.10",
			RemotePort: 123}, netpolicy.VerdictAllowed},
		{"NTP range end", model.ObservedFlow{Direction: "from-device", Protocol: "udp", RemoteAddress: "192.0.2.10",
			RemotePort: 124}, netpolicy.VerdictAllowed},
		{"outside the network", model.ObservedFlow{Direction: "from-device", Protocol: "udp", RemoteAddress: "198.51.100.1",
			RemotePort: 123}, netpolicy.VerdictOutside},
		{"CoAP from the local network", model.ObservedFlow{Direction: "to-device", Protocol: "udp", RemoteAddress: "192.168.1.20",
			RemotePort: 40000, LocalPort: 5683}, netpolicy.VerdictAllowed},
		{"CoAP from the internet", model.ObservedFlow{Direction: "to-device", Protocol: "udp", RemoteAddress: "198.51.100.1",
			LocalPort: 5683}, netpolicy.VerdictOutside},
		{"DNS to a local controller", model.ObservedFlow{Direction: "from-device", Protocol: "udp", RemoteAddress: "10.0.0.1",
			RemotePort: 53}, netpolicy.VerdictAllowed},
		{"DNS to a public resolver", model.ObservedFlow{Direction: "from-device", Protocol: "udp", RemoteAddress: "8.8.8.8",
			RemotePort: 53}, netpolicy.VerdictOutside},
		{"ICMP", model.ObservedFlow{Direction: "from-device", Protocol: "icmp", RemoteAddress: "192.0.2.10"}, netpolicy.VerdictOutside},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := netpolicy.NormalizeFlow(tc.flow)
			if err != nil {
				t.Fatal(err)
			}
			if got := netpolicy.Evaluate(profile, f); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	f, _ := netpolicy.NormalizeFlow(tests[0].flow)
	if got := netpolicy.Evaluate(nil, f); got != netpolicy.VerdictNoProfile {
		t.Fatalf("without a profile: %s", got)
	}
	// The ephemeral port does not split a flow.
	a, _ := netpolicy.NormalizeFlow(model.ObservedFlow{Direction: "from-device", Protocol: "tcp", RemoteHost: "a.example", RemotePort: 443, LocalPort: 1})
	b, _ := netpolicy.NormalizeFlow(model.ObservedFlow{Direction: "from-device", Protocol: "TCP", RemoteHost: "A.example.", RemotePort: 443, LocalPort: 2})
	if a.Key != b.Key {
		t.Fatalf("one flow, two keys: %s %s", a.Key, b.Key)
	}
}

func TestNormalizeFlowRefuses(t *testing.T) {
	for name, f := range map[string]model.ObservedFlow{
		"direction":       {Direction: "out", Protocol: "tcp", RemoteHost: "a.example"},
		"protocol":        {Direction: "from-device", Protocol: "quic", RemoteHost: "a.example"},
		"no remote":       {Direction: "from-device", Protocol: "tcp"},
		"bad address":     {Direction: "from-device", Protocol: "tcp", RemoteAddress: "300.1.1.1"},
		"bad host":        {Direction: "from-device", Protocol: "tcp", RemoteHost: "a b"},
		"port":            {Direction: "from-device", Protocol: "tcp", RemoteHost: "a.example", RemotePort: 70000},
		"negative volume": {Direction: "from-device", Protocol: "tcp", RemoteHost: "a.example", Bytes: -1},
	} {
		if _, err := netpolicy.NormalizeFlow(f); err == nil {
			t.Errorf("%s: accepted %+v", name, f)
		}
	}
}

func TestParseMUDBadInput(t *testing.T) {
	good := lightbulb(t)
	edit := func(fn func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		fn(m)
		b, _ := json.Marshal(m)
		return b
	}
	mud := func(m map[string]any) map[string]any { return m["ietf-mud:mud"].(map[string]any) }
	acls := func(m map[string]any) []any {
		return m["ietf-access-control-list:acls"].(map[string]any)["acl"].([]any)
	}
	ace0 := func(m map[string]any, acl int) map[string]any {
		return acls(m)[acl].(map[string]any)["aces"].(map[string]any)["ace"].([]any)[0].(map[string]any)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a MUD file"},
		{"malformed", good[:len(good)/2], "not valid JSON"},
		{"huge", append(good, bytes.Repeat([]byte(" "), netpolicy.MaxMUDBytes)...), "larger than"},
		{"an SBOM", []byte(`{"bomFormat":"CycloneDX"}`), "SBOM, not a MUD file"},
		{"no mud container", []byte(`{"ietf-access-control-list:acls":{"acl":[]}}`), "ietf-mud:mud container is missing"},
		{"no acls", edit(func(m map[string]any) { delete(m, "ietf-access-control-list:acls") }), "acls container is missing"},
		{"version", edit(func(m map[string]any) { mud(m)["mud-version"] = 2 }), "mud-version"},
		{"http url", edit(func(m map[string]any) { mud(m)["mud-url"] = "http://x.example/m" }), "https URL"},
		{"no last-update", edit(func(m map[string]any) { delete(mud(m), "last-update") }), "last-update"},
		{"no is-supported", edit(func(m map[string]any) { delete(mud(m), "is-supported") }), "is-supported"},
		{"cache-validity", edit(func(m map[string]any) { mud(m)["cache-validity"] = 500 }), "cache-validity"},
		{"wrong type", edit(func(m map[string]any) { mud(m)["mud-version"] = "one" }), "wrong type"},
		{"unknown ACL", edit(func(m map[string]any) {
			mud(m)["to-device-policy"] = map[string]any{"access-lists": map[string]any{"access-list": []any{map[string]any{"name": "nope"}}}}
		}), `names ACL "nope"`},
		{"unused ACL", edit(func(m map[string]any) { delete(mud(m), "to-device-policy") }), "no policy uses it"},
		{"unknown match", edit(func(m map[string]any) { ace0(m, 0)["matches"].(map[string]any)["sctp"] = map[string]any{} }), `unknown match "sctp"`},
		{"unknown field in a match", edit(func(m map[string]any) {
			ace0(m, 0)["matches"].(map[string]any)["ipv6"].(map[string]any)["colour"] = "red"
		}), "colour"},
		{"bad port", edit(func(m map[string]any) {
			ace0(m, 0)["matches"].(map[string]any)["tcp"].(map[string]any)["source-port"] = map[string]any{"operator": "eq", "port": 70000}
		}), "not a port"},
		{"bad action", edit(func(m map[string]any) { ace0(m, 0)["actions"] = map[string]any{"forwarding": "maybe"} }), "not accept"},
		{"bad dns name", edit(func(m map[string]any) {
			ace0(m, 0)["matches"].(map[string]any)["ipv6"].(map[string]any)["ietf-acldns:src-dnsname"] = "bad name!"
		}), "not a DNS name"},
		{"bad network", edit(func(m map[string]any) {
			acls(m)[3].(map[string]any)["aces"].(map[string]any)["ace"].([]any)[1].(map[string]any)["matches"].(map[string]any)["ipv4"].(map[string]any)["destination-ipv4-network"] = "192.0.2.0/99"
		}), "not a network"},
		{"direction-initiated on udp", edit(func(m map[string]any) {
			acls(m)[3].(map[string]any)["aces"].(map[string]any)["ace"].([]any)[1].(map[string]any)["matches"].(map[string]any)["udp"].(map[string]any)["ietf-mud:direction-initiated"] = "from-device"
		}), "TCP only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := netpolicy.ParseMUD(tc.data)
			var ie *netpolicy.InputError
			if err == nil || !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an input error naming %q", err, tc.want)
			}
		})
	}
}

func TestNFTables(t *testing.T) {
	parsed, err := netpolicy.ParseMUD(lightbulb(t))
	if err != nil {
		t.Fatal(err)
	}
	rules := netpolicy.NFTables(&model.MUDProfile{ProductID: "prd_01abc", MUDURL: parsed.MUDURL, Flows: parsed.Flows})
	for _, want := range []string{
		"table inet steward_mud_prd_01abc {",
		"set host_0_v4 {",
		`comment "test.example.com"`,
		"ip daddr @host_0_v4 tcp dport 443 ct state new accept",
		"ip6 daddr @host_0_v6 tcp dport 443 ct state new accept",
		"ip daddr 192.0.2.0/24 udp dport 123-124 accept",
		"ip daddr @class_0_v4 udp dport 53 accept",
		"ip saddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16 } udp dport 5683 accept",
		"ct state established,related accept",
		`counter log prefix "steward-mud from-device: " drop`,
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules lack %q:\n%s", want, rules)
		}
	}
	// The to-device rules for replies (direction-initiated from-device)
	// are covered by the established rule, not repeated.
	if strings.Contains(rules, "ip saddr @host_0_v4") {
		t.Errorf("reply rule rendered:\n%s", rules)
	}
	// When nft is installed and may check rules here, it must accept them.
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Log("nft not installed; rules checked as text only")
		return
	}
	file := filepath.Join(t.TempDir(), "mud.nft")
	os.WriteFile(file, []byte(rules), 0o600)
	out, err := exec.Command(nft, "--check", "-f", file).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "Operation not permitted") || strings.Contains(string(out), "Netlink") {
			t.Logf("nft cannot check here: %s", out)
			return
		}
		t.Fatalf("nft --check refuses the rules: %v\n%s\n%s", err, out, rules)
	}
}
