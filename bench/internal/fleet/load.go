package fleet

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

// LoadStats describes one bulk load.
type LoadStats struct {
	Devices, Tags, Attrs int
	Load                 time.Duration // rows in (secondary indexes dropped)
	Index                time.Duration // secondary indexes (and triggers, derived counts) rebuilt
	Analyze              time.Duration // ANALYZE (PostgreSQL: VACUUM ANALYZE)
	Bytes                int64         // database size afterwards
}

func (s LoadStats) Rows() int { return s.Devices + s.Tags + s.Attrs }

func (s LoadStats) Total() time.Duration { return s.Load + s.Index + s.Analyze }

// The column lists are those of the INSERTs in sqlstore/devices.go.
var (
	deviceColumns = []string{"id", "tenant_id", "product_id", "serial", "name", "state", "tags", "attrs", "fw_version", "fw_key",
		"created_at", "updated_at", "last_seen", "version"}
	tagColumns  = []string{"tenant_id", "tag", "device_id"}
	attrColumns = []string{"tenant_id", "key", "value", "device_id"}
)

// fleetTables are the tables the loader fills and whose secondary indexes
// it drops and rebuilds around the load.
var fleetTables = []string{"devices", "device_tags", "device_attrs"}

func micro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func microPtr(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return micro(*t)
}

// deviceValues appends device i's columns, in deviceColumns order.
func (ds *Dataset) deviceValues(dst []any, i int) []any {
	d, r := &ds.Devices[i], &ds.rows[i]
	return append(dst, d.ID, d.TenantID, d.ProductID, d.Serial, d.Name, string(d.State), r.tags, r.attrs,
		d.FirmwareVersion, r.fwKey, micro(d.CreatedAt), micro(d.UpdatedAt), microPtr(d.LastSeen), d.Version)
}

func (ds *Dataset) tagValues(dst []any, i int) []any {
	t := &ds.TagRows[i]
	return append(dst, t.tenant, t.tag, t.device)
}

func (ds *Dataset) attrValues(dst []any, i int) []any {
	a := &ds.AttrRows[i]
	return append(dst, a.tenant, a.key, a.value, a.device)
}

// CreateOwners writes tenants and products through the store's own API:
// they are few, and this keeps them exactly as the platform writes them.
func CreateOwners(ctx context.Context, st store.Store, ds *Dataset) error {
	return st.Update(ctx, func(tx store.Tx) error {
		for i := range ds.Tenants {
			if err := tx.CreateTenant(ctx, &ds.Tenants[i]); err != nil {
				return fmt.Errorf("tenant: %w", err)
			}
		}
		for i := range ds.Products {
			if err := tx.CreateProduct(ctx, &ds.Products[i]); err != nil {
				return fmt.Errorf("product: %w", err)
			}
		}
		return nil
	})
}

// progress prints a self-overwriting line on stderr.
type progress struct {
	w      io.Writer
	label  string
	total  int
	done   int
	start  time.Time
	last   time.Time
	inline bool // the cursor is at the end of an overwritable line
}

func newProgress(w io.Writer, label string, total int) *progress {
	now := time.Now()
	return &progress{w: w, label: label, total: total, start: now}
}

func (p *progress) add(n int) {
	p.done += n
	if now := time.Now(); now.Sub(p.last) >= 500*time.Millisecond || p.done == p.total {
		p.last = now
		rate := float64(p.done) / max(now.Sub(p.start).Seconds(), 1e-9)
		fmt.Fprintf(p.w, "\r%s: %d/%d rows (%.0f%%), %.0f rows/s   ", p.label, p.done, p.total,
			100*float64(p.done)/float64(max(p.total, 1)), rate)
		p.inline = true
	}
}

func (p *progress) step(what string) {
	p.end()
	fmt.Fprintf(p.w, "%s: %s …\n", p.label, what)
}

func (p *progress) end() {
	if p.inline {
		fmt.Fprintln(p.w)
		p.inline = false
	}
}

// ---------------------------------------------------------------- SQLite

// LoadSQLite fills the fleet tables through the store's writable handle
// with multi-row INSERTs in large transactions, the secondary indexes
// dropped during the load and rebuilt from their stored definitions.
func LoadSQLite(ctx context.Context, db *sqlstore.DB, ds *Dataset, path string, logw io.Writer) (LoadStats, error) {
	st := LoadStats{Devices: len(ds.Devices), Tags: len(ds.TagRows), Attrs: len(ds.AttrRows)}
	w, _ := db.DBs()
	conn, err := w.Conn(ctx) // the one write connection, pinned for the whole load
	if err != nil {
		return st, err
	}
	defer conn.Close()

	indexes, err := sqliteSchemaObjects(ctx, conn)
	if err != nil {
		return st, err
	}
	// Foreign keys are checked by construction (every tag and attribute
	// row names a device of the same batch); the check per row would only
	// slow the load. Turned back on below.
	if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
		return st, err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`)
	for _, ix := range indexes {
		if _, err := conn.ExecContext(ctx, `DROP `+strings.ToUpper(ix.kind)+` `+ix.name); err != nil {
			return st, err
		}
	}

	p := newProgress(logw, "sqlite load", st.Rows())
	defer p.end()
	t0 := time.Now()
	// 14 columns × 500 rows = 7,000 parameters, well below SQLite's 32,766.
	if err := sqliteInsert(ctx, conn, "devices", deviceColumns, len(ds.Devices), 500, ds.deviceValues, p); err != nil {
		return st, err
	}
	if err := sqliteInsert(ctx, conn, "device_tags", tagColumns, len(ds.TagRows), 2000, ds.tagValues, p); err != nil {
		return st, err
	}
	if err := sqliteInsert(ctx, conn, "device_attrs", attrColumns, len(ds.AttrRows), 2000, ds.attrValues, p); err != nil {
		return st, err
	}
	st.Load = time.Since(t0)

	p.step(fmt.Sprintf("rebuilding %d indexes and triggers", len(indexes)))
	t0 = time.Now()
	for _, ix := range indexes {
		if _, err := conn.ExecContext(ctx, ix.sql); err != nil {
			return st, fmt.Errorf("recreating %s: %w", ix.name, err)
		}
	}
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`,
		stateCountsTable).Scan(&n); err != nil {
		return st, err
	}
	if n > 0 {
		if err := rebuildStateCounts(ctx, conn); err != nil {
			return st, err
		}
	}
	st.Index = time.Since(t0)

	p.step("ANALYZE")
	t0 = time.Now()
	if _, err := conn.ExecContext(ctx, `ANALYZE`); err != nil {
		return st, err
	}
	st.Analyze = time.Since(t0)
	// Move everything from the WAL into the database file, as a server that
	// has been running a while would have.
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return st, err
	}
	if fi, err := os.Stat(path); err == nil {
		st.Bytes = fi.Size()
	}
	return st, nil
}

type indexDef struct{ kind, name, sql string }

// sqliteSchemaObjects lists the fleet tables' own indexes and triggers (not
// the automatic ones behind PRIMARY KEY and UNIQUE), indexes first.
func sqliteSchemaObjects(ctx context.Context, conn *sql.Conn) ([]indexDef, error) {
	rows, err := conn.QueryContext(ctx, `SELECT type, name, sql FROM sqlite_master
		WHERE type IN ('index', 'trigger') AND sql IS NOT NULL AND tbl_name IN ('devices', 'device_tags', 'device_attrs')
		ORDER BY type, name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []indexDef
	for rows.Next() {
		var ix indexDef
		if err := rows.Scan(&ix.kind, &ix.name, &ix.sql); err != nil {
			return nil, err
		}
		out = append(out, ix)
	}
	return out, rows.Err()
}

// stateCountsTable is a per-tenant, per-state device count that the store
// may keep up to date with triggers (proposed in bench/README.md). Triggers
// are off during the bulk load (dropped on SQLite, session_replication_role
// on PostgreSQL), so the loader recomputes it when the table exists.
const stateCountsTable = "device_state_counts"

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func rebuildStateCounts(ctx context.Context, db execer) error {
	for _, q := range []string{
		`DELETE FROM ` + stateCountsTable,
		`INSERT INTO ` + stateCountsTable + ` (tenant_id, state, n) SELECT tenant_id, state, COUNT(*) FROM devices GROUP BY tenant_id, state`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("rebuilding %s: %w", stateCountsTable, err)
		}
	}
	return nil
}

// sqliteInsert writes n rows in multi-row INSERTs of batch rows, committing
// every ~200,000 rows.
func sqliteInsert(ctx context.Context, conn *sql.Conn, table string, cols []string, n, batch int,
	values func([]any, int) []any, p *progress) error {
	const perTx = 200_000
	stmtFor := func(tx *sql.Tx, rows int) (*sql.Stmt, error) {
		return tx.PrepareContext(ctx, multiInsert(table, cols, rows, func(int) string { return "?" }))
	}
	args := make([]any, 0, batch*len(cols))
	for lo := 0; lo < n; lo += perTx {
		hi := min(lo+perTx, n)
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		full, err := stmtFor(tx, batch)
		if err != nil {
			tx.Rollback()
			return err
		}
		for i := lo; i < hi; i += batch {
			j := min(i+batch, hi)
			args = args[:0]
			for k := i; k < j; k++ {
				args = values(args, k)
			}
			s := full
			if j-i != batch {
				if s, err = stmtFor(tx, j-i); err != nil {
					tx.Rollback()
					return err
				}
			}
			if _, err := s.ExecContext(ctx, args...); err != nil {
				tx.Rollback()
				return fmt.Errorf("%s: %w", table, err)
			}
			p.add(j - i)
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// multiInsert is INSERT INTO table (cols) VALUES (…), (…) … for rows rows;
// ph gives the placeholder of the k-th parameter (counting from 1).
func multiInsert(table string, cols []string, rows int, ph func(k int) string) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
	k := 0
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			k++
			b.WriteString(ph(k))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// ------------------------------------------------------------ PostgreSQL

// LoadPostgres fills the fleet tables with COPY on the store's writable
// pool (one pinned connection), secondary indexes dropped during the load
// and rebuilt from pg_indexes, then VACUUM ANALYZE, as autovacuum would
// have done on a database that has been in use.
func LoadPostgres(ctx context.Context, db *sqlstore.DB, ds *Dataset, logw io.Writer) (LoadStats, error) {
	st := LoadStats{Devices: len(ds.Devices), Tags: len(ds.TagRows), Attrs: len(ds.AttrRows)}
	w, _ := db.DBs()
	conn, err := w.Conn(ctx)
	if err != nil {
		return st, err
	}
	defer conn.Close()
	var p *progress
	err = conn.Raw(func(dc any) error {
		c := dc.(*stdlib.Conn).Conn()
		indexes, err := pgIndexes(ctx, c)
		if err != nil {
			return err
		}
		// Skip the per-row foreign-key (and any other) triggers during
		// COPY: the rows are consistent by construction, and derived
		// counts are recomputed below. Needs superuser; without it the
		// load is just slower.
		replica := true
		if _, err := c.Exec(ctx, `SET session_replication_role = replica`); err != nil {
			replica = false
			fmt.Fprintf(logw, "postgres: foreign-key triggers stay on during COPY (%v)\n", err)
		}
		if _, err := c.Exec(ctx, `SET maintenance_work_mem = '1GB'`); err != nil {
			return err
		}
		for _, ix := range indexes {
			if _, err := c.Exec(ctx, `DROP INDEX `+pgx.Identifier{ix.name}.Sanitize()); err != nil {
				return err
			}
		}
		p = newProgress(logw, "postgres load", st.Rows())
		t0 := time.Now()
		for _, t := range []struct {
			table string
			cols  []string
			n     int
			vals  func([]any, int) []any
		}{
			{"devices", deviceColumns, len(ds.Devices), ds.deviceValues},
			{"device_tags", tagColumns, len(ds.TagRows), ds.tagValues},
			{"device_attrs", attrColumns, len(ds.AttrRows), ds.attrValues},
		} {
			buf := make([]any, 0, len(t.cols))
			i, reported := 0, 0
			src := pgx.CopyFromFunc(func() ([]any, error) {
				if i == t.n {
					return nil, nil
				}
				buf = t.vals(buf[:0], i)
				i++
				if i%10_000 == 0 || i == t.n {
					p.add(i - reported)
					reported = i
				}
				return buf, nil
			})
			if _, err := c.CopyFrom(ctx, pgx.Identifier{t.table}, t.cols, src); err != nil {
				return fmt.Errorf("COPY %s: %w", t.table, err)
			}
		}
		st.Load = time.Since(t0)
		if replica {
			if _, err := c.Exec(ctx, `SET session_replication_role = DEFAULT`); err != nil {
				return err
			}
		}
		p.step(fmt.Sprintf("rebuilding %d indexes", len(indexes)))
		t0 = time.Now()
		for _, ix := range indexes {
			if _, err := c.Exec(ctx, ix.sql); err != nil {
				return fmt.Errorf("recreating %s: %w", ix.name, err)
			}
		}
		var counts bool
		if err := c.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, stateCountsTable).Scan(&counts); err != nil {
			return err
		}
		if counts {
			if err := rebuildStateCounts(ctx, pgxExec{c}); err != nil {
				return err
			}
		}
		st.Index = time.Since(t0)
		p.step("VACUUM ANALYZE")
		t0 = time.Now()
		if _, err := c.Exec(ctx, `VACUUM ANALYZE devices, device_tags, device_attrs, products, tenants`); err != nil {
			return err
		}
		st.Analyze = time.Since(t0)
		if _, err := c.Exec(ctx, `RESET maintenance_work_mem`); err != nil {
			return err
		}
		return c.QueryRow(ctx, `SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'`).Scan(&st.Bytes)
	})
	if p != nil {
		p.end()
	}
	return st, err
}

type pgxExec struct{ c *pgx.Conn }

func (e pgxExec) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	_, err := e.c.Exec(ctx, q, args...)
	return nil, err
}

// pgIndexes lists the fleet tables' indexes that no constraint owns.
func pgIndexes(ctx context.Context, c *pgx.Conn) ([]indexDef, error) {
	rows, err := c.Query(ctx, `SELECT i.indexname, i.indexdef FROM pg_indexes i
		WHERE i.schemaname = current_schema() AND i.tablename = ANY($1)
		AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)
		ORDER BY i.indexname`, fleetTables)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (indexDef, error) {
		var ix indexDef
		ix.kind = "index"
		err := r.Scan(&ix.name, &ix.sql)
		return ix, err
	})
}

// Verify checks the load through the store's own reads: the state counts
// add up and sample devices read back exactly as generated.
func Verify(ctx context.Context, st store.Store, ds *Dataset) error {
	for _, t := range ds.Tenants {
		got, err := st.CountDevicesByState(ctx, t.ID)
		if err != nil {
			return err
		}
		want := ds.ByState[t.ID]
		for s, n := range want {
			if got[s] != n {
				return fmt.Errorf("verify: tenant %s has %d %s devices, generated %d", t.Name, got[s], s, n)
			}
		}
	}
	step := max(1, len(ds.Devices)/25)
	for i := 0; i < len(ds.Devices); i += step {
		want := ds.Devices[i]
		got, err := st.GetDevice(ctx, want.TenantID, want.ID)
		if err != nil {
			return fmt.Errorf("verify: device %s: %w", want.ID, err)
		}
		if err := sameDevice(got, &want); err != nil {
			return fmt.Errorf("verify: device %s: %w", want.ID, err)
		}
	}
	return nil
}

func sameDevice(got, want *model.Device) error {
	g, w := fmt.Sprintf("%+v", deviceString(got)), fmt.Sprintf("%+v", deviceString(want))
	if g != w {
		return fmt.Errorf("read back\n  %s\nwant\n  %s", g, w)
	}
	return nil
}

func deviceString(d *model.Device) string {
	seen := "never"
	if d.LastSeen != nil {
		seen = d.LastSeen.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s %s %s %q %q %s %v %v %q %s %s %s v%d", d.ID, d.TenantID, d.ProductID, d.Serial, d.Name, d.State,
		d.Tags, d.Attributes, d.FirmwareVersion, d.CreatedAt.UTC().Format(time.RFC3339Nano),
		d.UpdatedAt.UTC().Format(time.RFC3339Nano), seen, d.Version)
}
