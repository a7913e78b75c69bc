package telemetry

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

// TestIngesterQueueFull: with the writer not keeping up, a message waits
// for room at most QueueWait and is then refused with ErrBusy; once the
// writer runs, everything it took is written.
func TestIngesterQueueFull(t *testing.T) {
	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "s.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in := NewIngester(st, nil, IngestOptions{Queue: 2, QueueWait: 50 * time.Millisecond})
	at := time.Now().UTC().Truncate(time.Microsecond)
	pt := func(i int) []model.TelemetryPoint {
		return []model.TelemetryPoint{{TenantID: "t", DeviceID: "d", Metric: "m", Time: at.Add(time.Duration(i) * time.Millisecond),
			Kind: model.KindNumber, Num: float64(i)}}
	}
	ctx := context.Background()
	for i := range 2 { // the writer is not running yet: these fill the queue
		if err := in.Enqueue(ctx, pt(i)); err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
	}
	start := time.Now()
	if err := in.Enqueue(ctx, pt(2)); !errors.Is(err, ErrBusy) {
		t.Fatalf("enqueue into a full queue: got %v, want ErrBusy", err)
	}
	t.Logf("a full queue refused after %v", time.Since(start).Round(time.Millisecond))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := in.WriteThen(cctx, pt(3), func(error) {}); !errors.Is(err, context.Canceled) {
		t.Fatalf("enqueue with a cancelled context into a full queue: got %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); in.Run(runCtx) }()
	if err := in.Write(ctx, pt(4)); err != nil {
		t.Fatalf("write once the writer runs: %v", err)
	}
	stop()
	<-done
	if got := in.Points.Load(); got != 3 {
		t.Fatalf("%d points written, want 3 (two queued and the one written)", got)
	}
}
