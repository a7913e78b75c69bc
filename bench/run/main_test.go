package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/bench/internal/summary"
)

var update = flag.Bool("update", false, "rewrite testdata/summary.md from the captured program output")

// TestBenches: every program in bench/ has bounded quick and full
// arguments here, ota included, and names are unique.
func TestBenches(t *testing.T) {
	ents, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join("..", e.Name(), "main.go")); err == nil && e.Name() != "run" && !known(e.Name()) {
			t.Errorf("bench/%s is not in the list", e.Name())
		}
	}
	seen := map[string]bool{}
	var ota *bench
	for i, b := range benches {
		if seen[b.name] || len(b.quick) == 0 || len(b.full) == 0 {
			t.Errorf("%s: duplicate, or without quick or full arguments", b.name)
		}
		seen[b.name] = true
		if b.name == "ota" {
			ota = &benches[i]
		}
	}
	if ota == nil {
		t.Fatal("ota is not in the list")
	}
	for _, want := range [][]string{{"-campaign-devices", "20000"}, {"-backend", "both"}, {"-size", "64"}} {
		if i := slices.Index(ota.quick, want[0]); i < 0 || ota.quick[i+1] != want[1] {
			t.Errorf("ota quick arguments %v lack %v", ota.quick, want)
		}
	}
	if !slices.Contains(ota.full, "1000000") || !slices.Contains(ota.quick, "-markdown") {
		t.Errorf("ota arguments: quick %v, full %v", ota.quick, ota.full)
	}
}

// sampleResults reads output the programs printed in small runs
// (testdata/<name>.out, their standard output as the harness captures it)
// the way runOne does.
func sampleResults(t *testing.T) []result {
	var rs []result
	for _, n := range []string{"fleetquery", "enroll", "ingest", "broker", "ota"} {
		b, err := os.ReadFile(filepath.Join("testdata", n+".out"))
		if err != nil {
			t.Fatal(err)
		}
		r := result{name: n, args: []string{"-x"}, took: time.Second}
		r.tables, r.lastLine = tables(string(b))
		r.rows, r.rowErrs = summary.Collect(string(b))
		rs = append(rs, r)
	}
	return rs
}

// TestSummaryFromOutput: the summary table is built from the rows the
// programs emitted, every row of every program, in run order; the summary
// lines stay out of the programs' own tables.
func TestSummaryFromOutput(t *testing.T) {
	rs := sampleResults(t)
	perProgram := map[string]int{"fleetquery": 4, "enroll": 2, "ingest": 2, "broker": 4, "ota": 7}
	for _, r := range rs {
		if len(r.rowErrs) > 0 {
			t.Errorf("%s: %v", r.name, r.rowErrs)
		}
		if len(r.rows) != perProgram[r.name] {
			t.Errorf("%s: %d summary rows, want %d", r.name, len(r.rows), perProgram[r.name])
		}
		for _, row := range r.rows {
			if row.Benchmark != r.name {
				t.Errorf("%s emitted a row of %q", r.name, row.Benchmark)
			}
		}
		if strings.Contains(r.tables, summary.Prefix) || r.tables == "" {
			t.Errorf("%s: tables:\n%s", r.name, r.tables)
		}
	}
	got := summaryTable(rs)
	golden := filepath.Join("testdata", "summary.md")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("summary:\n%s\nwant (testdata/summary.md):\n%s", got, want)
	}
	// Spot checks against the programs' own tables in the same output.
	for _, row := range []string{
		"| broker | fan-in QoS 0 (5 publishers) | 18258 msg/s | 112120 msg/s (Mosquitto) | 0.16× | ≥ 1.0× Mosquitto | MISS |",
		"| broker | TLS connection setup | 239 conn/s | 352 conn/s (Mosquitto) | 0.68× | – | – |",
		"| broker | RSS per idle TLS connection at 200 | 80.9 KiB | 25.4 KiB (Mosquitto) | 3.18× | ≤ 1.0× Mosquitto | MISS |",
		"| enroll | enrollment rate end to end, sqlite, new TLS connection per device | 185 enrollments/s | 3284 enrollments/s (bare loop) | 0.06× | ≥ 0.5× bare loop | MISS |",
		"| ingest | telemetry points acknowledged, postgres, 20 devices offering 400 msg/s | 1200 points/s | – | – | – | – |",
		"| ota | artifact download, 2 MiB image, https loopback | 377 MiB/s | 669 MiB/s (plain ServeContent) | 0.56× | ≥ 0.9× plain ServeContent | MISS |",
		"| ota | CreateCampaign, every device (all states), postgres, 2000 devices targeted, slowest of 1 | 0.02 s | – | – | < 10 s | PASS |",
		"| fleetquery | store queries, worst p95 of 9, postgres, 2000 devices: serial prefix search, by serial — page 1 | 7.14 ms | – | – | < 50 ms | PASS |",
	} {
		if !strings.Contains(got, row+"\n") {
			t.Errorf("summary lacks\n%s", row)
		}
	}
	// On top of the report: before the table of runs and every program's section.
	rep := render(rs, false, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	if i, j, k := strings.Index(rep, "### Summary"), strings.Index(rep, "| benchmark | arguments |"), strings.Index(rep, "### fleetquery"); i < 0 || i > j || j > k {
		t.Errorf("report order:\n%s", rep)
	}
}

// TestSummaryEdgeCases: unreadable lines are named, a skipped run is shown
// as such, and no rows at all says so.
func TestSummaryEdgeCases(t *testing.T) {
	out := "| a |\n| --- |\n| 1 |\n\n" + summary.Prefix + "{\"benchmark\":\"x\"}\n"
	r := result{name: "x", took: time.Second, err: errors.New("exit status 1")}
	r.tables, r.lastLine = tables(out)
	r.rows, r.rowErrs = summary.Collect(out)
	rep := render([]result{r, {name: "ota-s3", args: []string{"-s3"}, skipped: "SeaweedFS (weed) is not installed"}}, false, time.Now())
	for _, want := range []string{
		"No program printed a summary line.",
		"Summary lines that could not be read:\n\n- x: summary line",
		"| ota-s3 | `-s3` | 0s | skipped: SeaweedFS (weed) is not installed |",
		"| x | `` | 1s | **failed**: exit status 1 |",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	if strings.Contains(rep, "### ota-s3") {
		t.Errorf("a skipped run has a section:\n%s", rep)
	}
}

func TestTables(t *testing.T) {
	out := "starting\nsome log\n\nResults:\n| a | b |\n| --- | --- |\n| 1 | 2 |\nafter\n| c |\n| --- |\n| 3 |\ndone\n"
	got, last := tables(out)
	want := "Results:\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\nafter\n\n| c |\n| --- |\n| 3 |"
	if got != want {
		t.Fatalf("tables:\n%s\nwant:\n%s", got, want)
	}
	if last != "done" {
		t.Fatalf("last line %q", last)
	}
}

func TestRewrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(p, []byte("# Benchmarks\n\ntext\n"), 0o644)
	report := render([]result{{name: "x", args: []string{"-n", "1"}, took: time.Second, tables: "| a |\n| --- |\n| 1 |"}}, false,
		time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	if err := rewrite(p, report); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	first := string(b)
	if !strings.HasPrefix(first, "# Benchmarks\n\ntext\n\n## Latest run of all benchmarks\n\n"+beginMarker) ||
		!strings.Contains(first, "2026-11-26 10:00 UTC") || !strings.Contains(first, "| x | `-n 1` | 1s | ok |") {
		t.Fatalf("first write:\n%s", first)
	}
	// A second run replaces the section and keeps what is around it.
	os.WriteFile(p, []byte(first+"\n## after\n"), 0o644)
	report2 := render([]result{{name: "y", took: 2 * time.Second}}, true, time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	if err := rewrite(p, report2); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(p)
	s := string(b)
	if strings.Contains(s, "| x |") || !strings.Contains(s, "| y |") || !strings.HasSuffix(s, endMarker+"\n\n## after\n") ||
		strings.Count(s, beginMarker) != 1 || !strings.Contains(s, "go run ./bench/run -full") {
		t.Fatalf("second write:\n%s", s)
	}
	// One marker alone is an error, not a silent append.
	os.WriteFile(p, []byte("x\n"+beginMarker+"\n"), 0o644)
	if err := rewrite(p, report); err == nil {
		t.Fatal("a README with one marker was rewritten")
	}
}
