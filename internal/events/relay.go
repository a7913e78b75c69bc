// Package events moves domain events from the store's outbox onto the bus.
// Changes write their events in the same transaction (the outbox); the
// relay publishes them after commit and deletes them once the bus has
// acknowledged, so an event is neither lost on a crash nor published for a
// change that rolled back. A crash between publish and delete re-publishes
// the same event ID, which the bus deduplicates.
package events

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/store"
)

// Relay drains the outbox to the bus.
type Relay struct {
	st       store.Store
	bus      *bus.Bus
	log      *slog.Logger
	interval time.Duration
	kick     chan struct{}
	mu       sync.Mutex
	lastErr  error
}

// NewRelay returns a relay polling every interval (and whenever kicked).
func NewRelay(st store.Store, b *bus.Bus, log *slog.Logger, interval time.Duration) *Relay {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	return &Relay{st: st, bus: b, log: log, interval: interval, kick: make(chan struct{}, 1)}
}

// Kick asks the relay to look at the outbox now.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends, then makes a last pass so events committed
// just before shutdown go out.
func (r *Relay) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.Flush(final)
			cancel()
			return
		case <-t.C:
		case <-r.kick:
		}
		r.Flush(ctx)
	}
}

// Flush publishes everything pending now; it returns the first error.
func (r *Relay) Flush(ctx context.Context) error {
	for {
		evs, err := r.st.PendingEvents(ctx, 200)
		if err == nil && len(evs) == 0 {
			r.setErr(nil)
			return nil
		}
		if err != nil {
			return r.fail(err)
		}
		// One round trip for the batch; what follows a failed event stays
		// in the outbox and is sent again with it next time.
		n, pubErr := r.bus.PublishEvents(ctx, evs)
		done := make([]string, n)
		for i := range done {
			done[i] = evs[i].ID
		}
		if err := r.st.MarkEventsPublished(ctx, done); err != nil {
			return r.fail(err)
		}
		if pubErr != nil {
			return r.fail(pubErr)
		}
	}
}

func (r *Relay) fail(err error) error {
	r.mu.Lock()
	first := r.lastErr == nil
	r.lastErr = err
	r.mu.Unlock()
	if first {
		r.log.Warn("event relay: publishing the outbox failed; will retry", "err", err)
	}
	return err
}

func (r *Relay) setErr(err error) {
	r.mu.Lock()
	if r.lastErr != nil && err == nil {
		r.log.Info("event relay: recovered")
	}
	r.lastErr = err
	r.mu.Unlock()
}

// Err is the last failure, or nil when the relay is healthy.
func (r *Relay) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}
