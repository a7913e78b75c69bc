// Package fleet generates a realistic fleet of devices and bulk-loads it
// into a fresh SQLite file or PostgreSQL schema, exactly as the store would
// have written it, for the benchmarks that need a large fleet
// (bench/fleetquery, bench/ota).
package fleet

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// PGFromEnv is the PostgreSQL server the store's tests use:
// $STEWARD_TEST_POSTGRES, or the local test server (trust auth).
func PGFromEnv() string { return pgtest.BaseURL() }

// Backends expands a -backend flag: sqlite, postgres or both.
func Backends(flag string) ([]string, error) {
	switch flag {
	case "sqlite", "postgres":
		return []string{flag}, nil
	case "both":
		return []string{"sqlite", "postgres"}, nil
	}
	return nil, fmt.Errorf("-backend %q: want sqlite, postgres or both", flag)
}

// Target is a fresh, empty database for one backend: a SQLite file in a
// folder, or a schema of its own on a PostgreSQL server.
type Target struct {
	Backend string
	URL     string // for sqlstore.Open
	Path    string // SQLite: the database file
	Version string // the server or library version and notable settings
	// Kept says where the data stays after Close, when kept.
	Kept string

	admin   *sql.DB // PostgreSQL: the connection that made the schema
	schema  string
	cleanup func()
	logw    io.Writer
}

// NewTarget makes a fresh database for backend ("sqlite" or "postgres").
// SQLite goes to a new file in dir (a temporary folder when empty);
// PostgreSQL to a new schema bench_<random> on the server at pg. Close
// removes it unless keep.
func NewTarget(ctx context.Context, backend, dir, pg string, keep bool, logw io.Writer) (*Target, error) {
	t := &Target{Backend: backend, logw: logw, cleanup: func() {}}
	switch backend {
	case "sqlite":
		removeDir := false
		if dir == "" {
			d, err := os.MkdirTemp("", "steward-bench-")
			if err != nil {
				return nil, err
			}
			dir, removeDir = d, !keep
		} else if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		t.Path = filepath.Join(dir, fmt.Sprintf("bench-%s.db", RandHex(4)))
		t.URL = "sqlite:" + t.Path
		if keep {
			t.Kept = t.Path
		} else {
			t.cleanup = func() {
				for _, s := range []string{"", "-wal", "-shm"} {
					os.Remove(t.Path + s)
				}
				if removeDir {
					os.RemoveAll(dir)
				}
			}
		}
		return t, nil
	case "postgres":
		admin, err := sql.Open("pgx", pg)
		if err != nil {
			return nil, err
		}
		if err := admin.PingContext(ctx); err != nil {
			admin.Close()
			return nil, fmt.Errorf("connecting to %s: %w", Redact(pg), err)
		}
		var version, sb, wm string
		admin.QueryRowContext(ctx, `SELECT current_setting('server_version'), current_setting('shared_buffers'), current_setting('work_mem')`).
			Scan(&version, &sb, &wm)
		t.Version = fmt.Sprintf("PostgreSQL %s (shared_buffers %s, work_mem %s)", version, sb, wm)
		t.admin, t.schema = admin, "bench_"+RandHex(6)
		if _, err := admin.ExecContext(ctx, `CREATE SCHEMA `+t.schema); err != nil {
			admin.Close()
			return nil, fmt.Errorf("creating schema: %w", err)
		}
		t.URL = pgtest.WithSchema(pg, t.schema)
		if keep {
			t.Kept = t.URL
		}
		t.cleanup = func() {
			defer admin.Close()
			if keep {
				return
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if _, err := admin.ExecContext(ctx, `DROP SCHEMA `+t.schema+` CASCADE`); err != nil {
				fmt.Fprintf(logw, "postgres: dropping schema %s: %v\n", t.schema, err)
			}
		}
		return t, nil
	}
	return nil, fmt.Errorf("backend %q: want sqlite or postgres", backend)
}

// Close removes the database (unless kept).
func (t *Target) Close() { t.cleanup() }

// Load creates the dataset's owners through the store, bulk-loads its
// devices, then reopens the store (fresh connections that see the new
// statistics), checks the load through the store's reads and returns the
// open store.
func (t *Target) Load(ctx context.Context, ds *Dataset) (*sqlstore.DB, LoadStats, error) {
	db, err := sqlstore.Open(ctx, t.URL, sqlstore.Options{})
	if err != nil {
		return nil, LoadStats{}, err
	}
	if err := CreateOwners(ctx, db, ds); err != nil {
		db.Close()
		return nil, LoadStats{}, err
	}
	var st LoadStats
	if t.Backend == "sqlite" {
		_, r := db.DBs()
		var v string
		if err := r.QueryRowContext(ctx, `SELECT sqlite_version()`).Scan(&v); err == nil {
			t.Version = "SQLite " + v + " (modernc.org/sqlite, WAL, synchronous=NORMAL, cache_size 64 MiB per connection)"
		}
		st, err = LoadSQLite(ctx, db, ds, t.Path, t.logw)
	} else {
		st, err = LoadPostgres(ctx, db, ds, t.logw)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, st, err
	}
	fmt.Fprintf(t.logw, "%s: loaded %d rows in %v (rows %v, indexes %v, analyze %v)\n", t.Backend, st.Rows(),
		st.Total().Round(time.Millisecond), st.Load.Round(time.Millisecond), st.Index.Round(time.Millisecond),
		st.Analyze.Round(time.Millisecond))
	if db, err = sqlstore.Open(ctx, t.URL, sqlstore.Options{}); err != nil {
		return nil, st, err
	}
	if err := Verify(ctx, db, ds); err != nil {
		db.Close()
		return nil, st, err
	}
	return db, st, nil
}

// Redact hides a URL's password.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// RandHex is n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
