package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// Writer is where points go (the store).
type Writer interface {
	WriteTelemetry(ctx context.Context, points []model.TelemetryPoint) error
}

var (
	// ErrClosed: the ingester has stopped taking points.
	ErrClosed = errors.New("telemetry: ingester stopped")
	// ErrBusy: the queue stayed full for QueueWait; the store is not
	// keeping up (or not answering).
	ErrBusy = errors.New("telemetry: the store is not keeping up; the write queue stayed full")
)

// IngestOptions tune batching.
type IngestOptions struct {
	// MaxBatch is the most points one transaction writes (default 2000).
	MaxBatch int
	// Linger is how long a batch of QoS 0 points waits for more before it
	// is written (default 5ms).
	Linger time.Duration
	// WaitLinger is the same for a batch whose first point somebody waits
	// for (QoS 1; default 1ms): long enough to gather what the devices
	// publish meanwhile into one commit, short against a network round trip.
	WaitLinger time.Duration
	// Queue is how many messages may wait for the writer (default 16384,
	// a burst of a few tenths of a second); beyond that, submitting blocks:
	// back-pressure onto the publishing devices.
	Queue int
	// Retries of a failed write before its points are given up (default 3).
	Retries int
	// QueueWait is the longest a message waits for room in a full queue
	// before it is refused with ErrBusy (default 15s).
	QueueWait time.Duration
}

// Ingester batches points from many devices into few transactions: group
// commit. Points of QoS 1 messages are acknowledged (Write returns) only
// after the transaction holding them committed.
type Ingester struct {
	w    Writer
	log  *slog.Logger
	o    IngestOptions
	ch   chan *batchReq
	done chan struct{}
	stop atomic.Bool

	// Counters, for metrics and benchmarks.
	Points  atomic.Int64 // points written
	Batches atomic.Int64 // transactions committed
	Dropped atomic.Int64 // points given up after failed writes
}

type batchReq struct {
	pts  []model.TelemetryPoint
	done chan error // nil: nobody waits (QoS 0)
	// then, when set, is called on the writer's goroutine after the
	// commit (or the final failure), in submission order; it must not block.
	then func(error)
}

// NewIngester returns an ingester writing to w; Run makes it work.
func NewIngester(w Writer, log *slog.Logger, o IngestOptions) *Ingester {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 2000
	}
	if o.Linger <= 0 {
		o.Linger = 5 * time.Millisecond
	}
	if o.WaitLinger <= 0 {
		o.WaitLinger = time.Millisecond
	}
	if o.Queue <= 0 {
		o.Queue = 16384
	}
	if o.QueueWait <= 0 {
		o.QueueWait = 15 * time.Second
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ingester{w: w, log: log, o: o, ch: make(chan *batchReq, o.Queue), done: make(chan struct{})}
}

// Write stores pts durably and returns once they are committed.
func (in *Ingester) Write(ctx context.Context, pts []model.TelemetryPoint) error {
	r := &batchReq{pts: pts, done: make(chan error, 1)}
	if err := in.submit(ctx, r); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WriteThen hands pts to the writer and calls then(err) once they are
// committed (err nil) or given up. Calls happen on the writer's goroutine
// in submission order and must not block. While the queue is full it
// waits for room, at most QueueWait.
func (in *Ingester) WriteThen(ctx context.Context, pts []model.TelemetryPoint, then func(error)) error {
	return in.submit(ctx, &batchReq{pts: pts, then: then})
}

// Enqueue hands pts to the writer without waiting for the commit. It
// blocks while the queue is full.
func (in *Ingester) Enqueue(ctx context.Context, pts []model.TelemetryPoint) error {
	return in.submit(ctx, &batchReq{pts: pts})
}

func (in *Ingester) submit(ctx context.Context, r *batchReq) error {
	if in.stop.Load() {
		return ErrClosed
	}
	select {
	case in.ch <- r:
		return nil
	default:
	}
	// The queue is full: back-pressure, for at most QueueWait.
	t := time.NewTimer(in.o.QueueWait)
	defer t.Stop()
	select {
	case in.ch <- r:
		return nil
	case <-in.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ErrBusy
	}
}

// Run writes batches until ctx ends, then writes what is still queued.
func (in *Ingester) Run(ctx context.Context) {
	defer close(in.done)
	var reqs []*batchReq
	var pts []model.TelemetryPoint
	for {
		var first *batchReq
		select {
		case first = <-in.ch:
		case <-ctx.Done():
			in.stop.Store(true)
			in.drain()
			return
		}
		reqs, pts = append(reqs[:0], first), append(pts[:0], first.pts...)
		// Collect more for a moment: a little for batches somebody waits
		// for (QoS 1: the PUBACK follows the commit), longer otherwise.
		linger := in.o.Linger
		if first.done != nil || first.then != nil {
			linger = in.o.WaitLinger
		}
		timer := time.NewTimer(linger)
	collect:
		for len(pts) < in.o.MaxBatch {
			select {
			case r := <-in.ch:
				reqs, pts = append(reqs, r), append(pts, r.pts...)
			case <-timer.C:
				break collect
			case <-ctx.Done():
				break collect
			}
		}
		timer.Stop()
		in.flush(context.WithoutCancel(ctx), reqs, pts)
	}
}

// drain writes everything still queued at shutdown.
func (in *Ingester) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		var reqs []*batchReq
		var pts []model.TelemetryPoint
	more:
		for len(pts) < in.o.MaxBatch {
			select {
			case r := <-in.ch:
				reqs, pts = append(reqs, r), append(pts, r.pts...)
			default:
				break more
			}
		}
		if len(reqs) == 0 {
			return
		}
		in.flush(ctx, reqs, pts)
	}
}

func (in *Ingester) flush(ctx context.Context, reqs []*batchReq, pts []model.TelemetryPoint) {
	var err error
	for attempt := 0; attempt < in.o.Retries; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
		}
		if err = in.w.WriteTelemetry(ctx, pts); err == nil {
			break
		}
		in.log.Warn("writing telemetry failed", "points", len(pts), "attempt", attempt+1, "err", err)
	}
	if err == nil {
		in.Points.Add(int64(len(pts)))
		in.Batches.Add(1)
	} else {
		in.Dropped.Add(int64(len(pts)))
		in.log.Error("telemetry batch given up", "points", len(pts), "err", err)
	}
	for _, r := range reqs {
		if r.done != nil {
			r.done <- err
		}
		if r.then != nil {
			r.then(err)
		}
	}
}
