package defender_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/defender"
	"github.com/steward-iot/steward/internal/model"
)

// BenchmarkConnWatchObserve is the cost the broker's event goroutine pays
// per connection event (counting in memory; no database).
func BenchmarkConnWatchObserve(b *testing.B) {
	w := defender.NewConnWatch(nil, nil)
	evs := make([]model.Event, 1000)
	for i := range evs {
		data, _ := json.Marshal(map[string]any{"device_id": fmt.Sprintf("dev-%d", i), "method": "token", "remote": "192.0.2.1:1"})
		evs[i] = model.Event{TenantID: "ten-a", Type: "device.connected", Time: time.Now(), Data: data}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w.Observe(evs[i%len(evs)])
	}
}
