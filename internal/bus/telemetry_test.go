package bus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestTelemetryEmbedded(t *testing.T) { runTelemetrySuite(t, embedded) }

func TestTelemetryExternal(t *testing.T) {
	requireExternal(t)
	runTelemetrySuite(t, external)
}

func runTelemetrySuite(t *testing.T, dep func(*testing.T) deployment) {
	t.Run("Stream", func(t *testing.T) { testTelemetryStream(t, dep(t)(t)) })
	t.Run("Validation", func(t *testing.T) { testTelemetryValidation(t, dep(t)(t)) })
	t.Run("ConsumeRetryReject", func(t *testing.T) { testTelemetryConsume(t, dep(t)(t)) })
	t.Run("Shared", func(t *testing.T) {
		d := dep(t)
		testTelemetryShared(t, d(t), d(t))
	})
	t.Run("StopGivesBack", func(t *testing.T) { testTelemetryStop(t, dep(t)(t)) })
}

func testTelemetryStream(t *testing.T, b *Bus) {
	s, err := b.JetStream().Stream(context.Background(), b.TelemetryStreamName())
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if want := strings.ToUpper(strings.ReplaceAll(b.cfg.Prefix, "-", "_")) + "_TELEMETRY"; cfg.Name != want {
		t.Errorf("stream name %s, want %s", cfg.Name, want)
	}
	if len(cfg.Subjects) != 1 || cfg.Subjects[0] != b.cfg.Prefix+".telemetry.>" {
		t.Errorf("subjects %v", cfg.Subjects)
	}
	if cfg.Retention != jetstream.WorkQueuePolicy || cfg.Storage != jetstream.FileStorage || cfg.MaxAge != 24*time.Hour {
		t.Errorf("retention %v storage %v max age %v, want work queue, file, 24h", cfg.Retention, cfg.Storage, cfg.MaxAge)
	}
}

func testTelemetryValidation(t *testing.T, b *Bus) {
	ctx := context.Background()
	for _, c := range []struct{ tenant, device, want string }{
		{"", "d1", "invalid tenant"},
		{"_platform", "d1", "invalid tenant"},
		{"t.1", "d1", "invalid tenant"},
		{"t1", "", "invalid device"},
		{"t1", "d.1", "invalid device"},
		{"t1", "*", "invalid device"},
	} {
		if _, err := b.PublishTelemetry(ctx, c.tenant, c.device, []byte("x")); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("PublishTelemetry(%q, %q): err = %v, want %q", c.tenant, c.device, err, c.want)
		}
	}
	if n := telemetryMsgs(t, b); n != 0 {
		t.Errorf("%d messages stored after refused publishes", n)
	}
	if _, err := b.ConsumeTelemetry(ctx, nil); err == nil {
		t.Error("ConsumeTelemetry(nil) accepted")
	}
}

func telemetryMsgs(t *testing.T, b *Bus) uint64 {
	t.Helper()
	s, err := b.JetStream().Stream(context.Background(), b.TelemetryStreamName())
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

func publishTelemetry(t *testing.T, b *Bus, device string, n int) []string {
	t.Helper()
	var acks []TelemetryAck
	var want []string
	for i := range n {
		data := fmt.Sprintf("%s-%d", device, i)
		a, err := b.PublishTelemetry(context.Background(), "t1", device, []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		acks, want = append(acks, a), append(want, data)
	}
	for i, a := range acks {
		if err := a.Wait(); err != nil {
			t.Fatalf("message %d not stored: %v", i, err)
		}
	}
	return want
}

type got struct {
	mu   sync.Mutex
	msgs map[string][]uint64 // data → delivery counts seen
	n    int
	more chan struct{}
}

func newGot() *got { return &got{msgs: map[string][]uint64{}, more: make(chan struct{}, 1)} }

func (g *got) add(m *TelemetryMsg) {
	g.mu.Lock()
	g.msgs[string(m.Data)] = append(g.msgs[string(m.Data)], m.Delivered)
	g.n++
	g.mu.Unlock()
	select {
	case g.more <- struct{}{}:
	default:
	}
}

// wait waits until n deliveries were seen.
func (g *got) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		g.mu.Lock()
		k := g.n
		g.mu.Unlock()
		if k >= n {
			return
		}
		select {
		case <-g.more:
		case <-deadline:
			t.Fatalf("%d of %d deliveries after %s", k, n, waitTimeout)
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testTelemetryConsume(t *testing.T, b *Bus) {
	ctx := context.Background()
	want := publishTelemetry(t, b, "d1", 20)
	// A message on a subject no device can have is dropped, not handed on.
	if err := b.Conn().Publish(b.Subject("telemetry", "t1"), []byte("odd")); err != nil {
		t.Fatal(err)
	}
	want = append(want, publishTelemetry(t, b, "d2", 1)...)
	g := newGot()
	stop, err := b.ConsumeTelemetry(ctx, func(_ context.Context, m *TelemetryMsg) {
		g.add(m)
		switch {
		case m.TenantID != "t1" || !strings.HasPrefix(string(m.Data), m.DeviceID+"-"):
			t.Errorf("message %q for tenant %q device %q", m.Data, m.TenantID, m.DeviceID)
			m.Ack()
		case string(m.Data) == "d1-3" && m.Delivered == 1:
			m.Retry(fmt.Errorf("store down"))
		case string(m.Data) == "d1-4":
			m.Reject(fmt.Errorf("undecodable"))
		default:
			m.Ack()
			m.Ack() // settling twice is harmless
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	g.wait(t, len(want)+1)
	eventually(t, "the stream to empty", func() bool { return telemetryMsgs(t, b) == 0 })
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, w := range want {
		d := g.msgs[w]
		switch {
		case w == "d1-3":
			if len(d) != 2 || d[0] != 1 || d[1] != 2 {
				t.Errorf("retried message delivered %v, want [1 2]", d)
			}
		case len(d) != 1 || d[0] != 1:
			t.Errorf("message %s delivered %v, want [1]", w, d)
		}
	}
	if _, ok := g.msgs["odd"]; ok || len(g.msgs) != len(want) {
		t.Errorf("got %d distinct messages, want %d", len(g.msgs), len(want))
	}
}

func testTelemetryShared(t *testing.T, b1, b2 *Bus) {
	ctx := context.Background()
	var mu sync.Mutex
	per := map[*Bus]int{}
	g := newGot()
	for _, b := range []*Bus{b1, b2} {
		stop, err := b.ConsumeTelemetry(ctx, func(_ context.Context, m *TelemetryMsg) {
			mu.Lock()
			per[b]++
			mu.Unlock()
			g.add(m)
			m.Ack()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	var want []string
	for i := range 20 {
		want = append(want, publishTelemetry(t, b1, fmt.Sprintf("d%d", i), 50)...)
	}
	g.wait(t, len(want))
	eventually(t, "the stream to empty", func() bool { return telemetryMsgs(t, b1) == 0 })
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, w := range want {
		if d := g.msgs[w]; len(d) != 1 {
			t.Errorf("message %s delivered %d times", w, len(d))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if b1 != b2 && (per[b1] == 0 || per[b2] == 0) {
		t.Errorf("work not shared: %d and %d messages", per[b1], per[b2])
	}
	t.Logf("consumers took %d and %d messages", per[b1], per[b2])
}

// testTelemetryStop: stop waits for the messages fn holds to be settled;
// the rest of the stream is left for others.
func testTelemetryStop(t *testing.T, b *Bus) {
	ctx := context.Background()
	want := publishTelemetry(t, b, "d1", 100)
	held := make(chan *TelemetryMsg, len(want))
	stop, err := b.ConsumeTelemetry(ctx, func(_ context.Context, m *TelemetryMsg) { held <- m })
	if err != nil {
		t.Fatal(err)
	}
	first := <-held
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	first.Ack()
	var acked int
	for done := false; !done; {
		select {
		case m := <-held:
			m.Ack()
			acked++
		case <-stopped:
			done = true
		case <-time.After(waitTimeout):
			t.Fatal("stop did not return")
		}
	}
	for len(held) > 0 { // taken just before the stop
		(<-held).Ack()
		acked++
	}
	left := uint64(len(want) - 1 - acked)
	eventually(t, fmt.Sprintf("%d messages left in the stream", left), func() bool { return telemetryMsgs(t, b) == left })
	g := newGot()
	stop, err = b.ConsumeTelemetry(ctx, func(_ context.Context, m *TelemetryMsg) { g.add(m); m.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	g.wait(t, len(want)-1-acked)
	eventually(t, "the stream to empty", func() bool { return telemetryMsgs(t, b) == 0 })
}
