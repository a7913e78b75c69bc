package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/bench/internal/summary"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// These tests keep the benchmark from rotting: they run the whole program
// on a small fleet. They never look at timings.

func smallConfig(t *testing.T, backend string) config {
	return config{N: 2000, N2: 300, Reps: 5, Pages: 2, Backend: backend, Markdown: true, Seed: 7,
		PG: pgtest.BaseURL(), Dir: t.TempDir(), MaxTime: time.Minute}
}

func checkReport(t *testing.T, rep *report, out string, backends ...string) {
	t.Helper()
	if len(rep.Runs) != len(backends) {
		t.Fatalf("got %d backend runs, want %d", len(rep.Runs), len(backends))
	}
	for i, br := range rep.Runs {
		if br.Backend != backends[i] {
			t.Errorf("run %d is %s, want %s", i, br.Backend, backends[i])
		}
		if br.Load.Devices != rep.Config.N+rep.Config.N2 || br.Load.Tags == 0 || br.Load.Attrs == 0 {
			t.Errorf("%s: load stats %+v", br.Backend, br.Load)
		}
		// Each workload's first and later pages, the state summary, and
		// one rendered dashboard view each.
		if want := 2*len(workloads) + 1 + len(dashboardViews); len(br.Results) != want {
			t.Fatalf("%s: %d results, want %d", br.Backend, len(br.Results), want)
		}
		for _, r := range br.Results {
			first := !strings.HasSuffix(r.Key, "+")
			if first && len(r.Samples) != rep.Config.Reps {
				t.Errorf("%s %s: %d samples, want %d", br.Backend, r.Name, len(r.Samples), rep.Config.Reps)
			}
			if (r.Key == "q1" || r.Key == "d1") && r.Rows == 0 {
				t.Errorf("%s %s: no rows at all", br.Backend, r.Name)
			}
		}
		if !strings.Contains(out, "| "+br.Backend+" | "+workloads[0].name) {
			t.Errorf("Markdown table lacks %s rows", br.Backend)
		}
	}
	// Per backend: the worst store query and the worst rendered list.
	rows, errs := summary.Collect(out)
	if len(errs) > 0 || len(rows) != 2*len(backends) {
		t.Fatalf("summary rows %+v, errors %v", rows, errs)
	}
	for i, row := range rows {
		br := rep.Runs[i/2]
		want := br.Target
		if i%2 == 1 {
			want = dashboardTarget
		}
		if !strings.Contains(row.Measurement, br.Backend) || row.Target == nil || row.Target.Bound != ms(want) || row.Value <= 0 {
			t.Errorf("summary row %d: %+v", i, row)
		}
	}
	for _, w := range []string{"p95 ms", "PASS", "rows/s", countName} {
		if !strings.Contains(out, w) && !(w == "PASS" && strings.Contains(out, "MISS")) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestRunSQLite(t *testing.T) {
	var out, log bytes.Buffer
	rep, err := run(t.Context(), smallConfig(t, "sqlite"), &out, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	checkReport(t, rep, out.String(), "sqlite")
}

func TestRunPostgres(t *testing.T) {
	pgtest.URL(t) // skips (or fails under CI=true) when no server is reachable
	var out, log bytes.Buffer
	rep, err := run(t.Context(), smallConfig(t, "postgres"), &out, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	checkReport(t, rep, out.String(), "postgres")
}
