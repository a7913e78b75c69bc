package discovery_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/discovery"
	"github.com/steward-iot/steward/internal/discovery/oui"
)

// BenchmarkParseReport parses a full report (512 neighbours) and names
// their vendors.
func BenchmarkParseReport(b *testing.B) {
	var parts []string
	for i := range discovery.MaxNeighbours {
		parts = append(parts, fmt.Sprintf(`{"mac": "24:0a:c4:00:%02x:%02x", "ip": "192.168.%d.%d", "hostname": "host-%d", "source": "arp"}`,
			i/256, i%256, i/256, i%256, i))
	}
	payload := []byte(`{"neighbours": [` + strings.Join(parts, ",") + `]}`)
	oui.Size() // the table loads once, outside the loop
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := discovery.ParseReport(payload)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range r.Neighbours {
			_ = oui.Vendor(n.MAC)
		}
	}
}
