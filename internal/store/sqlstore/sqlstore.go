// Package sqlstore implements the store contract on SQL databases: SQLite
// (modernc.org/sqlite, pure Go, WAL, one writer) for the embedded default and
// PostgreSQL (pgx) for scale-out. The queries are shared; the dialect only
// changes placeholders, locking and how constraint errors are recognised.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/steward-iot/steward/internal/secretbox"
	"github.com/steward-iot/steward/internal/store"
)

//go:embed migrations
var migrationFS embed.FS

type dialect struct {
	name string
	// forUpdate locks a selected row until commit (PostgreSQL); SQLite
	// needs none because its single writer already serialises writes.
	forUpdate string
}

var (
	sqliteDialect   = &dialect{name: "sqlite"}
	postgresDialect = &dialect{name: "postgres", forUpdate: " FOR UPDATE"}
)

// rebind turns ? placeholders into $1, $2 … for PostgreSQL. Queries in this
// package never hold a literal question mark.
func (d *dialect) rebind(q string) string {
	if d != postgresDialect {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// DB is an open store.
type DB struct {
	reader
	d  *dialect
	w  *sql.DB // all writes (SQLite: exactly one connection)
	r  *sql.DB // reads (SQLite: a pool of read-only connections)
	pg bool
	// group shares commits between concurrent writes (SQLite).
	group groupCommit
}

var _ store.Store = (*DB)(nil)

// Options tune an opened store.
type Options struct {
	// ReadConns caps SQLite's read pool (default: max(4, 2×CPUs)).
	ReadConns int
	// MaxConns caps PostgreSQL's pool (default 20).
	MaxConns int
	// Secrets seals the secrets kept in the store (webhook signing
	// secrets). Without it they are written in clear and sealed ones
	// cannot be read: the platform always sets it; tools that never read
	// them need not.
	Secrets *secretbox.Box
}

// Open opens (and migrates) the store named by rawURL:
// "sqlite:PATH" (or "sqlite://PATH") or "postgres://…" / "postgresql://…".
func Open(ctx context.Context, rawURL string, o Options) (*DB, error) {
	switch {
	case strings.HasPrefix(rawURL, "sqlite:"):
		return openSQLite(ctx, strings.TrimPrefix(strings.TrimPrefix(rawURL, "sqlite:"), "//"), o)
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		return openPostgres(ctx, rawURL, o)
	}
	return nil, fmt.Errorf("store url %q: must start with sqlite: or postgres://", redact(rawURL))
}

// redact hides a password in a URL before it is shown.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

func openSQLite(ctx context.Context, path string, o Options) (*DB, error) {
	if path == "" {
		return nil, errors.New("store url: sqlite: needs a file path, e.g. sqlite:./steward-data/steward.db")
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the database folder: %w", err)
		}
	}
	// synchronous=NORMAL in WAL mode survives a process crash (kill -9);
	// only a power loss may lose the last transactions. FULL is available
	// through the _pragma in the URL for machines that need it.
	pragmas := "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)" +
		"&_pragma=synchronous(NORMAL)&_pragma=cache_size(-65536)&_pragma=temp_store(MEMORY)"
	// The writer checkpoints the WAL every 8,192 pages (32 MiB at 4 KiB
	// pages) rather than SQLite's 1,000: telemetry rewrites the same last
	// page of each series in commit after commit, and a checkpoint copies
	// each such page once however often it changed. With 100 publishers
	// at QoS 1 that was about 4% less CPU per message and 8% more
	// messages per second (bench/README.md, broker).
	w, err := openCached("sqlite", "file:"+path+"?"+pragmas+"&_pragma=wal_autocheckpoint(8192)&_txlock=immediate", stmtCacheSize)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxLifetime(0)
	n := o.ReadConns
	if n <= 0 {
		n = max(4, 2*runtime.NumCPU())
	}
	r, err := openCached("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(1)", stmtCacheSize)
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	db := &DB{d: sqliteDialect, w: w, r: r}
	db.reader = reader{q: r, d: sqliteDialect, box: o.Secrets}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func openPostgres(ctx context.Context, rawURL string, o Options) (*DB, error) {
	p, err := sql.Open("pgx", withCustomPlans(rawURL))
	if err != nil {
		return nil, fmt.Errorf("store url %s: %w", redact(rawURL), err)
	}
	n := o.MaxConns
	if n <= 0 {
		n = 20
	}
	p.SetMaxOpenConns(n)
	p.SetMaxIdleConns(n)
	p.SetConnMaxIdleTime(5 * time.Minute)
	if err := p.PingContext(ctx); err != nil {
		p.Close()
		return nil, fmt.Errorf("connecting to PostgreSQL at %s: %w", redact(rawURL), err)
	}
	db := &DB{d: postgresDialect, w: p, r: p, pg: true}
	db.reader = reader{q: p, d: postgresDialect, box: o.Secrets}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Migration is one embedded schema step.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations lists the embedded migrations of a backend, oldest first.
func Migrations(backend string) ([]Migration, error) {
	dir := "migrations/" + backend
	ents, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range ents {
		name := e.Name()
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", name)
		}
		b, err := fs.ReadFile(migrationFS, dir+"/"+name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// migrate applies missing migrations, each in its own transaction. On
// PostgreSQL an advisory lock keeps two nodes starting together from
// applying the same step twice.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := Migrations(db.d.name)
	if err != nil {
		return err
	}
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if db.pg {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(7410301)`); err != nil {
			return fmt.Errorf("migrate: taking the migration lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(7410301)`)
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
	}
	rows.Close()
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, db.d.rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`),
			m.Version, m.Name, time.Now().UnixMicro()); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// SchemaVersion reports the newest applied migration.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := db.w.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v)
	return int(v.Int64), err
}

func (db *DB) Backend() string { return db.d.name }

func (db *DB) Ping(ctx context.Context) error { return db.w.PingContext(ctx) }

func (db *DB) Close() error {
	err := db.w.Close()
	if db.r != db.w {
		if e := db.r.Close(); err == nil {
			err = e
		}
	}
	return err
}

// Update runs fn in one write transaction. On SQLite, transactions that
// wait for the single writer at the same moment share one commit (see
// groupcommit.go).
func (db *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	if db.pg {
		return db.update(ctx, fn)
	}
	return db.group.update(db, ctx, fn)
}

// DBs exposes the underlying handles to tests and benchmarks that must
// reach past the contract (tampering with a row, bulk loading).
func (db *DB) DBs() (write, read *sql.DB) { return db.w, db.r }

// Rebind exposes placeholder rewriting to tests and benchmarks.
func (db *DB) Rebind(q string) string { return db.d.rebind(q) }

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// reader implements store.Reader on a pool or a transaction.
type reader struct {
	q   querier
	d   *dialect
	box *secretbox.Box // see Options.Secrets
}

func (r reader) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return r.q.ExecContext(ctx, r.d.rebind(q), args...)
}

func (r reader) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return r.q.QueryContext(ctx, r.d.rebind(q), args...)
}

func (r reader) row(ctx context.Context, q string, args ...any) *sql.Row {
	return r.q.QueryRowContext(ctx, r.d.rebind(q), args...)
}

type tx struct {
	reader
	tx *sql.Tx
}

var _ store.Tx = (*tx)(nil)

// mapErr turns driver errors into the contract's errors. what names the
// unique value for a conflict message.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return &store.ConflictError{What: what}
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: a referenced record does not exist", store.ErrNotFound)
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return &store.ConflictError{What: what}
		case "23503":
			return fmt.Errorf("%w: a referenced record does not exist", store.ErrNotFound)
		}
	}
	return err
}

// Times are stored as Unix microseconds; 0 means unset.
func toMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func ptrMicro(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return toMicro(*t)
}

func fromMicro(v int64) time.Time {
	return time.UnixMicro(v).UTC()
}

func ptrFromMicro(v int64) *time.Time {
	if v == 0 {
		return nil
	}
	t := fromMicro(v)
	return &t
}

func clampLimit(n, def, most int) int {
	if n <= 0 {
		return def
	}
	return min(n, most)
}

// withCustomPlans plans every execution with its actual values. Fleet
// queries filter skewed data (one tag on a third of the fleet, a site on a
// few hundred devices); a cached generic plan cannot be right for both, and
// was measured at 500–850 ms where custom plans take under 10 ms.
func withCustomPlans(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	q := u.Query()
	if q.Get("plan_cache_mode") == "" {
		q.Set("plan_cache_mode", "force_custom_plan")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
