package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/bench/internal/summary"
)

// TestIngestRuns runs the whole program with a small fleet on SQLite. It
// checks that figures come out, never what they are.
func TestIngestRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a platform and a simulated fleet")
	}
	var out strings.Builder
	err := run(context.Background(), options{Backend: "sqlite", Devices: 20, Interval: 50 * time.Millisecond,
		Warmup: 200 * time.Millisecond, Time: time.Second, Markdown: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| sqlite | 20 |") || !strings.Contains(out.String(), "points/s") {
		t.Fatalf("output:\n%s", out.String())
	}
	rows, errs := summary.Collect(out.String())
	if len(errs) > 0 || len(rows) != 1 || rows[0].Unit != "points/s" || !strings.Contains(rows[0].Measurement, "sqlite") {
		t.Fatalf("summary rows %+v, errors %v", rows, errs)
	}
}
