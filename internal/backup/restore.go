package backup

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Read-side limits: a backup line is one row, so a line past this size
// means a damaged or foreign file.
const maxLine = 64 << 20

// Restore loads a backup into db, which must be empty (freshly migrated).
// Everything happens in one transaction: a restore that fails leaves the
// target empty.
func Restore(ctx context.Context, db DB, r io.Reader, progress Progress) (*Header, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a Steward backup (gzip: %v)", err)
	}
	defer gz.Close()
	sc := bufio.NewScanner(gz)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	if !sc.Scan() {
		return nil, fmt.Errorf("not a Steward backup: empty file (%v)", sc.Err())
	}
	var h Header
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Format != Format {
		return nil, errors.New("not a Steward backup: the header is missing")
	}
	if h.Version != Version {
		return nil, fmt.Errorf("backup format version %d is not supported by this steward (it reads version %d)", h.Version, Version)
	}
	target, err := db.SchemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	if target < h.SchemaVersion {
		return nil, fmt.Errorf("the backup has schema version %d but this steward only knows %d: restore with a newer steward", h.SchemaVersion, target)
	}
	w, _ := db.DBs()
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	pg := db.Backend() == "postgres"
	tables, err := orderedTables(ctx, tx, db.Backend())
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, t := range tables {
		known[t] = true
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+quoteIdent(t)).Scan(&n); err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, fmt.Errorf("%w: table %s has %d rows; restore into a new database", ErrNotEmpty, t, n)
		}
	}
	var (
		stmt  *sql.Stmt
		table string
		types []string
		count int64
	)
	finish := func() error {
		if stmt != nil {
			stmt.Close()
			if progress != nil {
				progress(table, count)
			}
		}
		return nil
	}
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte(`{"table":`)) {
			finish()
			var tl tableLine
			if err := json.Unmarshal(line, &tl); err != nil {
				return nil, fmt.Errorf("damaged backup: %v", err)
			}
			if !known[tl.Table] {
				return nil, fmt.Errorf("the backup holds table %s, which this steward does not have", tl.Table)
			}
			colTypes, err := columnTypes(ctx, tx, tl.Table, pg)
			if err != nil {
				return nil, err
			}
			types = make([]string, len(tl.Columns))
			quoted := make([]string, len(tl.Columns))
			ph := make([]string, len(tl.Columns))
			for i, c := range tl.Columns {
				ct, ok := colTypes[c]
				if !ok {
					return nil, fmt.Errorf("the backup's table %s has column %s, which this steward does not have", tl.Table, c)
				}
				types[i], quoted[i], ph[i] = ct, quoteIdent(c), "?"
			}
			q := db.Rebind(`INSERT INTO ` + quoteIdent(tl.Table) + ` (` + strings.Join(quoted, ", ") + `) VALUES (` + strings.Join(ph, ", ") + `)`)
			if stmt, err = tx.PrepareContext(ctx, q); err != nil {
				return nil, err
			}
			table, count = tl.Table, 0
			continue
		}
		if stmt == nil {
			return nil, errors.New("damaged backup: a row before any table")
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var rl rowLine
		if err := dec.Decode(&rl); err != nil || len(rl.R) != len(types) {
			return nil, fmt.Errorf("damaged backup: row %d of table %s", count+1, table)
		}
		args := make([]any, len(rl.R))
		for i, v := range rl.R {
			if args[i], err = decodeValue(v, types[i]); err != nil {
				return nil, fmt.Errorf("table %s row %d column %d: %w", table, count+1, i+1, err)
			}
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return nil, fmt.Errorf("table %s row %d: %w", table, count+1, err)
		}
		count++
		if progress != nil && count%10000 == 0 {
			progress(table, count)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the backup: %w", err)
	}
	finish()
	if pg {
		if err := resetSequences(ctx, tx); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return &h, nil
}

// columnTypes maps a table's columns to a lower-case type name.
func columnTypes(ctx context.Context, tx *sql.Tx, table string, pg bool) (map[string]string, error) {
	out := map[string]string{}
	var q string
	if pg {
		q = `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`
	} else {
		q = `SELECT name, type FROM pragma_table_info(?)`
	}
	err := collect(ctx, tx, q, []any{table}, func(r *sql.Rows) error {
		var c, t string
		if err := r.Scan(&c, &t); err != nil {
			return err
		}
		out[c] = strings.ToLower(t)
		return nil
	})
	return out, err
}

// decodeValue turns a JSON value back into a driver argument of the
// target column's type.
func decodeValue(v any, colType string) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case map[string]any:
		s, ok := x["$b"].(string)
		if !ok {
			return nil, errors.New("unknown encoded value")
		}
		return base64.StdEncoding.DecodeString(s)
	case json.Number:
		if strings.Contains(colType, "bool") {
			return x.String() != "0", nil
		}
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		return x.Float64()
	case bool:
		if strings.Contains(colType, "bool") {
			return x, nil
		}
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case string:
		return x, nil
	}
	return nil, fmt.Errorf("unexpected value %T", v)
}

// resetSequences moves PostgreSQL's serial counters past the restored rows.
func resetSequences(ctx context.Context, tx *sql.Tx) error {
	type col struct{ table, column string }
	var cols []col
	err := collect(ctx, tx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'`, nil, func(r *sql.Rows) error {
		var c col
		if err := r.Scan(&c.table, &c.column); err != nil {
			return err
		}
		cols = append(cols, c)
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range cols {
		q := fmt.Sprintf(`SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX(%s) FROM %s), 0) + 1, false)`,
			quoteIdent(c.column), quoteIdent(c.table))
		if _, err := tx.ExecContext(ctx, q, c.table, c.column); err != nil {
			return fmt.Errorf("resetting the sequence of %s.%s: %w", c.table, c.column, err)
		}
	}
	return nil
}
