// Command fleetquery measures Steward's fleet queries on a large fleet.
//
// It generates a realistic fleet (default 1,000,000 devices for one tenant
// plus 10,000 for a second one), bulk-loads it into a fresh SQLite file
// and/or a fresh PostgreSQL schema, then runs the five typical fleet queries
// of the dashboard and API through the real store (sqlstore.QueryDevices),
// each R times with parameters drawn at random, and the dashboard's state
// summary (CountDevicesByState). It prints p50/p95/p99/max per query and
// backend, and PASS/MISS against the targets: p95 < 100 ms on SQLite, < 50
// ms on PostgreSQL. It never fails on a missed target: it reports.
//
//	go run ./bench/fleetquery -n 1000000 -backend both -markdown
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/steward-iot/steward/bench/internal/fleet"
	"github.com/steward-iot/steward/bench/internal/summary"
)

type config struct {
	N, N2    int
	Reps     int
	Pages    int
	Backend  string // sqlite, postgres or both
	Markdown bool
	Keep     bool
	Seed     uint64
	PG       string // PostgreSQL server URL; a schema is created in it
	Dir      string // SQLite folder; a temporary one when empty
	MaxTime  time.Duration
	// NoDashboard skips rendering the device list through the dashboard.
	NoDashboard bool
}

func main() {
	var c config
	flag.IntVar(&c.N, "n", 1_000_000, "devices of the main tenant")
	flag.IntVar(&c.N2, "n2", 10_000, "devices of the second, small tenant")
	flag.IntVar(&c.Reps, "r", 200, "timed repetitions of each query")
	flag.IntVar(&c.Pages, "pages", 2, "cursors to follow after the first page (measured as the later pages)")
	flag.StringVar(&c.Backend, "backend", "both", "sqlite, postgres or both")
	flag.BoolVar(&c.Markdown, "markdown", false, "also write the results as Markdown to stdout")
	flag.BoolVar(&c.Keep, "keep", false, "keep the SQLite file / PostgreSQL schema afterwards (for EXPLAIN)")
	flag.Uint64Var(&c.Seed, "seed", 1, "seed of the fleet and of the query parameters")
	flag.StringVar(&c.PG, "pg", fleet.PGFromEnv(), "PostgreSQL server URL (a fresh schema is created in it)")
	flag.StringVar(&c.Dir, "dir", "", "folder for the SQLite database (default: a temporary folder)")
	flag.DurationVar(&c.MaxTime, "max-time", 2*time.Minute, "time limit per query; fewer repetitions are reported when reached")
	flag.BoolVar(&c.NoDashboard, "no-dashboard", false, "skip the dashboard's device-list render measurement")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, c, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fleetquery:", err)
		os.Exit(1)
	}
}

// backendRun is what one backend did.
type backendRun struct {
	Backend string
	Version string // server / library version and notable settings
	Target  time.Duration
	Load    fleet.LoadStats
	Results []*result
	Kept    string // where the data stays, with -keep
	// LoadAfter is the machine's load average once the queries ran.
	LoadAfter string
}

type report struct {
	Config   config
	Started  time.Time
	Generate time.Duration
	Host     string
	// LoadStart is the machine's load average before the run.
	LoadStart string
	Runs      []*backendRun
}

func run(ctx context.Context, c config, stdout, logw io.Writer) (*report, error) {
	backends, err := fleet.Backends(c.Backend)
	if err != nil {
		return nil, err
	}
	if c.N < 1 || c.N2 < 0 || c.Reps < 1 || c.Pages < 0 {
		return nil, errors.New("-n and -r must be positive, -n2 and -pages not negative")
	}
	if c.MaxTime <= 0 {
		c.MaxTime = time.Hour
	}
	rep := &report{Config: c, Started: time.Now(), Host: hostInfo(), LoadStart: loadAvg()}

	fmt.Fprintf(logw, "generating %d + %d devices …\n", c.N, c.N2)
	t0 := time.Now()
	ds, err := fleet.Generate(c.Seed, c.N, c.N2, time.Now())
	if err != nil {
		return nil, err
	}
	rep.Generate = time.Since(t0)
	fmt.Fprintf(logw, "generated %d devices, %d tag rows, %d attribute rows in %v\n",
		len(ds.Devices), len(ds.TagRows), len(ds.AttrRows), rep.Generate.Round(time.Millisecond))

	o := benchOpts{reps: c.Reps, pages: c.Pages, maxTime: c.MaxTime, seed: c.Seed, dashboard: !c.NoDashboard}
	for _, b := range backends {
		br := &backendRun{Backend: b, Target: 100 * time.Millisecond}
		if b == "postgres" {
			br.Target = 50 * time.Millisecond
		}
		if err := loadAndMeasure(ctx, c, b, ds, o, br, logw); err != nil {
			return nil, fmt.Errorf("%s: %w", b, err)
		}
		rep.Runs = append(rep.Runs, br)
	}
	printText(stdout, rep)
	if c.Markdown {
		fmt.Fprintln(stdout)
		printMarkdown(stdout, rep)
	}
	summary.Print(stdout, summaryRows(rep)...)
	return rep, nil
}

// loadAndMeasure loads the fleet into a fresh database of backend, then
// measures.
func loadAndMeasure(ctx context.Context, c config, backend string, ds *fleet.Dataset, o benchOpts, br *backendRun, logw io.Writer) error {
	tg, err := fleet.NewTarget(ctx, backend, c.Dir, c.PG, c.Keep, logw)
	if err != nil {
		return err
	}
	defer tg.Close()
	br.Kept = tg.Kept
	db, ld, err := tg.Load(ctx, ds)
	br.Version, br.Load = tg.Version, ld
	if err != nil {
		return err
	}
	defer db.Close()
	br.Results, err = measure(ctx, db, ds, o, br.Backend, logw)
	if err == nil && o.dashboard {
		var dash []*result
		dash, err = measureDashboard(ctx, db, ds, o, br.Backend, logw)
		br.Results = append(br.Results, dash...)
	}
	br.LoadAfter = loadAvg()
	return err
}
