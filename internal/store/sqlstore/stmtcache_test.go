package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// TestStmtCache runs the ways a cached statement can be misused: reused
// while its rows are open, evicted while its rows are open, failing, and
// scripts of several statements. Each must give the same results as
// SQLite without the cache.
func TestStmtCache(t *testing.T) {
	ctx := context.Background()
	// A cache of two statements, so eviction happens all the time.
	db, err := openCached("sqlite", "file:"+filepath.Join(t.TempDir(), "c.db")+"?_txlock=immediate", 2)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	defer db.Close()
	// A script of several statements goes through the cache too.
	if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL);
		CREATE INDEX kv_v ON kv (v);`); err != nil {
		t.Fatalf("script: %v", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, i, fmt.Sprint("v", i)); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	// The same insert again violates the key: the error is SQLite's, and
	// the statement stays usable.
	_, err = tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, 3, "again")
	var se *sqlite.Error
	if !errors.As(err, &se) || se.Code() != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
		t.Fatalf("duplicate insert: got %v, want a primary key violation", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, 20, "v20"); err != nil {
		t.Fatalf("insert after a failed one: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	const q = `SELECT k, v FROM kv WHERE k >= ? ORDER BY k`
	outer, err := db.QueryContext(ctx, q, 15)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for outer.Next() {
		var k int
		var v string
		if err := outer.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if err := outer.Close(); err != nil {
		t.Fatal(err)
	}
	if want := "[v15 v16 v17 v18 v19 v20]"; fmt.Sprint(got) != want {
		t.Fatalf("rows: got %v, want %s", got, want)
	}

	// Nested use on one transaction: the same query while its rows are
	// open, and enough other queries meanwhile to evict it.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, q, 17)
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for rows.Next() {
		var k int
		var v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, q, k).Scan(&n, new(string)); err != nil || n != k {
			t.Fatalf("nested same query at %d: got %d, %v", k, n, err)
		}
		for j := range 3 { // evicts q while rows are open
			var c int
			if err := tx.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) + %d FROM kv`, j)).Scan(&c); err != nil || c != 21+j {
				t.Fatalf("evicting query %d: got %d, %v", j, c, err)
			}
		}
		got = append(got, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if want := "[v17 v18 v19 v20]"; fmt.Sprint(got) != want {
		t.Fatalf("nested rows: got %v, want %s", got, want)
	}
	// After all that, the statement is prepared again and works.
	var v string
	if err := tx.QueryRowContext(ctx, q, 20).Scan(new(int), &v); err != nil || v != "v20" {
		t.Fatalf("after eviction: got %q, %v", v, err)
	}
}
