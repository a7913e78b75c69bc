package broker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A second broker on the registry of a first one counts into the same
// metrics, which the registry then reports.
func TestMetricsShareRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, second := newMetrics(reg), newMetrics(reg)
	first.telemetry.Inc()
	second.telemetry.Add(2)
	second.online.Set(5)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[f.GetName()] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[f.GetName()] += m.GetGauge().GetValue()
			}
		}
	}
	if got["steward_mqtt_messages_total"] != 3 || got["steward_mqtt_devices_online"] != 5 {
		t.Fatalf("registry reports %v, want 3 messages and 5 online", got)
	}
}
