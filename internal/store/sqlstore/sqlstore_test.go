package sqlstore_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/steward-iot/steward/internal/auditlog"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/secretbox"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/store/storetest"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// testBox seals secrets in tests, as the platform's key does.
var testBox, _ = secretbox.New(bytes.Repeat([]byte{0x5e}, secretbox.KeySize))

// open opens url (with the secrets key, as the platform does) and closes
// the store when t ends.
func open(t *testing.T, url string) *sqlstore.DB {
	t.Helper()
	return openWith(t, url, sqlstore.Options{Secrets: testBox})
}

func openWith(t *testing.T, url string, o sqlstore.Options) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(t.Context(), url, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func sqliteURL(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "steward.db") }

// backends gives each test a fresh database URL per backend.
var backends = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"sqlite", sqliteURL},
	{"postgres", func(t *testing.T) string { return pgtest.URL(t) }},
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, sqliteURL(t)) })
}

// TestSQLitePragmas: the settings durability and write throughput rest
// on, as the writer and a reader see them.
func TestSQLitePragmas(t *testing.T) {
	db := open(t, sqliteURL(t))
	w, r := db.DBs()
	for _, tt := range []struct {
		h      *sql.DB
		pragma string
		want   string
	}{
		{w, "journal_mode", "wal"},
		{w, "synchronous", "1"}, // NORMAL: a process crash loses nothing in WAL mode
		{w, "foreign_keys", "1"},
		{w, "wal_autocheckpoint", "8192"},
		{r, "journal_mode", "wal"},
		{r, "query_only", "1"},
	} {
		var got string
		if err := tt.h.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
		}
	}
}

func TestPostgres(t *testing.T) {
	pgtest.URL(t) // skips the whole test at once when there is no server
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, pgtest.URL(t)) })
}

func mustUpdate(t *testing.T, s store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func audit(t *testing.T, s store.Store, tenant string, n int) {
	t.Helper()
	for i := range n {
		mustUpdate(t, s, func(tx store.Tx) error {
			_, err := tx.Audit(t.Context(), tenant, model.AuditEntry{Actor: "user:alice", Action: "device.update",
				Target: fmt.Sprintf("dev-%d", i), Summary: map[string]int{"n": i}})
			return err
		})
	}
}

// TestAuditTampering changes the audit table behind the store's back and
// checks that Verify finds the first broken link, in that chain only.
func TestAuditTampering(t *testing.T) {
	const victim = "ten-a"
	cases := []struct {
		name string
		// tamper changes victim's chain of 5 records with raw SQL.
		tamper   func(t *testing.T, db *sqlstore.DB)
		brokenAt int64
		records  int64 // records verified before the break
	}{
		{"altered action", execSQL(`UPDATE audit_log SET action = ? WHERE tenant_id = ? AND seq = ?`, "device.delete", victim, 3), 3, 2},
		{"altered actor", execSQL(`UPDATE audit_log SET actor = ? WHERE tenant_id = ? AND seq = ?`, "user:mallory", victim, 1), 1, 0},
		{"altered time", execSQL(`UPDATE audit_log SET at = at + 1 WHERE tenant_id = ? AND seq = ?`, victim, 4), 4, 3},
		{"altered summary", execSQL(`UPDATE audit_log SET summary = ? WHERE tenant_id = ? AND seq = ?`, []byte(`{"n":99}`), victim, 2), 2, 1},
		{"deleted last", execSQL(`DELETE FROM audit_log WHERE tenant_id = ? AND seq = ?`, victim, 5), 5, 4},
		{"deleted middle", execSQL(`DELETE FROM audit_log WHERE tenant_id = ? AND seq = ?`, victim, 3), 3, 2},
		{"deleted first", execSQL(`DELETE FROM audit_log WHERE tenant_id = ? AND seq = ?`, victim, 1), 1, 0},
		{"altered record with recomputed hash", func(t *testing.T, db *sqlstore.DB) {
			// An attacker who rehashes the record still breaks the next link.
			recs, err := db.ListAudit(t.Context(), victim, 2, 1)
			if err != nil || len(recs) != 1 {
				t.Fatalf("ListAudit: %v %v", recs, err)
			}
			r := recs[0]
			r.Action = "device.delete"
			r.Hash = auditlog.Hash(&r)
			execSQL(`UPDATE audit_log SET action = ?, hash = ? WHERE tenant_id = ? AND seq = ?`, r.Action, r.Hash, victim, 3)(t, db)
		}, 4, 3},
		{"rewound head", execSQL(`UPDATE audit_heads SET seq = 4, hash = (SELECT hash FROM audit_log WHERE tenant_id = ? AND seq = 4) WHERE tenant_id = ?`, victim, victim), 5, 5},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					db := open(t, b.url(t))
					audit(t, db, victim, 5)
					audit(t, db, "ten-b", 3)
					audit(t, db, "", 2)
					storetest.WantChainsOK(t, db, map[string]int64{victim: 5, "ten-b": 3, "": 2})

					c.tamper(t, db)

					reps := storetest.VerifyChains(t, db)
					got := reps[victim]
					if got.OK || got.BrokenAt != c.brokenAt || got.Records != c.records || got.Error == "" {
						t.Fatalf("victim's chain: %+v, want broken at %d after %d good records", got, c.brokenAt, c.records)
					}
					for _, other := range []string{"ten-b", ""} {
						if !reps[other].OK {
							t.Fatalf("chain of %q is reported broken: %+v", other, reps[other])
						}
					}
				})
			}
		})
	}
}

func execSQL(q string, args ...any) func(t *testing.T, db *sqlstore.DB) {
	return func(t *testing.T, db *sqlstore.DB) {
		t.Helper()
		w, _ := db.DBs()
		res, err := w.ExecContext(t.Context(), db.Rebind(q), args...)
		if err != nil {
			t.Fatalf("tampering: %v", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("tampering changed %d rows, want 1", n)
		}
	}
}

type migrationRow struct {
	Version   int64
	Name      string
	AppliedAt int64
}

func appliedMigrations(t *testing.T, db *sqlstore.DB) []migrationRow {
	t.Helper()
	w, _ := db.DBs()
	rows, err := w.QueryContext(t.Context(), `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("reading schema_migrations: %v", err)
	}
	defer rows.Close()
	var out []migrationRow
	for rows.Next() {
		var m migrationRow
		if err := rows.Scan(&m.Version, &m.Name, &m.AppliedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReopen writes, closes, and opens the same database again: the data is
// there and no migration runs a second time.
func TestReopen(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			url := b.url(t)
			db1, err := sqlstore.Open(ctx, url, sqlstore.Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			ms, err := sqlstore.Migrations(db1.Backend())
			if err != nil || len(ms) == 0 {
				t.Fatalf("Migrations(%s): %v %v", db1.Backend(), ms, err)
			}
			v1, err := db1.SchemaVersion(ctx)
			if err != nil || v1 != ms[len(ms)-1].Version {
				t.Fatalf("SchemaVersion = %d (%v), want %d", v1, err, ms[len(ms)-1].Version)
			}
			applied := appliedMigrations(t, db1)
			if len(applied) != len(ms) {
				t.Fatalf("%d migrations recorded, %d embedded", len(applied), len(ms))
			}
			d := model.Device{ID: "dev-1", TenantID: "ten-a", ProductID: "prd-1", Serial: "SN-1", State: model.StateActive,
				Tags: []string{"beta"}, Attributes: map[string]string{"site": "s1"}, FirmwareVersion: "1.10"}
			mustUpdate(t, db1, func(tx store.Tx) error {
				if err := tx.CreateTenant(ctx, &model.Tenant{ID: "ten-a", Name: "A", Kind: model.TenantHousehold}); err != nil {
					return err
				}
				if err := tx.CreateProduct(ctx, &model.Product{ID: "prd-1", TenantID: "ten-a", Vendor: "Acme", Model: "M"}); err != nil {
					return err
				}
				if err := tx.CreateDevice(ctx, &d); err != nil {
					return err
				}
				return tx.Emit(ctx, &model.Event{ID: "evt-1", TenantID: "ten-a", Type: "device.created", Subject: d.ID})
			})
			audit(t, db1, "ten-a", 2)
			if err := db1.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			db2 := open(t, url)
			if v2, err := db2.SchemaVersion(ctx); err != nil || v2 != v1 {
				t.Fatalf("SchemaVersion after reopen = %d (%v), want %d", v2, err, v1)
			}
			if again := appliedMigrations(t, db2); !slices.Equal(again, applied) {
				t.Fatalf("migrations after reopen: %+v, before: %+v", again, applied)
			}
			got, err := db2.GetDevice(ctx, "ten-a", d.ID)
			if err != nil {
				t.Fatalf("GetDevice after reopen: %v", err)
			}
			if got.Serial != d.Serial || got.FirmwareVersion != d.FirmwareVersion || !slices.Equal(got.Tags, d.Tags) {
				t.Fatalf("device after reopen: %+v", got)
			}
			n, err := db2.CountDevices(ctx, "ten-a", model.DeviceQuery{Tags: []string{"beta"}, MinVersion: "1.9"})
			if err != nil || n != 1 {
				t.Fatalf("CountDevices after reopen = %d (%v), want 1", n, err)
			}
			evs, err := db2.PendingEvents(ctx, 10)
			if err != nil || len(evs) != 1 || evs[0].ID != "evt-1" {
				t.Fatalf("PendingEvents after reopen: %+v (%v)", evs, err)
			}
			storetest.WantChainsOK(t, db2, map[string]int64{"ten-a": 2})
			audit(t, db2, "ten-a", 1)
			storetest.WantChainsOK(t, db2, map[string]int64{"ten-a": 3})
		})
	}
}

// TestTwoNodesShareAuditChain appends to one chain from two stores opened on
// the same database, as two Steward nodes would.
func TestTwoNodesShareAuditChain(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			url := b.url(t)
			nodes := []*sqlstore.DB{open(t, url), open(t, url)}
			const workers, each = 4, 15
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for w := range workers {
				wg.Go(func() {
					node := nodes[w%len(nodes)]
					for i := range each {
						errs <- node.Update(t.Context(), func(tx store.Tx) error {
							_, err := tx.Audit(t.Context(), "ten-a", model.AuditEntry{Actor: fmt.Sprintf("node:%d", w%2),
								Action: "tick", Target: fmt.Sprint(i)})
							return err
						})
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("append: %v", err)
				}
			}
			storetest.WantChainsOK(t, nodes[0], map[string]int64{"ten-a": workers * each})
			storetest.WantChainsOK(t, nodes[1], map[string]int64{"ten-a": workers * each})
		})
	}
}
