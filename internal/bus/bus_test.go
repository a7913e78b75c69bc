package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/steward-iot/steward/internal/model"
)

const waitTimeout = 10 * time.Second

func testLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newEvent(tenant, typ string) *model.Event {
	return &model.Event{
		ID:       "ev-" + randHex(8),
		TenantID: tenant,
		Type:     typ,
		Subject:  "device/" + randHex(4),
		Time:     time.Now().UTC().Truncate(time.Millisecond),
		Data:     json.RawMessage(`{"k":"v"}`),
	}
}

func publish(t *testing.T, b *Bus, evs ...*model.Event) {
	t.Helper()
	for _, ev := range evs {
		if _, err := b.PublishEvent(context.Background(), ev); err != nil {
			t.Fatalf("publish %s: %v", ev.Type, err)
		}
	}
}

// deployment opens buses on one deployment (same store or same prefix).
// Embedded: always the same bus (one process). External: a new connection
// per call, like several server processes.
type deployment func(t *testing.T) *Bus

// fastRetry keeps redelivery tests short.
var fastRetry = []time.Duration{20 * time.Millisecond}

func embedded(t *testing.T) deployment {
	t.Helper()
	b, err := Open(context.Background(), Config{DataDir: t.TempDir(), RetryBackoff: fastRetry}, testLog())
	if err != nil {
		t.Fatalf("open embedded: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return func(*testing.T) *Bus { return b }
}

func externalURL() string {
	if u := os.Getenv("STEWARD_TEST_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

// requireExternal skips (or, in CI, fails) when no external NATS server runs.
func requireExternal(t *testing.T) {
	t.Helper()
	u, err := url.Parse(externalURL())
	if err != nil {
		t.Fatalf("bad STEWARD_TEST_NATS_URL: %v", err)
	}
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		msg := fmt.Sprintf("external NATS server at %s not reachable (%v); start one with JetStream (nats-server -js) to run this test", u.Host, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	_ = c.Close()
}

func external(t *testing.T) deployment {
	t.Helper()
	cfg := Config{URL: externalURL(), Prefix: "test-" + randHex(6), Name: "steward-bus-test", RetryBackoff: fastRetry}
	var first *Bus
	return func(t *testing.T) *Bus {
		t.Helper()
		b, err := Open(context.Background(), cfg, testLog())
		if err != nil {
			t.Fatalf("open external: %v", err)
		}
		if first == nil {
			first = b
			t.Cleanup(func() { // runs after later buses closed (cleanups are LIFO)
				for _, name := range []string{b.StreamName(), b.TelemetryStreamName()} {
					if err := b.JetStream().DeleteStream(context.Background(), name); err != nil {
						t.Errorf("delete stream %s: %v", name, err)
					}
				}
				_ = b.Close()
			})
		} else {
			t.Cleanup(func() { _ = b.Close() })
		}
		return b
	}
}

// collect subscribes and returns the delivered events on a channel.
func collect(t *testing.T, b *Bus, tenant string, after uint64) (<-chan model.Event, func()) {
	t.Helper()
	ch := make(chan model.Event, 1000)
	stop, err := b.SubscribeEvents(context.Background(), tenant, after, func(ev model.Event) {
		select {
		case ch <- ev:
		default:
			t.Error("collector overflow")
		}
	})
	if err != nil {
		t.Fatalf("subscribe %q after %d: %v", tenant, after, err)
	}
	t.Cleanup(stop)
	return ch, stop
}

// expect reads len(want) events and checks their IDs and sequences in order.
func expect(t *testing.T, ch <-chan model.Event, want ...*model.Event) {
	t.Helper()
	timeout := time.After(waitTimeout)
	for i, w := range want {
		select {
		case got := <-ch:
			if got.ID != w.ID || got.Seq != w.Seq || got.TenantID != w.TenantID || got.Type != w.Type {
				t.Fatalf("event %d: got id=%s seq=%d tenant=%q type=%s, want id=%s seq=%d tenant=%q type=%s",
					i, got.ID, got.Seq, got.TenantID, got.Type, w.ID, w.Seq, w.TenantID, w.Type)
			}
			if !got.Time.Equal(w.Time) || string(got.Data) != string(w.Data) || got.Subject != w.Subject {
				t.Fatalf("event %d: body not preserved: got %+v, want %+v", i, got, *w)
			}
		case <-timeout:
			t.Fatalf("timeout waiting for event %d of %d (%s)", i+1, len(want), w.Type)
		}
	}
}

// expectNone checks that nothing more arrives for a short while.
func expectNone(t *testing.T, ch <-chan model.Event) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("unexpected event seq=%d tenant=%q type=%s", got.Seq, got.TenantID, got.Type)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestEmbedded(t *testing.T) { runSuite(t, embedded) }

func TestExternal(t *testing.T) {
	requireExternal(t)
	runSuite(t, external)
}

func runSuite(t *testing.T, dep func(*testing.T) deployment) {
	t.Run("Mode", func(t *testing.T) {
		b := dep(t)(t)
		if want := b.cfg.URL == ""; b.Embedded() != want {
			t.Fatalf("Embedded() = %v, want %v", b.Embedded(), want)
		}
		if b.Embedded() && b.ns.Addr() != nil {
			t.Fatalf("embedded server listens on %v", b.ns.Addr())
		}
		if got, want := b.Subject("events", "x"), b.cfg.Prefix+".events.x"; got != want {
			t.Fatalf("Subject = %q, want %q", got, want)
		}
	})
	t.Run("Validation", func(t *testing.T) { testValidation(t, dep(t)(t)) })
	t.Run("Subscribe", func(t *testing.T) { testSubscribe(t, dep(t)(t)) })
	t.Run("Dedup", func(t *testing.T) { testDedup(t, dep(t)(t)) })
	t.Run("PublishBatch", func(t *testing.T) { testPublishBatch(t, dep(t)(t)) })
	t.Run("ConsumeRetry", func(t *testing.T) { testConsumeRetry(t, dep(t)(t)) })
	t.Run("ConsumeShared", func(t *testing.T) {
		d := dep(t)
		testConsumeShared(t, d(t), d(t))
	})
	t.Run("ByType", func(t *testing.T) {
		d := dep(t)
		testByType(t, d(t), d(t))
	})
}

// testByType: SubscribeEventTypes hears the named types of every tenant
// on each node; ConsumeEventTypes hands each such event published after
// it started to one node; neither sees other types.
func testByType(t *testing.T, node1, node2 *Bus) {
	ctx := context.Background()
	types := []string{"command.created", "device.state_changed"}
	old := newEvent("tenant-a", "command.created")
	publish(t, node1, old) // before the durables exist: not consumed

	var heard [2]chan model.Event
	for i, b := range []*Bus{node1, node2} {
		ch := make(chan model.Event, 100)
		heard[i] = ch
		stop, err := b.SubscribeEventTypes(ctx, types, func(ev model.Event) { ch <- ev })
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	var mu sync.Mutex
	consumed := map[string]int{}
	got := make(chan string, 100)
	for _, b := range []*Bus{node1, node2} {
		stop, err := b.ConsumeEventTypes(ctx, "by-type", types, func(_ context.Context, ev model.Event) error {
			mu.Lock()
			consumed[ev.ID]++
			mu.Unlock()
			got <- ev.ID
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	want := []*model.Event{newEvent("tenant-a", "command.created"), newEvent("tenant-b", "device.state_changed"),
		newEvent("", "command.created")}
	other := []*model.Event{newEvent("tenant-a", "device.connected"), newEvent("tenant-a", "command.created.x"),
		newEvent("tenant-a", "device")}
	publish(t, node2, other[0], want[0], other[1], want[1], other[2], want[2])

	for i := range heard {
		ids := map[string]bool{}
		for range want {
			select {
			case ev := <-heard[i]:
				ids[ev.ID] = true
			case <-time.After(waitTimeout):
				t.Fatalf("node %d heard %d of %d events", i+1, len(ids), len(want))
			}
		}
		for _, w := range want {
			if !ids[w.ID] {
				t.Errorf("node %d did not hear %s %s", i+1, w.TenantID, w.Type)
			}
		}
		expectNone(t, heard[i])
	}
	for range want {
		select {
		case <-got:
		case <-time.After(waitTimeout):
			t.Fatal("timeout waiting for the consumed events")
		}
	}
	select {
	case id := <-got:
		t.Fatalf("event %s consumed beyond the expected ones", id)
	case <-time.After(200 * time.Millisecond):
	}
	mu.Lock()
	defer mu.Unlock()
	for _, w := range want {
		if consumed[w.ID] != 1 {
			t.Errorf("%s %s consumed %d times, want once", w.TenantID, w.Type, consumed[w.ID])
		}
	}
	if consumed[old.ID] != 0 {
		t.Errorf("an event published before the durables existed was consumed")
	}

	for _, bad := range [][]string{nil, {"a.>"}, {"ok", ""}} {
		if _, err := node1.SubscribeEventTypes(ctx, bad, func(model.Event) {}); err == nil {
			t.Errorf("SubscribeEventTypes(%q): no error", bad)
		}
		if _, err := node1.ConsumeEventTypes(ctx, "by-type-bad", bad, func(context.Context, model.Event) error { return nil }); err == nil {
			t.Errorf("ConsumeEventTypes(%q): no error", bad)
		}
	}
}

func testValidation(t *testing.T, b *Bus) {
	tests := []struct {
		name    string
		ev      *model.Event
		wantErr string // "" = must succeed
	}{
		{"tenant event", newEvent("tenant-1_A", "device.created"), ""},
		{"platform event", newEvent("", "platform.started"), ""},
		{"single token type", newEvent("t1", "ping"), ""},
		{"tenant with dot", newEvent("a.b", "device.created"), "invalid tenant ID"},
		{"tenant wildcard", newEvent("*", "device.created"), "invalid tenant ID"},
		{"tenant with space", newEvent("a b", "device.created"), "invalid tenant ID"},
		{"reserved platform tenant", newEvent("_platform", "device.created"), "invalid tenant ID"},
		{"empty type", newEvent("t1", ""), "event type is empty"},
		{"empty type token", newEvent("t1", "device..created"), "invalid event type"},
		{"trailing dot", newEvent("t1", "device."), "invalid event type"},
		{"type wildcard", newEvent("t1", "device.>"), "invalid event type"},
		{"type with slash", newEvent("t1", "device/created"), "invalid event type"},
		{"empty ID", &model.Event{TenantID: "t1", Type: "x"}, "invalid event ID"},
		{"ID with newline", &model.Event{ID: "a\r\nb", TenantID: "t1", Type: "x"}, "invalid event ID"},
		{"nil event", nil, "nil event"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seq, err := b.PublishEvent(context.Background(), tc.ev)
			if tc.wantErr == "" {
				if err != nil || seq == 0 || tc.ev.Seq != seq {
					t.Fatalf("PublishEvent = %d, %v (ev.Seq %d); want success", seq, err, tc.ev.Seq)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("PublishEvent error = %v, want %q", err, tc.wantErr)
			}
		})
	}

	if _, err := b.SubscribeEvents(context.Background(), "a.>", 0, func(model.Event) {}); err == nil || !strings.Contains(err.Error(), "invalid tenant ID") {
		t.Errorf("SubscribeEvents with bad tenant: err = %v", err)
	}
	for _, name := range []string{"", "a.b", "a b", "*"} {
		if _, err := b.ConsumeEvents(context.Background(), name, func(context.Context, model.Event) error { return nil }); err == nil || !strings.Contains(err.Error(), "invalid durable name") {
			t.Errorf("ConsumeEvents(%q): err = %v", name, err)
		}
	}
	if _, err := Open(context.Background(), Config{Prefix: "a.b", DataDir: t.TempDir()}, nil); err == nil || !strings.Contains(err.Error(), "invalid prefix") {
		t.Errorf("Open with bad prefix: err = %v", err)
	}
}

func testSubscribe(t *testing.T, b *Bus) {
	// History: A1 B1 A2 B2 A3 (tenants A and B, interleaved).
	a1, b1 := newEvent("tenant-a", "device.created"), newEvent("tenant-b", "device.created")
	a2, b2 := newEvent("tenant-a", "device.updated"), newEvent("tenant-b", "device.deleted")
	a3 := newEvent("tenant-a", "ota.rollout.started")
	publish(t, b, a1, b1, a2, b2, a3)

	last, err := b.LastEventSeq(context.Background())
	if err != nil || last != a3.Seq {
		t.Fatalf("LastEventSeq = %d, %v; want %d", last, err, a3.Seq)
	}

	subs := []struct {
		name    string
		tenant  string
		after   uint64
		history []*model.Event // replayed before the live events
	}{
		{"A live only", "tenant-a", 0, nil},
		{"A replay after A1", "tenant-a", a1.Seq, []*model.Event{a2, a3}},
		{"A replay after B2", "tenant-a", b2.Seq, []*model.Event{a3}},
		{"A replay after last", "tenant-a", a3.Seq, nil},
		{"A beyond last", "tenant-a", a3.Seq + 1000, nil},
		{"B replay after A1", "tenant-b", a1.Seq, []*model.Event{b1, b2}},
		{"all replay after B1", "", b1.Seq, []*model.Event{a2, b2, a3}},
	}
	chans := make([]<-chan model.Event, len(subs))
	for i, s := range subs {
		chans[i], _ = collect(t, b, s.tenant, s.after)
	}

	// Live: A4 B3 P1 A5 (P = platform event, no tenant).
	a4, b3 := newEvent("tenant-a", "device.state.changed"), newEvent("tenant-b", "device.created")
	p1, a5 := newEvent("", "platform.maintenance"), newEvent("tenant-a", "device.deleted")
	publish(t, b, a4, b3, p1, a5)
	live := map[string][]*model.Event{"tenant-a": {a4, a5}, "tenant-b": {b3}, "": {a4, b3, p1, a5}}

	for i, s := range subs {
		t.Run(s.name, func(t *testing.T) {
			expect(t, chans[i], append(s.history, live[s.tenant]...)...)
			expectNone(t, chans[i])
		})
	}

	t.Run("stop", func(t *testing.T) {
		ch, stop := collect(t, b, "tenant-a", 0)
		ctx, cancel := context.WithCancel(context.Background())
		ctxCh := make(chan model.Event, 10)
		if _, err := b.SubscribeEvents(ctx, "tenant-a", 0, func(ev model.Event) { ctxCh <- ev }); err != nil {
			t.Fatal(err)
		}
		a6 := newEvent("tenant-a", "device.updated")
		publish(t, b, a6)
		expect(t, ch, a6)
		expect(t, ctxCh, a6)
		stop()
		stop() // idempotent
		cancel()
		publish(t, b, newEvent("tenant-a", "device.updated"))
		expectNone(t, ch)
		expectNone(t, ctxCh)
	})
}

func testDedup(t *testing.T, b *Bus) {
	ctx := context.Background()
	publish(t, b, newEvent("tenant-a", "device.created")) // so that seq1-1 > 0 below
	ev := newEvent("tenant-a", "device.created")
	seq1, err := b.PublishEvent(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	other := newEvent("tenant-a", "device.updated")
	publish(t, b, other)

	// Outbox relay retry: same event again (ev.Seq now set), and a fresh copy.
	retry := *ev
	retry.Seq = 0
	for i, e := range []*model.Event{ev, &retry} {
		seq, err := b.PublishEvent(ctx, e)
		if err != nil || seq != seq1 || e.Seq != seq1 {
			t.Fatalf("republish %d = %d, %v (ev.Seq %d); want original seq %d", i, seq, err, e.Seq, seq1)
		}
	}
	s, err := b.JetStream().Stream(ctx, b.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if st := s.CachedInfo().State; st.Msgs != 3 || st.LastSeq != other.Seq {
		t.Fatalf("stream holds %d msgs, last seq %d; want 3, %d", st.Msgs, st.LastSeq, other.Seq)
	}
	ch, _ := collect(t, b, "tenant-a", seq1-1)
	expect(t, ch, ev, other)
	expectNone(t, ch)
}

// testPublishBatch: PublishEvents stores a batch in order, stops at an
// event it cannot send and reports how many went before it; sending the
// batch again stores only what was missing.
func testPublishBatch(t *testing.T, b *Bus) {
	ctx := context.Background()
	publish(t, b, newEvent("tenant-a", "device.created")) // so that first-1 > 0 below
	evs := []model.Event{*newEvent("tenant-a", "device.created"), *newEvent("tenant-a", "device.updated"),
		*newEvent("tenant-a", "bad type!"), *newEvent("tenant-a", "device.deleted")}
	n, err := b.PublishEvents(ctx, evs)
	if n != 2 || err == nil || !strings.Contains(err.Error(), "invalid event type") {
		t.Fatalf("PublishEvents = %d, %v; want 2 and the bad type's error", n, err)
	}
	if evs[0].Seq == 0 || evs[1].Seq != evs[0].Seq+1 || evs[3].Seq != 0 {
		t.Fatalf("sequences %d %d %d, want consecutive for the first two and none for the last", evs[0].Seq, evs[1].Seq, evs[3].Seq)
	}
	first := evs[0].Seq
	evs[2].Type = "device.updated"
	again := []model.Event{evs[0], evs[1], evs[2], evs[3]}
	for i := range again {
		again[i].Seq = 0
	}
	if n, err := b.PublishEvents(ctx, again); n != 4 || err != nil {
		t.Fatalf("PublishEvents again = %d, %v; want 4, nil", n, err)
	}
	if again[0].Seq != first || again[1].Seq != first+1 || again[2].Seq != first+2 || again[3].Seq != first+3 {
		t.Fatalf("sequences after the retry %d %d %d %d, want %d… consecutive", again[0].Seq, again[1].Seq, again[2].Seq, again[3].Seq, first)
	}
	ch, _ := collect(t, b, "tenant-a", first-1)
	expect(t, ch, &again[0], &again[1], &again[2], &again[3])
	expectNone(t, ch)
	if n, err := b.PublishEvents(ctx, nil); n != 0 || err != nil {
		t.Fatalf("PublishEvents(nil) = %d, %v", n, err)
	}
}

func testConsumeRetry(t *testing.T, b *Bus) {
	bad, good := newEvent("tenant-a", "device.created"), newEvent("tenant-b", "device.created")
	var mu sync.Mutex
	attempts := map[string]int{}
	done := make(chan string, 10)
	stop, err := b.ConsumeEvents(context.Background(), "retry-worker", func(ctx context.Context, ev model.Event) error {
		mu.Lock()
		attempts[ev.ID]++
		n := attempts[ev.ID]
		mu.Unlock()
		if ev.ID == bad.ID && n < 3 {
			return errors.New("downstream unavailable")
		}
		done <- ev.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	publish(t, b, bad, good)

	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case id := <-done:
			got[id] = true
		case <-time.After(waitTimeout):
			t.Fatalf("timeout: handled %v", got)
		}
	}
	waitConsumerIdle(t, b, "retry-worker")
	mu.Lock()
	defer mu.Unlock()
	if attempts[bad.ID] != 3 || attempts[good.ID] != 1 {
		t.Fatalf("attempts: failing event %d (want 3), good event %d (want 1)", attempts[bad.ID], attempts[good.ID])
	}
}

// waitConsumerIdle waits until the durable has delivered and acked everything.
func waitConsumerIdle(t *testing.T, b *Bus, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err := b.JetStream().Consumer(context.Background(), b.StreamName(), durable)
		if err != nil {
			t.Fatal(err)
		}
		info := c.CachedInfo()
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s not idle: pending %d, ack pending %d", durable, info.NumPending, info.NumAckPending)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testConsumeShared(t *testing.T, node1, node2 *Bus) {
	const n = 60
	var mu sync.Mutex
	seen := map[string]int{}
	perNode := [2]int{}
	all := make(chan struct{})
	for i, b := range []*Bus{node1, node2} {
		stop, err := b.ConsumeEvents(context.Background(), "shared-worker", func(ctx context.Context, ev model.Event) error {
			time.Sleep(2 * time.Millisecond) // some work, so that the other node gets a share
			mu.Lock()
			defer mu.Unlock()
			seen[ev.ID]++
			perNode[i]++
			if perNode[0]+perNode[1] == n {
				close(all)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	want := map[string]bool{}
	for range n {
		ev := newEvent("tenant-"+randHex(2), "device.created")
		publish(t, node1, ev)
		want[ev.ID] = true
	}
	select {
	case <-all:
	case <-time.After(waitTimeout):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("timeout: handled %d of %d", perNode[0]+perNode[1], n)
	}
	info := waitConsumerIdle(t, node1, "shared-worker")
	mu.Lock()
	defer mu.Unlock()
	for id, c := range seen {
		if !want[id] || c != 1 {
			t.Errorf("event %s handled %d times (known: %v)", id, c, want[id])
		}
	}
	if len(seen) != n || info.NumRedelivered != 0 {
		t.Errorf("handled %d distinct events (want %d), %d redelivered (want 0)", len(seen), n, info.NumRedelivered)
	}
	if perNode[0] == 0 || perNode[1] == 0 {
		t.Errorf("work not shared: node1 %d, node2 %d", perNode[0], perNode[1])
	}
}

func TestEmbeddedReopen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nested", "js") // created by Open
	b, err := Open(ctx, Config{DataDir: dir, Prefix: "reopen"}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	evs := []*model.Event{newEvent("t1", "device.created"), newEvent("t1", "device.updated"), newEvent("t2", "device.created")}
	publish(t, b, evs...)
	last, err := b.LastEventSeq(ctx)
	if err != nil || last != evs[2].Seq {
		t.Fatalf("LastEventSeq = %d, %v; want %d", last, err, evs[2].Seq)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := b.SubscribeEvents(ctx, "", 0, func(model.Event) {}); err == nil {
		t.Fatal("SubscribeEvents on a closed bus succeeded")
	}

	b2, err := Open(ctx, Config{DataDir: dir, Prefix: "reopen"}, testLog())
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b2.Close()
	if got, err := b2.LastEventSeq(ctx); err != nil || got != last {
		t.Fatalf("LastEventSeq after reopen = %d, %v; want %d", got, err, last)
	}
	ch, _ := collect(t, b2, "t1", 0)
	all, _ := collect(t, b2, "", evs[0].Seq)
	expect(t, all, evs[1], evs[2])
	// Dedup state survives too: the relay retrying after a restart.
	if seq, err := b2.PublishEvent(ctx, evs[1]); err != nil || seq != evs[1].Seq {
		t.Fatalf("republish after reopen = %d, %v; want %d", seq, err, evs[1].Seq)
	}
	a := newEvent("t1", "device.deleted")
	publish(t, b2, a)
	expect(t, ch, a)
	expect(t, all, a)
}

func TestSubscribeAfterPurge(t *testing.T) {
	ctx := context.Background()
	b := embedded(t)(t)
	var evs []*model.Event
	for range 5 {
		ev := newEvent("t1", "device.updated")
		publish(t, b, ev)
		evs = append(evs, ev)
	}
	// Retention dropped the first three: a client resuming from seq 1 gets
	// what is left, starting with the oldest.
	s, err := b.JetStream().Stream(ctx, b.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(evs[3].Seq)); err != nil {
		t.Fatal(err)
	}
	ch, _ := collect(t, b, "t1", evs[0].Seq)
	expect(t, ch, evs[3], evs[4])
	expectNone(t, ch)
}

func TestPrefixCollision(t *testing.T) {
	// Prefixes "a-b" and "a_b" (or "x" and "X") map to one stream name: a
	// stream of that name with other subjects belongs to another deployment
	// and must not be silently rewritten.
	b := embedded(t)(t)
	js := b.JetStream()
	if _, err := js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{Name: "OTHER_EVENTS", Subjects: []string{"x.events.>"}}); err != nil {
		t.Fatal(err)
	}
	bb := &Bus{cfg: Config{Prefix: "other", EventRetention: time.Hour, Replicas: 1}, js: js, stream: "OTHER_EVENTS", log: testLog()}
	if err := bb.ensureStream(context.Background()); err == nil || !strings.Contains(err.Error(), "choose another prefix") {
		t.Fatalf("ensureStream over a foreign stream: err = %v", err)
	}
}

func TestRedactURLs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:secret@h1:4222, nats://tok@h2", "nats://redacted@h1:4222,nats://redacted@h2"},
		{"h3:4222", "nats://h3:4222"},
	}
	for _, tc := range tests {
		if got := redactURLs(tc.in); got != tc.want || strings.Contains(got, "secret") {
			t.Errorf("redactURLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
