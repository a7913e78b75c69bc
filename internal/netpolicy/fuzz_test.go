package netpolicy_test

import (
	"testing"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/netpolicy"
)

// FuzzParseMUD: any input is parsed or refused with an InputError, never a
// panic; a parsed profile can be rendered and evaluated.
func FuzzParseMUD(f *testing.F) {
	f.Add(lightbulb(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := netpolicy.ParseMUD(data)
		if err != nil {
			return
		}
		prof := &model.MUDProfile{ProductID: "prd_fuzz", MUDURL: p.MUDURL, Flows: p.Flows}
		_ = netpolicy.NFTables(prof)
		for _, fl := range p.Flows {
			if fl.Direction != "from-device" && fl.Direction != "to-device" {
				t.Fatalf("flow with direction %q", fl.Direction)
			}
		}
		f, err := netpolicy.NormalizeFlow(model.ObservedFlow{Direction: "from-device", Protocol: "tcp", RemoteHost: "a.example", RemotePort: 443})
		if err != nil {
			t.Fatal(err)
		}
		netpolicy.Evaluate(prof, f)
	})
}
