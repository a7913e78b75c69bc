package events

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

func setup(t *testing.T) (*sqlstore.DB, *bus.Bus) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(dir, "s.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := bus.Open(t.Context(), bus.Config{DataDir: filepath.Join(dir, "bus"), Prefix: "relaytest"}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return st, b
}

func emit(t *testing.T, st store.Store, ids ...string) {
	t.Helper()
	err := st.Update(t.Context(), func(tx store.Tx) error {
		for _, id := range ids {
			if err := tx.Emit(t.Context(), &model.Event{ID: id, TenantID: "ten_a", Type: "device.created", Subject: "dev_" + id}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRelayPublishesInOrderOnce(t *testing.T) {
	st, b := setup(t)
	r := NewRelay(st, b, slog.Default(), time.Hour)
	var ids []string
	for i := 0; i < 450; i++ { // more than one batch
		ids = append(ids, fmt.Sprintf("evt_%04d", i))
	}
	emit(t, st, ids...)
	// A crash after publishing but before deleting from the outbox: the
	// first event is already on the bus when the relay runs.
	pending, _ := st.PendingEvents(t.Context(), 1)
	if _, err := b.PublishEvent(t.Context(), &pending[0]); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if left, _ := st.PendingEvents(t.Context(), 10); len(left) != 0 {
		t.Fatalf("%d events left in the outbox", len(left))
	}
	last, _ := b.LastEventSeq(t.Context())
	if last != uint64(len(ids)) {
		t.Fatalf("bus holds %d events, want %d (deduplicated)", last, len(ids))
	}
	got := make(chan model.Event, len(ids))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stop, err := b.SubscribeEvents(ctx, "ten_a", 1, func(ev model.Event) { got <- ev })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// Replay from after seq 1: events 2..N in the order they were written.
	for i := 1; i < len(ids); i++ {
		select {
		case ev := <-got:
			if ev.ID != ids[i] {
				t.Fatalf("event %d is %s, want %s", i, ev.ID, ids[i])
			}
		case <-ctx.Done():
			t.Fatalf("only %d events replayed", i-1)
		}
	}
}

func TestRolledBackChangeEmitsNothing(t *testing.T) {
	st, b := setup(t)
	err := st.Update(t.Context(), func(tx store.Tx) error {
		tx.Emit(t.Context(), &model.Event{ID: "evt_x", TenantID: "ten_a", Type: "device.created"})
		return fmt.Errorf("abort")
	})
	if err == nil {
		t.Fatal("expected the abort")
	}
	r := NewRelay(st, b, slog.Default(), time.Hour)
	if err := r.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if last, _ := b.LastEventSeq(t.Context()); last != 0 {
		t.Fatalf("a rolled-back change published %d events", last)
	}
}
