package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/bench/internal/summary"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// TestMain lets the test binary act as the load generator child process.
func TestMain(m *testing.M) {
	for i, a := range os.Args {
		if a == "-client-job" && i+1 < len(os.Args) {
			if err := runClient(context.Background(), os.Args[i+1], os.Stdout); err != nil {
				os.Stderr.WriteString(err.Error() + "\n")
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// TestRun runs the whole program small, on SQLite and (when a server is
// reachable) PostgreSQL. It checks the program works and every enrollment
// left its rows; it never looks at the figures.
func TestRun(t *testing.T) {
	backend := "sqlite"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if db, err := sql.Open("pgx", pgtest.BaseURL()); err == nil {
		if db.PingContext(ctx) == nil {
			backend = "both"
		}
		db.Close()
	}
	var out bytes.Buffer
	err := run(context.Background(), options{N: 20, Clients: 4, Workers: 2, Backend: backend, PG: pgtest.BaseURL(), Rounds: 1,
		Markdown: true}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"sqlite", "| backend |", "end-to-end round 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// One summary row per backend: end to end against the bare loop.
	rows, errs := summary.Collect(out.String())
	if want := map[string]int{"sqlite": 1, "both": 2}[backend]; len(errs) > 0 || len(rows) != want {
		t.Fatalf("summary rows %+v (want %d), errors %v", rows, want, errs)
	}
	for _, r := range rows {
		if r.Peer != "bare loop" || r.Value <= 0 || r.PeerValue <= 0 || r.Target == nil || !r.Target.Ratio {
			t.Errorf("summary row %+v", r)
		}
	}
}
