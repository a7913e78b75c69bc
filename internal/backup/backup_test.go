package backup_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/steward-iot/steward/internal/auditlog"
	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/backup"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

func open(t *testing.T, backend string) *sqlstore.DB {
	t.Helper()
	url := "sqlite:" + filepath.Join(t.TempDir(), "s.db")
	if backend == "postgres" {
		url = pgtest.URL(t)
	}
	db, err := sqlstore.Open(t.Context(), url, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var admin = &authz.Principal{KeyID: "test", Role: model.RolePlatformAdmin}

// seed makes tenants, products, devices in several states, groups, keys,
// webhooks and the audit trail of all that.
func seed(t *testing.T, db store.Store) (tenant string) {
	t.Helper()
	ctx := t.Context()
	reg := registry.New(db)
	ten, err := reg.CreateTenant(ctx, admin, "backup-co", model.TenantEnterprise)
	if err != nil {
		t.Fatal(err)
	}
	p, err := reg.CreateProduct(ctx, admin, ten.ID, registry.ProductInput{Vendor: "Acme", Model: "B1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		d, err := reg.CreateDevice(ctx, admin, ten.ID, registry.DeviceInput{ProductID: p.ID, Serial: fmt.Sprintf("B-%03d", i),
			Tags: []string{"t" + fmt.Sprint(i%3)}, Attributes: map[string]string{"site": fmt.Sprint(i % 4)}, FirmwareVersion: "1.0." + fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, _, err := reg.Transition(ctx, admin, ten.ID, d.ID, model.StateClaimed, "seed"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := reg.CreateGroup(ctx, admin, ten.ID, registry.GroupInput{Name: "g", Kind: model.GroupDynamic,
		Query: &model.DeviceQuery{Tags: []string{"t1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.CreateAPIKey(ctx, admin, ten.ID, "ops", model.RoleOperator, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateWebhook(ctx, admin, ten.ID, registry.WebhookInput{URL: "https://hooks.example/x"}, false); err != nil {
		t.Fatal(err)
	}
	return ten.ID
}

func counts(t *testing.T, db store.Store, tenant string) [4]int64 {
	t.Helper()
	ctx := t.Context()
	n, err := db.CountDevices(ctx, tenant, model.DeviceQuery{})
	if err != nil {
		t.Fatal(err)
	}
	claimed, _ := db.CountDevices(ctx, tenant, model.DeviceQuery{States: []model.State{model.StateClaimed}})
	tagged, _ := db.CountDevices(ctx, tenant, model.DeviceQuery{Tags: []string{"t1"}, Attrs: map[string]string{"site": "1"}})
	recs, _ := db.ListAudit(ctx, tenant, 0, 10000)
	return [4]int64{n, claimed, tagged, int64(len(recs))}
}

func TestRoundTripAcrossBackends(t *testing.T) {
	for _, pair := range [][2]string{{"sqlite", "sqlite"}, {"sqlite", "postgres"}, {"postgres", "sqlite"}, {"postgres", "postgres"}} {
		t.Run(pair[0]+"_to_"+pair[1], func(t *testing.T) {
			src := open(t, pair[0])
			tenant := seed(t, src)
			var buf bytes.Buffer
			h, err := backup.Write(t.Context(), src, &buf, nil)
			if err != nil {
				t.Fatal(err)
			}
			dst := open(t, pair[1])
			if _, err := backup.Restore(t.Context(), dst, bytes.NewReader(buf.Bytes()), nil); err != nil {
				t.Fatalf("restore: %v", err)
			}
			if got, want := counts(t, dst, tenant), counts(t, src, tenant); got != want {
				t.Fatalf("restored counts %v, source %v", got, want)
			}
			reps, err := auditlog.Verify(t.Context(), dst, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range reps {
				if !r.OK {
					t.Fatalf("restored audit chain broken: %+v", r)
				}
			}
			// The restored store keeps working: new rows get fresh IDs and
			// sequences continue past the restored ones.
			reg := registry.New(dst)
			devs, _, _ := dst.QueryDevices(t.Context(), tenant, model.DeviceQuery{States: []model.State{model.StateManufactured}}, model.Page{Limit: 1})
			if _, _, err := reg.Transition(t.Context(), admin, tenant, devs[0].ID, model.StateClaimed, "after restore"); err != nil {
				t.Fatalf("transition after restore: %v", err)
			}
			if len(h.Tables) < 10 {
				t.Fatalf("backup lists %d tables", len(h.Tables))
			}
		})
	}
}

// A backup taken while writers run is one point in time: restored, its
// audit chains verify and every device has its creation record.
func TestSnapshotUnderWrites(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			src := open(t, backend)
			tenant := seed(t, src)
			reg := registry.New(src)
			devs, _, _ := src.QueryDevices(t.Context(), tenant, model.DeviceQuery{}, model.Page{Limit: 1})
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			for w := 0; w < 3; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; ctx.Err() == nil; i++ {
						reg.CreateDevice(ctx, admin, tenant, registry.DeviceInput{ProductID: devs[0].ProductID, Serial: fmt.Sprintf("W%d-%d", w, i)})
					}
				}(w)
			}
			var buf bytes.Buffer
			_, err := backup.Write(t.Context(), src, &buf, nil)
			cancel()
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			dst := open(t, "sqlite")
			if _, err := backup.Restore(t.Context(), dst, &buf, nil); err != nil {
				t.Fatal(err)
			}
			reps, _ := auditlog.Verify(t.Context(), dst, nil, nil)
			for _, r := range reps {
				if !r.OK {
					t.Fatalf("snapshot is not consistent: %+v", r)
				}
			}
			n, _ := dst.CountDevices(t.Context(), tenant, model.DeviceQuery{})
			recs, _ := dst.ListAudit(t.Context(), tenant, 0, 100000)
			var created int64
			for _, r := range recs {
				if r.Action == "device.create" {
					created++
				}
			}
			if created != n {
				t.Fatalf("%d devices but %d creation records in the snapshot", n, created)
			}
		})
	}
}

func TestRestoreRefuses(t *testing.T) {
	src := open(t, "sqlite")
	seed(t, src)
	var buf bytes.Buffer
	if _, err := backup.Write(t.Context(), src, &buf, nil); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.Bytes()
	}
	cases := []struct {
		name string
		data []byte
		into func(t *testing.T) *sqlstore.DB
		want string
	}{
		{"not gzip", []byte("hello"), nil, "not a Steward backup"},
		{"no header", gz(`{"x":1}` + "\n"), nil, "header"},
		{"future format", gz(`{"format":"steward-backup","version":99}` + "\n"), nil, "format version 99"},
		{"newer schema", gz(`{"format":"steward-backup","version":1,"schema_version":9999}` + "\n"), nil, "newer steward"},
		{"unknown table", gz(`{"format":"steward-backup","version":1,"schema_version":1}` + "\n" + `{"table":"nope","columns":["a"]}` + "\n"), nil, "does not have"},
		{"row before table", gz(`{"format":"steward-backup","version":1,"schema_version":1}` + "\n" + `{"r":[1]}` + "\n"), nil, "before any table"},
		{"not empty", good, func(*testing.T) *sqlstore.DB { return src }, "not empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := open(t, "sqlite")
			if tc.into != nil {
				dst = tc.into(t)
			}
			before, _ := dst.AuditHeads(t.Context())
			_, err := backup.Restore(t.Context(), dst, bytes.NewReader(tc.data), nil)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if tc.name == "not empty" && !errors.Is(err, backup.ErrNotEmpty) {
				t.Fatalf("want ErrNotEmpty, got %v", err)
			}
			after, _ := dst.AuditHeads(t.Context())
			if len(before) != len(after) {
				t.Fatal("a refused restore changed the target")
			}
		})
	}
}
