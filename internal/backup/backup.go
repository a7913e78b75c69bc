// Package backup writes a consistent, portable snapshot of a store and
// restores it into an empty one. The snapshot is read in one read-only
// transaction (a single point in time on both backends) and written as
// gzip-compressed JSON lines that do not depend on the backend: a SQLite
// backup restores into PostgreSQL and back, which is also the way to move
// a growing installation onto PostgreSQL.
package backup

import (
	"bufio"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Format identifies the file; Version changes when the layout does.
const (
	Format  = "steward-backup"
	Version = 1
)

// Header is the first line of a backup.
type Header struct {
	Format        string    `json:"format"`
	Version       int       `json:"version"`
	SchemaVersion int       `json:"schema_version"`
	Backend       string    `json:"backend"`
	CreatedAt     time.Time `json:"created_at"`
	Tables        []string  `json:"tables"`
}

// tableLine starts a table's section; rowLine is one row.
type tableLine struct {
	Table   string   `json:"table"`
	Columns []string `json:"columns"`
}

type rowLine struct {
	R []any `json:"r"`
}

// DB is what backup needs from a store: raw handles and its dialect.
type DB interface {
	DBs() (write, read *sql.DB)
	Backend() string
	SchemaVersion(ctx context.Context) (int, error)
	Rebind(q string) string
}

// Progress is told how many rows of a table are done.
type Progress func(table string, rows int64)

// skip holds tables that are not data: the migration bookkeeping is
// recreated by the target's own migrations, and the per-state device
// counters are rebuilt by their triggers as devices are restored.
var skip = map[string]bool{"schema_migrations": true, "device_state_counts": true}

// Write snapshots db into w.
func Write(ctx context.Context, db DB, w io.Writer, progress Progress) (*Header, error) {
	_, r := db.DBs()
	conn, err := r.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// One read transaction: every table is read as of the same moment.
	var tx *sql.Tx
	if db.Backend() == "postgres" {
		tx, err = conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	} else {
		tx, err = conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	}
	if err != nil {
		return nil, fmt.Errorf("starting the snapshot: %w", err)
	}
	defer tx.Rollback()
	tables, err := orderedTables(ctx, tx, db.Backend())
	if err != nil {
		return nil, err
	}
	var schema int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&schema); err != nil {
		return nil, err
	}
	h := &Header{Format: Format, Version: Version, SchemaVersion: schema, Backend: db.Backend(),
		CreatedAt: time.Now().UTC(), Tables: tables}
	gz := gzip.NewWriter(w)
	bw := bufio.NewWriterSize(gz, 1<<20)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(h); err != nil {
		return nil, err
	}
	for _, t := range tables {
		if err := dumpTable(ctx, tx, t, enc, progress); err != nil {
			return nil, fmt.Errorf("table %s: %w", t, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return h, nil
}

func dumpTable(ctx context.Context, tx *sql.Tx, table string, enc *json.Encoder, progress Progress) error {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM `+quoteIdent(table))
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	if err := enc.Encode(tableLine{Table: table, Columns: cols}); err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		out := make([]any, len(cols))
		for i, v := range vals {
			out[i] = encodeValue(v)
		}
		if err := enc.Encode(rowLine{R: out}); err != nil {
			return err
		}
		n++
		if progress != nil && n%10000 == 0 {
			progress(table, n)
		}
	}
	if progress != nil {
		progress(table, n)
	}
	return rows.Err()
}

// encodeValue keeps types apart in JSON: bytes become {"$b": base64} so
// they are not confused with text, times become Unix microseconds.
func encodeValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return map[string]string{"$b": base64.StdEncoding.EncodeToString(x)}
	case time.Time:
		return x.UnixMicro()
	}
	return v
}

// orderedTables lists the data tables so that every table comes after the
// tables its foreign keys point at.
func orderedTables(ctx context.Context, q queryer, backend string) ([]string, error) {
	var tables []string
	var listQ string
	if backend == "postgres" {
		listQ = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
	} else {
		listQ = `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	}
	if err := collect(ctx, q, listQ, nil, func(r *sql.Rows) error {
		var t string
		if err := r.Scan(&t); err != nil {
			return err
		}
		if !skip[t] {
			tables = append(tables, t)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	sort.Strings(tables)
	deps := map[string][]string{}
	for _, t := range tables {
		var fq string
		var args []any
		if backend == "postgres" {
			fq = `SELECT DISTINCT ccu.table_name FROM information_schema.table_constraints tc
				JOIN information_schema.constraint_column_usage ccu ON tc.constraint_name = ccu.constraint_name
				AND tc.constraint_schema = ccu.constraint_schema
				WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema() AND tc.table_name = $1`
			args = []any{t}
		} else {
			fq = `SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)`
			args = []any{t}
		}
		if err := collect(ctx, q, fq, args, func(r *sql.Rows) error {
			var d string
			if err := r.Scan(&d); err != nil {
				return err
			}
			if d != t {
				deps[t] = append(deps[t], d)
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(t string) error {
		switch state[t] {
		case 1:
			return fmt.Errorf("foreign keys form a cycle at table %s", t)
		case 2:
			return nil
		}
		state[t] = 1
		for _, d := range deps[t] {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[t] = 2
		out = append(out, t)
		return nil
	}
	for _, t := range tables {
		if err := visit(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func collect(ctx context.Context, q queryer, query string, args []any, fn func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// ErrNotEmpty: restores go into a fresh store only, never over data.
var ErrNotEmpty = errors.New("the target store is not empty")
