package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/steward-iot/steward/bench/internal/summary"
)

// TestSummary: one summary row per scenario Steward ran, Mosquitto's figure
// as the peer, and the same verdict as the program's own table.
func TestSummary(t *testing.T) {
	rep := &report{Results: []result{
		{Broker: "steward", Scenario: "fan-in QoS 0 (20 publishers)", Value: 34593, Unit: "msg/s"},
		{Broker: "steward", Scenario: "TLS connection setup", Value: 394, Unit: "conn/s"},
		{Broker: "steward", Scenario: "RSS per idle TLS connection at 2000", Value: 55 * 1024, Unit: "bytes"},
		{Broker: "mosquitto", Scenario: "fan-in QoS 0 (20 publishers)", Value: 185196, Unit: "msg/s"},
		{Broker: "mosquitto", Scenario: "TLS connection setup", Value: 440, Unit: "conn/s"},
		{Broker: "mosquitto", Scenario: "RSS per idle TLS connection at 2000", Value: 20 * 1024, Unit: "bytes"},
	}}
	var out bytes.Buffer
	rep.print(&out, true)
	rows, errs := summary.Collect(out.String())
	if len(errs) > 0 || len(rows) != 3 {
		t.Fatalf("rows %+v, errors %v\n%s", rows, errs, out.String())
	}
	got := summary.Table(rows)
	for _, want := range []string{
		"| broker | fan-in QoS 0 (20 publishers) | 34593 msg/s | 185196 msg/s (Mosquitto) | 0.19× | ≥ 1.0× Mosquitto | MISS |",
		"| broker | TLS connection setup | 394 conn/s | 440 conn/s (Mosquitto) | 0.90× | – | – |",
		"| broker | RSS per idle TLS connection at 2000 | 55.0 KiB | 20.0 KiB (Mosquitto) | 2.75× | ≤ 1.0× Mosquitto | MISS |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks\n%s\n%s", want, got)
		}
	}
	if !strings.Contains(out.String(), "| fan-in QoS 0 (20 publishers) | 34593 msg/s | 185196 msg/s | 0.19× | ≥ 1.0× MISS |") {
		t.Errorf("own table:\n%s", out.String())
	}
	// Steward alone: no peer, so no ratio and no verdict.
	rep.Results = rep.Results[:1]
	if rows := rep.summary(); len(rows) != 1 || rows[0].Peer != "" || rows[0].Result() != "–" {
		t.Errorf("steward alone: %+v", rows)
	}
}
