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
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/steward-iot/steward/internal/store/sqlstore"
)

// defaultPG is the local test server (trust auth); STEWARD_TEST_POSTGRES
// overrides it, as for the store's tests.
const defaultPG = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

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
	flag.StringVar(&c.PG, "pg", envOr("STEWARD_TEST_POSTGRES", defaultPG), "PostgreSQL server URL (a fresh schema is created in it)")
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

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// backendRun is what one backend did.
type backendRun struct {
	Backend string
	Version string // server / library version and notable settings
	Target  time.Duration
	Load    loadStats
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
	var backends []string
	switch c.Backend {
	case "sqlite", "postgres":
		backends = []string{c.Backend}
	case "both":
		backends = []string{"sqlite", "postgres"}
	default:
		return nil, fmt.Errorf("-backend %q: want sqlite, postgres or both", c.Backend)
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
	ds, err := generate(c.Seed, c.N, c.N2, time.Now())
	if err != nil {
		return nil, err
	}
	rep.Generate = time.Since(t0)
	fmt.Fprintf(logw, "generated %d devices, %d tag rows, %d attribute rows in %v\n",
		len(ds.devices), len(ds.tagRows), len(ds.attrRows), rep.Generate.Round(time.Millisecond))

	o := benchOpts{reps: c.Reps, pages: c.Pages, maxTime: c.MaxTime, seed: c.Seed, dashboard: !c.NoDashboard}
	for _, b := range backends {
		var br *backendRun
		switch b {
		case "sqlite":
			br, err = runSQLite(ctx, c, ds, o, logw)
		case "postgres":
			br, err = runPostgres(ctx, c, ds, o, logw)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b, err)
		}
		rep.Runs = append(rep.Runs, br)
	}
	printText(stdout, rep)
	if c.Markdown {
		fmt.Fprintln(stdout)
		printMarkdown(stdout, rep)
	}
	return rep, nil
}

// loadAndMeasure is the part both backends share: owners through the
// store, bulk load, reopen (fresh connections that see the new
// statistics), verify, measure.
func loadAndMeasure(ctx context.Context, storeURL string, ds *dataset, o benchOpts, br *backendRun, logw io.Writer,
	load func(*sqlstore.DB) (loadStats, error)) error {
	db, err := sqlstore.Open(ctx, storeURL, sqlstore.Options{})
	if err != nil {
		return err
	}
	if err := createOwners(ctx, db, ds); err != nil {
		db.Close()
		return err
	}
	br.Load, err = load(db)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(logw, "%s: loaded %d rows in %v (rows %v, indexes %v, analyze %v)\n", br.Backend, br.Load.rows(),
		br.Load.total().Round(time.Millisecond), br.Load.Load.Round(time.Millisecond), br.Load.Index.Round(time.Millisecond),
		br.Load.Analyze.Round(time.Millisecond))

	db, err = sqlstore.Open(ctx, storeURL, sqlstore.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := verify(ctx, db, ds); err != nil {
		return err
	}
	br.Results, err = measure(ctx, db, ds, o, br.Backend, logw)
	if err == nil && o.dashboard {
		var dash []*result
		dash, err = measureDashboard(ctx, db, ds, o, br.Backend, logw)
		br.Results = append(br.Results, dash...)
	}
	br.LoadAfter = loadAvg()
	return err
}

func runSQLite(ctx context.Context, c config, ds *dataset, o benchOpts, logw io.Writer) (*backendRun, error) {
	br := &backendRun{Backend: "sqlite", Target: 100 * time.Millisecond}
	dir := c.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "fleetquery-")
		if err != nil {
			return nil, err
		}
		dir = d
		if !c.Keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, fmt.Sprintf("fleetquery-%s.db", randHex(4)))
	if !c.Keep {
		defer func() {
			for _, s := range []string{"", "-wal", "-shm"} {
				os.Remove(path + s)
			}
		}()
	} else {
		br.Kept = path
	}
	storeURL := "sqlite:" + path
	err := loadAndMeasure(ctx, storeURL, ds, o, br, logw, func(db *sqlstore.DB) (loadStats, error) {
		_, r := db.DBs()
		var v string
		if err := r.QueryRowContext(ctx, `SELECT sqlite_version()`).Scan(&v); err == nil {
			br.Version = "SQLite " + v + " (modernc.org/sqlite, WAL, synchronous=NORMAL, cache_size 64 MiB per connection)"
		}
		return loadSQLite(ctx, db, ds, path, logw)
	})
	return br, err
}

func runPostgres(ctx context.Context, c config, ds *dataset, o benchOpts, logw io.Writer) (*backendRun, error) {
	br := &backendRun{Backend: "postgres", Target: 50 * time.Millisecond}
	admin, err := sql.Open("pgx", c.PG)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", redact(c.PG), err)
	}
	var version, sb, wm string
	admin.QueryRowContext(ctx, `SELECT current_setting('server_version'), current_setting('shared_buffers'), current_setting('work_mem')`).
		Scan(&version, &sb, &wm)
	br.Version = fmt.Sprintf("PostgreSQL %s (shared_buffers %s, work_mem %s)", version, sb, wm)
	schema := "bench_" + randHex(6)
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		return nil, fmt.Errorf("creating schema: %w", err)
	}
	if c.Keep {
		br.Kept = withSchema(c.PG, schema)
	} else {
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
				fmt.Fprintf(logw, "postgres: dropping schema %s: %v\n", schema, err)
			}
		}()
	}
	err = loadAndMeasure(ctx, withSchema(c.PG, schema), ds, o, br, logw, func(db *sqlstore.DB) (loadStats, error) {
		return loadPostgres(ctx, db, ds, logw)
	})
	return br, err
}

// withSchema returns base with its connections' search_path set to schema.
func withSchema(base, schema string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
