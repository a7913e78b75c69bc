package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/steward-iot/steward/bench/internal/summary"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// TestRun runs the whole benchmark on a small image; it never looks at timings.
func TestRun(t *testing.T) {
	o := options{SizeMiB: 2, Rounds: 1, Markdown: true, TLS: true}
	res, err := run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res.print(&out, o)
	if !strings.Contains(out.String(), "| 2 MiB |") {
		t.Fatalf("output:\n%s", out.String())
	}
	rows, errs := summary.Collect(out.String())
	if len(errs) > 0 || len(rows) != 1 || rows[0].Measurement != "artifact download, 2 MiB image, https loopback" ||
		rows[0].Peer == "" || rows[0].PeerValue <= 0 || rows[0].Target == nil {
		t.Fatalf("summary rows %+v, errors %v", rows, errs)
	}
}

// The campaign measurement on a small fleet: every campaign targets exactly
// the devices its query selects, and the first wave tells wave_size of
// them. It never looks at timings.
func testCampaigns(t *testing.T, backend string) {
	const devices, waveSize = 2000, 100
	var log bytes.Buffer
	o := campaignOptions{Devices: devices, Backend: backend, Rounds: 2, WaveSize: waveSize, PG: pgtest.BaseURL(),
		Dir: t.TempDir(), Seed: 5, Log: &log}
	rep, err := runCampaigns(t.Context(), o)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(rep.Runs) != 1 || rep.Runs[0].Backend != backend {
		t.Fatalf("runs: %+v", rep.Runs)
	}
	r := rep.Runs[0]
	if len(r.Results) != len(campaignQueries) {
		t.Fatalf("%d results, want %d", len(r.Results), len(campaignQueries))
	}
	for i, c := range r.Results {
		if len(c.Samples) != o.Rounds {
			t.Errorf("%s: %d samples, want %d", c.Name, len(c.Samples), o.Rounds)
		}
		if c.Want == 0 || c.Targeted != c.Want {
			t.Errorf("%s: targeted %d devices, want %d", c.Name, c.Targeted, c.Want)
		}
		if i == 0 && c.Targeted != devices {
			t.Errorf("%s: targeted %d devices, want all %d", c.Name, c.Targeted, devices)
		}
		if i > 0 && c.Targeted >= r.Results[0].Targeted {
			t.Errorf("%s: targeted %d devices, not a subset of %d", c.Name, c.Targeted, r.Results[0].Targeted)
		}
	}
	if r.Wave == nil || r.Wave.Told != waveSize || len(r.Wave.Samples) != o.Rounds {
		t.Errorf("first wave: %+v, want %d devices told in %d rounds", r.Wave, waveSize, o.Rounds)
	}
	var out bytes.Buffer
	rep.print(&out, true)
	for _, w := range []string{"| " + backend + " | CreateCampaign: every device (all states) | 2000 |", "first wave (StepCampaigns, wave_size 100) | 100 | 2 |"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	// One summary row per query (the first wave has no target), the
	// slowest round against the target.
	rows, errs := summary.Collect(out.String())
	if len(errs) > 0 || len(rows) != len(campaignQueries) {
		t.Fatalf("summary rows %+v, errors %v", rows, errs)
	}
	for i, row := range rows {
		c := r.Results[i]
		if !strings.Contains(row.Measurement, c.Name) || !strings.Contains(row.Measurement, backend) ||
			row.Value != slices.Max(c.Samples).Seconds() || row.Target == nil || row.Target.Bound != campaignTarget.Seconds() {
			t.Errorf("summary row %d: %+v", i, row)
		}
	}
}

func TestCampaignsSQLite(t *testing.T) { testCampaigns(t, "sqlite") }

func TestCampaignsPostgres(t *testing.T) {
	pgtest.URL(t) // skips (or fails under CI=true) when no server is reachable
	testCampaigns(t, "postgres")
}
