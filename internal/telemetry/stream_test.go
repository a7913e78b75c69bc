package telemetry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store/sqlstore"
	"github.com/steward-iot/steward/internal/testutil/natstest"
	"github.com/steward-iot/steward/internal/testutil/pgtest"
)

func TestStreamEncoding(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC)
	pt := func(metric string, d time.Duration, k model.ValueKind, num float64, text string) model.TelemetryPoint {
		return model.TelemetryPoint{TenantID: "ten_1", DeviceID: "dev_1", Metric: metric, Time: at.Add(d), Kind: k, Num: num, Text: text}
	}
	for _, tc := range []struct {
		name string
		pts  []model.TelemetryPoint
	}{
		{"empty", nil},
		{"one number", []model.TelemetryPoint{pt("temp", 0, model.KindNumber, 21.5, "")}},
		{"every kind, times going back", []model.TelemetryPoint{
			pt("temp", 0, model.KindNumber, -0.001, ""),
			pt("on", -time.Hour, model.KindBool, 1, ""),
			pt("state", 3*time.Nanosecond, model.KindString, 0, "heating ✓"),
			pt("blob", -48*time.Hour, model.KindData, 0, "AAEC"),
			pt("big", 0, model.KindNumber, math.MaxFloat64, ""),
			pt("", 0, model.KindString, 0, ""),
		}},
		{"old and far times", []model.TelemetryPoint{
			pt("a", -56*365*24*time.Hour, model.KindNumber, 1, ""),
			pt("b", 100*365*24*time.Hour, model.KindNumber, 2, ""),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := EncodePoints(tc.pts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodePoints(data, "ten_1", "dev_1")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.pts) {
				t.Fatalf("%d points, want %d", len(got), len(tc.pts))
			}
			for i := range got {
				w := tc.pts[i]
				if g := got[i]; !g.Time.Equal(w.Time) || g.Time.Location() != time.UTC || g.Metric != w.Metric ||
					g.Kind != w.Kind || g.Num != w.Num || g.Text != w.Text || g.TenantID != w.TenantID || g.DeviceID != w.DeviceID {
					t.Errorf("point %d: got %+v, want %+v", i, g, w)
				}
			}
		})
	}
	if _, err := EncodePoints([]model.TelemetryPoint{{Metric: "x", Time: at, Kind: "?"}}); err == nil {
		t.Error("unknown kind encoded")
	}

	good, _ := EncodePoints([]model.TelemetryPoint{pt("temp", 0, model.KindNumber, 1, ""), pt("s", 0, model.KindString, 0, "abc")})
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"nothing", nil, "version 0"},
		{"other version", append([]byte{2}, good[1:]...), "version 2"},
		{"truncated", good[:len(good)-1], "truncated"},
		{"trailing bytes", append(append([]byte{}, good...), 0), "after the last point"},
		{"unknown kind", []byte{1, 1, 1, 'm', 0, 'x'}, "unknown kind"},
		{"count beyond the data", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}, "larger than the message"},
		{"no count", []byte{1}, "varint"},
	} {
		if pts, err := DecodePoints(tc.data, "t", "d"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: points %v, err %v, want %q", tc.name, pts, err, tc.want)
		}
	}
}

// node is one process of a scaled-out deployment: its own store handle,
// bus connection and ingester.
type node struct {
	st *sqlstore.DB
	b  *bus.Bus
	in *Ingester
}

func testLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startNode(t *testing.T, storeURL, prefix string) *node {
	t.Helper()
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, storeURL, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.Open(ctx, bus.Config{URL: natstest.URL(), Prefix: prefix, Name: "telemetry-test",
		TelemetryAckWait: time.Second, RetryBackoff: []time.Duration{50 * time.Millisecond}}, testLog())
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	n := &node{st: st, b: b, in: NewIngester(st, testLog(), IngestOptions{})}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); n.in.Run(rctx) }()
	t.Cleanup(func() {
		_ = b.Close()
		cancel()
		<-done
		st.Close()
	})
	return n
}

func storedPoints(t *testing.T, storeURL string) int {
	t.Helper()
	db, err := sql.Open("pgx", storeURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM telemetry`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// message makes the points of device d's message i: 3 metrics, distinct times.
func message(d, i int) []model.TelemetryPoint {
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	dev := fmt.Sprintf("dev_%02d", d)
	return []model.TelemetryPoint{
		{TenantID: "ten_1", DeviceID: dev, Metric: "temp", Time: at, Kind: model.KindNumber, Num: float64(i)},
		{TenantID: "ten_1", DeviceID: dev, Metric: "on", Time: at, Kind: model.KindBool, Num: 1},
		{TenantID: "ten_1", DeviceID: dev, Metric: "state", Time: at, Kind: model.KindString, Text: fmt.Sprint("s", i)},
	}
}

// TestStreamShared: messages published by one node's sink are stored by
// two nodes' consumers, each point once; the sink answers in order.
func TestStreamShared(t *testing.T) {
	storeURL, prefix := pgtest.URL(t), natstest.Prefix(t)
	a, b := startNode(t, storeURL, prefix), startNode(t, storeURL, prefix)
	for _, n := range []*node{a, b} {
		stop, err := Consume(context.Background(), n.b, n.in, testLog())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop) // before the ingester stops (cleanups run last first)
	}
	sink := NewStreamSink(a.b, testLog())
	ctx, cancel := context.WithCancel(context.Background())
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); sink.Run(ctx) }()

	const devices, per = 10, 100
	var mu sync.Mutex
	var answered []int
	var failed atomic.Int64
	for i := range per {
		for d := range devices {
			k := i*devices + d
			var err error
			switch i % 10 {
			case 0:
				err = sink.Write(ctx, message(d, i)) // QoS 2
				mu.Lock()
				answered = append(answered, k)
				mu.Unlock()
			case 1:
				err = sink.Enqueue(ctx, message(d, i)) // QoS 0
				mu.Lock()
				answered = append(answered, k)
				mu.Unlock()
			default:
				err = sink.WriteThen(ctx, message(d, i), func(err error) {
					if err != nil {
						failed.Add(1)
					}
					mu.Lock()
					answered = append(answered, k)
					mu.Unlock()
				})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := sink.WriteThen(ctx, nil, func(err error) { // nothing to publish: answered in turn
		mu.Lock()
		answered = append(answered, devices*per)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-sinkDone
	if err := sink.Enqueue(context.Background(), message(0, 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Run ended: %v, want ErrClosed", err)
	}
	if failed.Load() != 0 || sink.Failed.Load() != 0 {
		t.Fatalf("%d answers failed, %d publishes failed", failed.Load(), sink.Failed.Load())
	}
	if got := sink.Published.Load(); got != devices*per {
		t.Errorf("%d published, want %d", got, devices*per)
	}
	// Answers (WriteThen) came in submission order.
	mu.Lock()
	var order []int
	for _, k := range answered {
		if (k/devices)%10 >= 2 || k == devices*per {
			order = append(order, k)
		}
	}
	mu.Unlock()
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			t.Fatalf("answer %d came after %d", order[i], order[i-1])
		}
	}

	const points = devices * per * 3
	waitFor(t, "every point stored", func() bool { return storedPoints(t, storeURL) == points })
	waitFor(t, "the stream empty", func() bool {
		s, err := a.b.JetStream().Stream(context.Background(), a.b.TelemetryStreamName())
		return err == nil && s.CachedInfo().State.Msgs == 0
	})
	pa, pb := a.in.Points.Load(), b.in.Points.Load()
	t.Logf("node A wrote %d points, node B %d", pa, pb)
	if pa+pb != points || pa == 0 || pb == 0 {
		t.Errorf("nodes wrote %d and %d points, want %d together from both", pa, pb, points)
	}
	if got := storedPoints(t, storeURL); got != points {
		t.Errorf("%d points stored, want %d", got, points)
	}
	latest, err := a.st.LatestTelemetry(context.Background(), "ten_1", "dev_03")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"temp": float64(per - 1), "on": true, "state": fmt.Sprint("s", per-1)}
	gotLatest := map[string]any{}
	for _, p := range latest {
		gotLatest[p.Metric] = p.Value()
	}
	if !reflect.DeepEqual(gotLatest, want) {
		t.Errorf("latest values %v, want %v", gotLatest, want)
	}
}

// TestStreamRedelivery: a node that committed messages but died before
// acking them, and one that died holding messages it had not written:
// another node stores them, and nothing twice.
func TestStreamRedelivery(t *testing.T) {
	storeURL, prefix := pgtest.URL(t), natstest.Prefix(t)
	a := startNode(t, storeURL, prefix)
	ctx := context.Background()
	const devices, per = 4, 50
	for i := range per {
		for d := range devices {
			data, err := EncodePoints(message(d, i))
			if err != nil {
				t.Fatal(err)
			}
			ack, err := a.b.PublishTelemetry(ctx, "ten_1", fmt.Sprintf("dev_%02d", d), data)
			if err == nil {
				err = ack.Wait()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// Node A writes every other message it takes and acks none.
	var took, wrote atomic.Int64
	_, err := a.b.ConsumeTelemetry(ctx, func(ctx context.Context, m *bus.TelemetryMsg) {
		if took.Add(1)%2 == 0 {
			return
		}
		pts, err := DecodePoints(m.Data, m.TenantID, m.DeviceID)
		if err == nil {
			err = a.in.Write(ctx, pts)
		}
		if err != nil {
			t.Error(err)
			return
		}
		wrote.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	const msgs = devices * per
	waitFor(t, "node A to take every message", func() bool { return took.Load() >= msgs })
	a.b.Conn().Close() // dies: no ack, no nak
	if got := storedPoints(t, storeURL); got != int(wrote.Load())*3 || got == 0 {
		t.Fatalf("%d points stored by A, want %d", got, wrote.Load()*3)
	}

	b := startNode(t, storeURL, prefix)
	stop, err := Consume(ctx, b.b, b.in, testLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	waitFor(t, "the stream empty", func() bool {
		s, err := b.b.JetStream().Stream(ctx, b.b.TelemetryStreamName())
		return err == nil && s.CachedInfo().State.Msgs == 0
	})
	if got, want := b.in.Points.Load(), int64(msgs*3); got != want {
		t.Errorf("node B wrote %d points, want %d (every message again)", got, want)
	}
	if got := storedPoints(t, storeURL); got != msgs*3 {
		t.Errorf("%d points stored, want %d", got, msgs*3)
	}
}

// BenchmarkSink compares, on one node with the embedded bus and SQLite,
// the direct path with the stream path: each op is a QoS 1 message of 3
// points, acknowledged (then called) and stored.
func BenchmarkSink(b *testing.B) {
	for _, mode := range []string{"direct", "stream"} {
		b.Run(mode, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dir := b.TempDir()
			st, err := sqlstore.Open(ctx, "sqlite:"+dir+"/s.db", sqlstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			in := NewIngester(st, nil, IngestOptions{})
			inDone := make(chan struct{})
			go func() { defer close(inDone); in.Run(ctx) }()
			defer func() { cancel(); <-inDone }()
			var sink Sink = in
			if mode == "stream" {
				bb, err := bus.Open(ctx, bus.Config{DataDir: dir + "/bus"}, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer bb.Close()
				ss := NewStreamSink(bb, nil)
				sctx, scancel := context.WithCancel(ctx)
				sDone := make(chan struct{})
				go func() { defer close(sDone); ss.Run(sctx) }()
				defer func() { scancel(); <-sDone }()
				stop, err := Consume(ctx, bb, in, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer stop()
				sink = ss
			}
			var acked atomic.Int64
			b.ResetTimer()
			for i := range b.N {
				if err := sink.WriteThen(ctx, message(i%100, i/100), func(error) { acked.Add(1) }); err != nil {
					b.Fatal(err)
				}
			}
			for acked.Load() < int64(b.N) || in.Points.Load() < int64(3*b.N) {
				time.Sleep(time.Millisecond)
			}
		})
	}
}
