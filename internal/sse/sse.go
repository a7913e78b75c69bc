// Package sse streams a tenant's domain events from the bus to an HTTP
// client as Server-Sent Events. The API (key-authenticated) and the
// dashboard (session-authenticated) both serve their streams through it.
package sse

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/model"
)

// Options tune a stream.
type Options struct {
	// Heartbeat is how often a comment line keeps idle connections open.
	Heartbeat time.Duration
	// Keep is asked at every heartbeat whether the stream may go on (for
	// example, the session is still valid); nil means always.
	Keep func(ctx context.Context) bool
	// Done ends the stream when closed (server shutdown).
	Done <-chan struct{}
}

// Serve subscribes to the tenant's events after sequence `after` ("" tenant
// = every tenant) and writes them to w until the client leaves, ctx ends,
// Done closes or Keep says no. It returns an error only when the
// subscription fails, before anything was written, so the caller can still
// answer with an error status.
func Serve(ctx context.Context, w http.ResponseWriter, b *bus.Bus, tenant string, after uint64, o Options) error {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 20 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan model.Event, 256)
	stop, err := b.SubscribeEvents(ctx, tenant, after, func(ev model.Event) {
		select {
		case ch <- ev:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return err
	}
	defer stop()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(s string) bool {
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := fmt.Fprint(w, s); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write(": connected\nretry: 3000\n\n") {
		return nil
	}
	t := time.NewTicker(o.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.Done:
			return nil
		case ev := <-ch:
			data, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			if !write("id: " + strconv.FormatUint(ev.Seq, 10) + "\ndata: " + string(data) + "\n\n") {
				return nil
			}
		case <-t.C:
			if o.Keep != nil && !o.Keep(ctx) {
				return nil
			}
			if !write(": ping\n\n") {
				return nil
			}
		}
	}
}
