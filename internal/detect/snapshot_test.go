package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

// memStore keeps saved states in memory, for properties that do not need a
// database; gate, when set, holds every load until it is closed.
type memStore struct {
	mu      sync.Mutex
	docs    map[string][]byte
	saves   [][]Saved
	loads   int
	loadErr error
	saveErr error
	gate    chan struct{}
}

func newMemStore() *memStore { return &memStore{docs: map[string][]byte{}} }

func (m *memStore) load(ctx context.Context, tenantID, deviceID string) ([]byte, error) {
	if m.gate != nil {
		<-m.gate
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	if m.loadErr != nil {
		return nil, m.loadErr
	}
	return m.docs[tenantID+"/"+deviceID], nil
}

func (m *memStore) save(ctx context.Context, states []Saved) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.saveErr != nil {
		return m.saveErr
	}
	m.saves = append(m.saves, states)
	for _, s := range states {
		m.docs[s.TenantID+"/"+s.DeviceID] = s.Doc
	}
	return nil
}

func (m *memStore) snapshot(t *testing.T, key string) *Snapshot {
	t.Helper()
	m.mu.Lock()
	doc := m.docs[key]
	m.mu.Unlock()
	if doc == nil {
		t.Fatalf("nothing saved for %s", key)
	}
	var s Snapshot
	if err := json.Unmarshal(doc, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// node is a detector on the given load and save functions.
func node(s model.DetectionSettings, c *clock, load func(context.Context, string, string) ([]byte, error),
	save func(context.Context, []Saved) error, log *slog.Logger) *Detector {
	return New(Options{Settings: settingsOf(s), Clock: c.now, Load: load, Save: save, Log: log})
}

// stop runs the detector with an ended context: Run returns at once and
// saves what changed, as on shutdown.
func stop(d *Detector) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d.Run(ctx)
}

// steady feeds perMinute messages of 100 bytes a minute.
func steady(dv *Device, c *clock, minutes, perMinute int) {
	for m := range minutes {
		for i := range perMinute {
			if i < perMinute/10*(m%2) { // ±10 %
				continue
			}
			dv.Message(100)
		}
		c.add(time.Minute)
	}
}

func learnedSettings() model.DetectionSettings {
	s := quiet()
	s.LearningMinutes, s.Sigma, s.RateFloor = 30, 4, 50
	return s
}

// openSQLite is a migrated SQLite store holding tenant "ten" with device
// "dev".
func openSQLite(t *testing.T) store.Store {
	t.Helper()
	return openStore(t, "sqlite:"+filepath.Join(t.TempDir(), "s.db"))
}

func openStore(t *testing.T, url string) store.Store {
	t.Helper()
	ctx := t.Context()
	st, err := sqlstore.Open(ctx, url, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateTenant(ctx, &model.Tenant{ID: "ten", Name: "Ten", Kind: model.TenantEnterprise, CreatedAt: at}); err != nil {
			return err
		}
		if err := tx.CreateProduct(ctx, &model.Product{ID: "prd", TenantID: "ten", Vendor: "Acme", Model: "M1", CreatedAt: at, UpdatedAt: at}); err != nil {
			return err
		}
		return tx.CreateDevice(ctx, &model.Device{ID: "dev", TenantID: "ten", ProductID: "prd", Serial: "SN-1",
			State: model.StateActive, CreatedAt: at, UpdatedAt: at})
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// storeFuncs are the platform's load and save over a store.
func storeFuncs(st store.Store) (func(context.Context, string, string) ([]byte, error), func(context.Context, []Saved) error) {
	load := func(ctx context.Context, tenantID, deviceID string) ([]byte, error) {
		b, err := st.GetDetectionBaseline(ctx, tenantID, deviceID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return b.Doc, nil
	}
	save := func(ctx context.Context, states []Saved) error {
		bs := make([]store.DetectionBaseline, len(states))
		for i, s := range states {
			bs[i] = store.DetectionBaseline{TenantID: s.TenantID, DeviceID: s.DeviceID, Doc: s.Doc, UpdatedAt: time.Now()}
		}
		return st.PutDetectionBaselines(ctx, bs)
	}
	return load, save
}

// A device's learned baseline survives a restart of its node: the new
// detector reads it from the store, the device is not learning, and a rate
// far above the baseline raises at once.
func TestBaselineSurvivesRestart(t *testing.T) {
	s := learnedSettings()
	st := openSQLite(t)
	load, save := storeFuncs(st)
	c := newClock()

	d1 := node(s, c, load, save, nil)
	dv := d1.Device(t.Context(), "ten", "dev")
	d1.loadWG.Wait()
	dv.Connected("192.0.2.1:4000")
	steady(dv, c, 40, 100)
	mean := dv.msgBase.mean
	stop(d1) // the last save on shutdown
	if _, err := st.GetDetectionBaseline(t.Context(), "ten", "dev"); err != nil {
		t.Fatalf("nothing saved on shutdown: %v", err)
	}

	burst := func(d *Detector) (string, *Device) {
		dv := d.Device(t.Context(), "ten", "dev")
		d.loadWG.Wait()
		dv.Connected("192.0.2.1:4001")
		for range 300 {
			dv.Message(100)
		}
		return kinds(drain(d)), dv
	}
	d2 := node(s, c, load, save, nil)
	got, dv2 := burst(d2)
	if got != "raise message_rate_anomaly, raise byte_rate_anomaly" {
		t.Fatalf("after a restart: %q", got)
	}
	dv2.mu.Lock()
	learning, restored := dv2.learning(c.now(), &s), dv2.msgBase.mean
	dv2.mu.Unlock()
	if learning || restored != mean {
		t.Fatalf("restored: learning %v, mean %.2f (saved %.2f)", learning, restored, mean)
	}
	// Without the store the same burst goes unnoticed: the device learns.
	if got, _ := burst(node(s, c, nil, nil, nil)); got != "" {
		t.Fatalf("a detector without saved state: %q", got)
	}
}

// Two nodes share one store (a cluster shares PostgreSQL): a device that
// moves finds what the other node saved, and a node it comes back to reads
// the newer state again.
func TestBaselineMovesBetweenNodes(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testMoves(t, openSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { testMoves(t, openStore(t, pgtest.URL(t))) })
}

func testMoves(t *testing.T, st store.Store) {
	s := learnedSettings()
	load, save := storeFuncs(st)
	c := newClock()
	a, b := node(s, c, load, save, nil), node(s, c, load, save, nil)

	dva := a.Device(t.Context(), "ten", "dev")
	a.loadWG.Wait()
	steady(dva, c, 40, 100)
	a.flush(t.Context()) // the periodic save

	dvb := b.Device(t.Context(), "ten", "dev")
	b.loadWG.Wait()
	dvb.mu.Lock()
	learning, n := dvb.learning(c.now(), &s), dvb.msgBase.n
	dvb.mu.Unlock()
	if learning || n < 35 {
		t.Fatalf("on the second node: learning %v, %d minutes learned", learning, n)
	}
	steady(dvb, c, 20, 100) // learned on b
	b.flush(t.Context())

	// Back on a, which still holds its older state: it reads b's.
	dva = a.Device(t.Context(), "ten", "dev")
	a.loadWG.Wait()
	dva.mu.Lock()
	n = dva.msgBase.n
	dva.mu.Unlock()
	if n < 55 {
		t.Fatalf("back on the first node: %d minutes learned; b's state was not read", n)
	}
	if got := kinds(append(drain(a), drain(b)...)); got != "" {
		t.Fatalf("decisions: %q", got)
	}
}

// What a device does while its saved state is on its way is judged once it
// arrives.
func TestMergeOnLoad(t *testing.T) {
	s := learnedSettings()
	s.NewSourcesPerHour, s.NewListeningPorts, s.NewOutbound = 1, 1, 1
	port := func(ps ...int) *Metrics {
		m := &Metrics{}
		for _, p := range ps {
			m.ListeningPorts = append(m.ListeningPorts, Port{"tcp", p})
		}
		return m
	}
	// saved is a state learned on another node: learning started first
	// ago, source 192.0.2.1, port 22, 40 minutes of 100 messages.
	saved := func(c *clock, first time.Duration) []byte {
		doc, _ := json.Marshal(Snapshot{Version: SnapshotVersion, First: c.now().Add(-first),
			Messages: Baseline{N: 40, Mean: 100, Var: 25}, Bytes: Baseline{N: 40, Mean: 10000, Var: 250000},
			Sources: []string{"192.0.2.1"}, Ports: []string{"tcp/22"}, Reported: true})
		return doc
	}
	tests := []struct {
		name       string
		first      time.Duration // how long ago the saved learning started
		during     func(dv *Device)
		after      func(dv *Device)
		want       string
		wantPorts  string
		wantSaved  bool
		wantSource bool
	}{
		{"known source and ports: nothing", time.Hour,
			func(dv *Device) { dv.Connected("192.0.2.1:4000"); dv.Report(port(22)) }, nil, "", "tcp/22", false, true},
		{"a new source during the load counts", time.Hour,
			func(dv *Device) { dv.Connected("198.51.100.7:4000") }, nil, "raise new_source_addresses", "tcp/22", true, true},
		{"a new port during the load is raised at the next report", time.Hour,
			func(dv *Device) { dv.Report(port(22, 4444)) }, func(dv *Device) { dv.Report(port(22, 4444)) },
			"raise new_listening_ports", "tcp/22", false, true},
		{"saved state still learning: what came during the load is learned", 10 * time.Minute,
			func(dv *Device) { dv.Connected("198.51.100.7:4000"); dv.Report(port(22, 4444)) },
			func(dv *Device) { dv.Report(port(22, 4444)) }, "", "tcp/22 tcp/4444", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			m := newMemStore()
			m.docs["ten/dev"] = saved(c, tc.first)
			m.gate = make(chan struct{})
			d := node(s, c, m.load, m.save, nil)
			dv := d.Device(t.Context(), "ten", "dev")
			tc.during(dv)
			close(m.gate)
			d.loadWG.Wait()
			if tc.after != nil {
				tc.after(dv)
			}
			if got := kinds(drain(d)); got != tc.want {
				t.Fatalf("decisions: %q, want %q", got, tc.want)
			}
			dv.mu.Lock()
			ports, dirty, first := strings.Join(keysOf(dv.ports), " "), dv.dirty, dv.first
			dv.mu.Unlock()
			if ports != tc.wantPorts || dirty != tc.wantSaved || !first.Equal(c.now().Add(-tc.first)) {
				t.Fatalf("ports %q (want %q), to save %v (want %v), first %s", ports, tc.wantPorts, dirty, tc.wantSaved, first)
			}
		})
	}
}

func TestSaving(t *testing.T) {
	s := learnedSettings()

	t.Run("batches, and only what changed", func(t *testing.T) {
		c := newClock()
		m := newMemStore()
		d := node(s, c, m.load, m.save, nil)
		for i := range 600 {
			d.Device(t.Context(), "ten", fmt.Sprintf("dev-%03d", i)).Message(10)
		}
		d.Adopt([]model.Alarm{{TenantID: "ten", DeviceID: "quiet", Kind: model.AlarmMessageRate, FirstRaised: c.now()}})
		d.AuthFailure("ten", "elsewhere") // seen here, saved nowhere yet: its start of learning is saved
		d.loadWG.Wait()
		d.flush(t.Context())
		total := 0
		for _, b := range m.saves {
			if len(b) > saveBatch {
				t.Fatalf("a batch of %d", len(b))
			}
			total += len(b)
		}
		if total != 601 || m.docs["ten/quiet"] != nil || m.docs["ten/elsewhere"] == nil {
			t.Fatalf("%d saved in %d batches; quiet %v", total, len(m.saves), m.docs["ten/quiet"] != nil)
		}
		// Nothing changed since: nothing to save; a new minute is.
		m.saves = nil
		d.flush(t.Context())
		c.add(time.Minute)
		dv := d.Device(t.Context(), "ten", "dev-007") // reads the saved state again
		d.loadWG.Wait()
		dv.Message(10)
		d.flush(t.Context())
		if len(m.saves) != 1 || len(m.saves[0]) != 1 || m.saves[0][0].DeviceID != "dev-007" {
			t.Fatalf("saves after one change: %+v", m.saves)
		}
		if sn := m.snapshot(t, "ten/dev-007"); sn.Messages.N != 1 || sn.Version != SnapshotVersion || !sn.First.Equal(c.now().Add(-time.Minute)) {
			t.Fatalf("saved: %+v", sn)
		}
	})

	t.Run("a failed save is tried again", func(t *testing.T) {
		c := newClock()
		m := newMemStore()
		d := node(s, c, m.load, m.save, nil)
		d.Device(t.Context(), "ten", "dev").Message(1)
		d.loadWG.Wait()
		m.saveErr = errors.New("database is down")
		d.flush(t.Context())
		m.saveErr = nil
		d.flush(t.Context())
		if m.docs["ten/dev"] == nil {
			t.Fatal("not saved after the database came back")
		}
	})

	t.Run("a failed load saves nothing over the saved state and is tried again", func(t *testing.T) {
		c := newClock()
		m := newMemStore()
		good, _ := json.Marshal(Snapshot{Version: SnapshotVersion, First: c.now().Add(-time.Hour), Messages: Baseline{N: 60, Mean: 5}})
		m.docs["ten/dev"] = good
		m.loadErr = errors.New("database is down")
		d := node(s, c, m.load, m.save, nil)
		dv := d.Device(t.Context(), "ten", "dev")
		d.loadWG.Wait()
		dv.Message(1)
		d.flush(t.Context()) // queues the load again
		if len(m.saves) != 0 {
			t.Fatalf("saved over a state it could not read: %+v", m.saves)
		}
		d.loadWG.Wait()
		m.loadErr = nil
		d.flush(t.Context())
		d.loadWG.Wait()
		dv.mu.Lock()
		learning, n := dv.learning(c.now(), &s), dv.msgBase.n
		dv.mu.Unlock()
		if learning || n != 60 {
			t.Fatalf("after the retry: learning %v, n %d", learning, n)
		}
	})

	t.Run("a bad saved state: warned, learned afresh, replaced", func(t *testing.T) {
		c := newClock()
		m := newMemStore()
		m.docs["ten/dev"] = []byte(`{"version":99,"first":"2026-01-01T00:00:00Z"}`)
		var log bytes.Buffer
		d := node(s, c, m.load, m.save, slog.New(slog.NewTextHandler(&log, nil)))
		dv := d.Device(t.Context(), "ten", "dev")
		d.loadWG.Wait()
		dv.Message(1)
		dv.mu.Lock()
		learning := dv.learning(c.now(), &s)
		dv.mu.Unlock()
		if !learning || !strings.Contains(log.String(), "version 99 is unknown") {
			t.Fatalf("learning %v; log: %s", learning, log.String())
		}
		d.flush(t.Context())
		if sn := m.snapshot(t, "ten/dev"); sn.Version != SnapshotVersion || !sn.First.Equal(c.now()) {
			t.Fatalf("replaced by %+v", sn)
		}
	})

	t.Run("evicted only once saved; read again when back", func(t *testing.T) {
		c := newClock()
		m := newMemStore()
		d := node(s, c, m.load, m.save, nil)
		steady(d.Device(t.Context(), "ten", "dev"), c, 40, 10)
		d.loadWG.Wait()
		c.add(idleEvict + time.Minute)
		d.evict(c.now())
		if d.Devices() != 1 {
			t.Fatal("evicted with unsaved changes")
		}
		d.flush(t.Context())
		d.evict(c.now())
		if d.Devices() != 0 {
			t.Fatal("not evicted once saved")
		}
		dv := d.Device(t.Context(), "ten", "dev")
		d.loadWG.Wait()
		dv.mu.Lock()
		learning, n := dv.learning(c.now(), &s), dv.msgBase.n
		dv.mu.Unlock()
		if learning || n < 39 {
			t.Fatalf("back after eviction: learning %v, n %d", learning, n)
		}
	})
}

func TestDecodeSnapshot(t *testing.T) {
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	good := `{"version":1,"first":"2026-01-05T09:00:00Z","messages":{"n":3,"mean":10,"var":2},"sources":["192.0.2.1"],` +
		`"ports":["tcp/22"],"outbound":[],"reported":true,"later_field":1}`
	sn, err := DecodeSnapshot([]byte(good), now)
	if err != nil || sn.Messages.N != 3 || sn.Ports[0] != "tcp/22" || !sn.Reported {
		t.Fatalf("good snapshot: %+v %v", sn, err)
	}
	many := `[` + strings.Repeat(`"k",`, maxKnown) + `"k"]`
	bad := []struct{ doc, want string }{
		{``, "not a JSON object"},
		{`[]`, "not a JSON object"},
		{`{}`, "no version"},
		{`{"version":2,"first":"2026-01-05T09:00:00Z"}`, "version 2 is unknown"},
		{`{"version":"1"}`, "version: must be a number"},
		{`{"version":1}`, "first"},
		{`{"version":1,"first":"2026-01-06T09:00:00Z"}`, "first"},
		{`{"version":1,"first":"soon"}`, "malformed"},
		{`{"version":1,"first":"2026-01-05T09:00:00Z","messages":{"n":-1}}`, "messages"},
		{`{"version":1,"first":"2026-01-05T09:00:00Z","bytes":{"n":1,"mean":-5}}`, "bytes"},
		{`{"version":1,"first":"2026-01-05T09:00:00Z","processes":{"n":1,"var":-1}}`, "processes"},
		{`{"version":1,"first":"2026-01-05T09:00:00Z","messages":{"n":1,"mean":1e999}}`, "messages.mean"},
		{`{"version":1,"first":"2026-01-05T09:00:00Z","ports":"tcp/22"}`, "ports: must be a list"},
		{`{"version":1,"first":"2026-01-05T09:00:00Z","sources":` + many + `}`, "sources: 513 entries"},
		{`{"version":1,"first":"2026-01-05T09:00:00Z","outbound":[""]}`, "outbound[0]"},
		{`{"version":1,"first":"2026-01-05T09:00:00Z","ports":["` + strings.Repeat("x", maxKeyLen+1) + `"]}`, "ports[0]"},
		{strings.Repeat(" ", maxSnapshotDoc+1), "at most"},
	}
	for _, tc := range bad {
		_, err := DecodeSnapshot([]byte(tc.doc), now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.70s: error %v, want one naming %q", tc.doc, err, tc.want)
		}
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add([]byte(`{"version":1,"first":"2026-01-05T09:00:00Z","messages":{"n":3,"mean":10,"var":2},"sources":["192.0.2.1"],"reported":true}`))
	f.Add([]byte(`{"version":1,"first":"2026-01-05T09:00:00Z","ports":["tcp/22"],"outbound":["tcp/192.0.2.1:443"]}`))
	f.Add([]byte(`{"version":2}`))
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		sn, err := DecodeSnapshot(data, now)
		if err != nil {
			return
		}
		// Whatever is accepted merges into a device without harm and is
		// saved again as something this node reads.
		d := New(Options{Settings: settingsOf(learnedSettings()), Clock: func() time.Time { return now }, Save: func(context.Context, []Saved) error { return nil }})
		dv := &Device{d: d, tenantID: "ten", deviceID: "dev"}
		st := learnedSettings()
		dv.mu.Lock()
		dv.merge(sn, now, &st)
		doc, err := json.Marshal(dv.snapshot())
		dv.mu.Unlock()
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		if _, err := DecodeSnapshot(doc, now); err != nil {
			t.Fatalf("saved again as %s: %v", doc, err)
		}
	})
}
