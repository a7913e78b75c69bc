package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A /proc as Linux writes it: sshd on 0.0.0.0:22, a web server on
// [::]:8080 with one client connected in, one outbound HTTPS connection, a
// loopback-only listener, mDNS on UDP 5353, two processes.
func fakeProc(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"net/tcp": `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:C350 0771000A:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:C351 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 20 4 30 10 -1
`,
		"net/tcp6": `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000F02000A:1F90 0000000000000000FFFF00000571000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 20 4 30 10 -1
`,
		"net/udp": `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   104        0 7 2 0000000000000000 0
`,
		"net/arp": `IP address       HW type     Flags       HW address            Mask     Device
10.0.2.2         0x1         0x2         52:55:0A:00:02:02     *        eth0
10.0.2.9         0x1         0x0         00:00:00:00:00:00     *        eth0
10.0.2.3         0x1         0x2         52:55:0a:00:02:03     *        eth0
`,
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, pid := range []string{"1", "42", "self-not-a-pid"} {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSecurityMetrics(t *testing.T) {
	got, _ := json.Marshal(SecurityMetrics(fakeProc(t)))
	want := `{"listening_ports":[{"proto":"tcp","port":22},{"proto":"tcp","port":8080},{"proto":"udp","port":5353}],` +
		`"outbound":[{"proto":"tcp","host":"10.0.113.7","port":443}],"process_count":2}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if m := SecurityMetrics(t.TempDir()); m != nil {
		t.Errorf("nothing to read, yet %v", m)
	}
}

func TestNeighbours(t *testing.T) {
	got := Neighbours(fakeProc(t))
	want := []Neighbour{{MAC: "52:55:0a:00:02:02", IP: "10.0.2.2", Source: "arp"}, {MAC: "52:55:0a:00:02:03", IP: "10.0.2.3", Source: "arp"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestParseHexAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"0000000000000000FFFF00000F02000A:1F90": "10.0.2.15:8080",
		"B80D0120000000000000000001000000:0050": "[2001:db8::1]:80",
	} {
		got, ok := parseHexAddr(in)
		if !ok || got.String() != want {
			t.Errorf("%s: %v %v, want %s", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "zz:1", "0100007F", "0100007F:FFFFF", "01007F:0050"} {
		if _, ok := parseHexAddr(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
