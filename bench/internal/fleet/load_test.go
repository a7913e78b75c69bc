package fleet

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// TestLoaderMatchesStore loads a small fleet twice, once with the bulk
// loader and once through the store's own CreateDevice and TouchDevice,
// and requires identical rows in devices, device_tags and device_attrs.
func TestLoaderMatchesStore(t *testing.T) {
	for _, b := range []struct {
		name string
		url  func(t *testing.T) string
		load func(ctx context.Context, db *sqlstore.DB, ds *Dataset, path string) error
	}{
		{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "s.db") },
			func(ctx context.Context, db *sqlstore.DB, ds *Dataset, path string) error {
				_, err := LoadSQLite(ctx, db, ds, path, &bytes.Buffer{})
				return err
			}},
		{"postgres", func(t *testing.T) string { return pgtest.URL(t) },
			func(ctx context.Context, db *sqlstore.DB, ds *Dataset, _ string) error {
				_, err := LoadPostgres(ctx, db, ds, &bytes.Buffer{})
				return err
			}},
	} {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			ds, err := Generate(3, 150, 30, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			bulkURL := b.url(t)
			bulk := openStore(t, bulkURL)
			if err := CreateOwners(ctx, bulk, ds); err != nil {
				t.Fatal(err)
			}
			if err := b.load(ctx, bulk, ds, strings.TrimPrefix(bulkURL, "sqlite:")); err != nil {
				t.Fatalf("bulk load: %v", err)
			}
			if err := Verify(ctx, bulk, ds); err != nil {
				t.Fatal(err)
			}

			ref := openStore(t, b.url(t))
			if err := CreateOwners(ctx, ref, ds); err != nil {
				t.Fatal(err)
			}
			for i := range ds.Devices {
				d := ds.Devices[i]
				d.Tags = append([]string(nil), d.Tags...)
				if err := ref.Update(ctx, func(tx store.Tx) error { return tx.CreateDevice(ctx, &d) }); err != nil {
					t.Fatalf("CreateDevice: %v", err)
				}
				if d.LastSeen != nil {
					if err := ref.TouchDevice(ctx, d.TenantID, d.ID, *d.LastSeen); err != nil {
						t.Fatalf("TouchDevice: %v", err)
					}
				}
			}
			for _, q := range []string{
				`SELECT ` + strings.Join(deviceColumns, ", ") + ` FROM devices ORDER BY id`,
				`SELECT tenant_id, tag, device_id FROM device_tags ORDER BY tenant_id, tag, device_id`,
				`SELECT tenant_id, key, value, device_id FROM device_attrs ORDER BY tenant_id, key, value, device_id`,
			} {
				got, want := dump(t, bulk, q), dump(t, ref, q)
				if len(got) == 0 {
					t.Fatalf("%s: no rows", q)
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					for i := range min(len(got), len(want)) {
						if got[i] != want[i] {
							t.Fatalf("%s: row %d differs:\nbulk  %s\nstore %s", q, i, got[i], want[i])
						}
					}
					t.Fatalf("%s: bulk has %d rows, store %d", q, len(got), len(want))
				}
			}
			// The secondary indexes came back exactly.
			if b.name == "sqlite" {
				q := `SELECT name || ': ' || sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name`
				if g, w := dump(t, bulk, q), dump(t, ref, q); strings.Join(g, "\n") != strings.Join(w, "\n") {
					t.Fatalf("indexes differ:\nbulk  %v\nstore %v", g, w)
				}
			} else {
				q := `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname`
				if g, w := dump(t, bulk, q), dump(t, ref, q); strings.Join(g, "\n") != strings.Join(w, "\n") {
					t.Fatalf("indexes differ:\nbulk  %v\nstore %v", g, w)
				}
			}
		})
	}
}

func openStore(t *testing.T, url string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(t.Context(), url, sqlstore.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// dump returns every row of q as text.
func dump(t *testing.T, db *sqlstore.DB, q string) []string {
	t.Helper()
	w, _ := db.DBs()
	rows, err := w.QueryContext(t.Context(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(vals))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
