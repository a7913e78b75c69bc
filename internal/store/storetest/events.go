package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

func eventIDs(evs []model.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

func testOutbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	pending := func(t *testing.T, limit int) []model.Event {
		t.Helper()
		evs, err := s.PendingEvents(ctx, limit)
		noErr(t, err, "PendingEvents")
		return evs
	}
	if evs := pending(t, 10); len(evs) != 0 {
		t.Fatalf("a new store has pending events %v", eventIDs(evs))
	}
	// IDs out of order: the outbox keeps the order of emission.
	ev := func(id, tenant, typ string, i int, data string) model.Event {
		e := model.Event{ID: id, TenantID: tenant, Type: typ, Subject: "dev-1", Time: at(time.Duration(i) * time.Second)}
		if data != "" {
			e.Data = json.RawMessage(data)
		}
		return e
	}
	first := []model.Event{
		ev("evt-3", tenA, "device.created", 1, `{"serial":"SN-1"}`),
		ev("evt-1", tenA, "device.updated", 2, ""),
	}
	second := []model.Event{ev("evt-2", tenB, "device.state", 3, `{"from":"active","to":"quarantined"}`)}
	emitted := append(append([]model.Event(nil), first...), second...)
	for _, batch := range [][]model.Event{first, second} {
		mustUpdate(t, s, func(tx store.Tx) error {
			for i := range batch {
				if err := tx.Emit(ctx, &batch[i]); err != nil {
					return err
				}
			}
			return nil
		})
	}

	t.Run("pending in order", func(t *testing.T) {
		wantEqual(t, pending(t, 10), emitted, "pending events")
		wantIDs(t, eventIDs(pending(t, 2)), []string{"evt-3", "evt-1"}, "first two pending events")
	})

	t.Run("rolled back emit", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error {
			e := ev("evt-lost", tenA, "device.deleted", 4, "")
			if err := tx.Emit(ctx, &e); err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatalf("Update returned %v, want the callback's error", err)
		}
		wantIDs(t, eventIDs(pending(t, 10)), []string{"evt-3", "evt-1", "evt-2"}, "pending after a rollback")
	})

	t.Run("invalid", func(t *testing.T) {
		for _, e := range []model.Event{{Type: "x"}, {ID: "evt-x"}} {
			err := s.Update(ctx, func(tx store.Tx) error { return tx.Emit(ctx, &e) })
			if err == nil {
				t.Fatalf("Emit of %+v: no error", e)
			}
		}
		dup := ev("evt-1", tenA, "device.updated", 5, "")
		err := s.Update(ctx, func(tx store.Tx) error { return tx.Emit(ctx, &dup) })
		wantErr(t, err, store.ErrConflict, "Emit of a pending event ID")
	})

	t.Run("mark published", func(t *testing.T) {
		noErr(t, s.MarkEventsPublished(ctx, nil), "MarkEventsPublished of nothing")
		noErr(t, s.MarkEventsPublished(ctx, []string{"evt-3", "evt-1", "evt-unknown"}), "MarkEventsPublished")
		wantEqual(t, pending(t, 10), second, "pending after publishing the first two")
		later := ev("evt-0", tenA, "device.created", 6, "")
		mustUpdate(t, s, func(tx store.Tx) error { return tx.Emit(ctx, &later) })
		wantIDs(t, eventIDs(pending(t, 10)), []string{"evt-2", "evt-0"}, "pending after another emit")
		noErr(t, s.MarkEventsPublished(ctx, []string{"evt-0", "evt-2"}), "MarkEventsPublished")
		if evs := pending(t, 10); len(evs) != 0 {
			t.Fatalf("pending after publishing everything: %v", eventIDs(evs))
		}
	})
}

func testWebhooks(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	hooks := []model.Webhook{
		{ID: "wh-2", TenantID: tenA, URL: "https://a.example/hook2", Types: []string{"device.*", "ota.campaign.done"},
			Secret: "s3cret-2", Active: true, CreatedAt: at(time.Minute)},
		{ID: "wh-1", TenantID: tenA, URL: "https://a.example/hook1", Types: []string{}, Secret: "s3cret-1",
			Active: false, CreatedAt: at(2 * time.Minute)},
		{ID: "wh-3", TenantID: tenB, URL: "https://b.example/hook", Types: []string{"device.created"},
			Secret: "s3cret-3", Active: true, CreatedAt: at(3 * time.Minute)},
	}
	mustUpdate(t, s, func(tx store.Tx) error {
		for i := range hooks {
			if err := tx.CreateWebhook(ctx, &hooks[i]); err != nil {
				return err
			}
		}
		return nil
	})

	t.Run("get", func(t *testing.T) {
		for _, w := range hooks {
			got, err := s.GetWebhook(ctx, w.TenantID, w.ID)
			noErr(t, err, "GetWebhook")
			wantEqual(t, *got, w, "webhook "+w.ID)
		}
		_, err := s.GetWebhook(ctx, tenB, "wh-1")
		wantErr(t, err, store.ErrNotFound, "GetWebhook across tenants")
		_, err = s.GetWebhook(ctx, tenA, "wh-missing")
		wantErr(t, err, store.ErrNotFound, "GetWebhook of a missing webhook")
	})

	t.Run("list", func(t *testing.T) {
		got, err := s.ListWebhooks(ctx, tenA)
		noErr(t, err, "ListWebhooks")
		wantEqual(t, got, []model.Webhook{hooks[1], hooks[0]}, "A's webhooks")
		got, err = s.ListWebhooks(ctx, tenB)
		noErr(t, err, "ListWebhooks")
		wantEqual(t, got, []model.Webhook{hooks[2]}, "B's webhooks")
		got, err = s.ListWebhooks(ctx, "ten-none")
		noErr(t, err, "ListWebhooks")
		if len(got) != 0 {
			t.Fatalf("a tenant without webhooks lists %d", len(got))
		}
	})

	t.Run("no types reads back empty", func(t *testing.T) {
		w := model.Webhook{ID: "wh-nil", TenantID: tenB, URL: "https://b.example/all", Secret: "x", Active: true, CreatedAt: base}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.CreateWebhook(ctx, &w) })
		got, err := s.GetWebhook(ctx, tenB, w.ID)
		noErr(t, err, "GetWebhook")
		if got.Types == nil || len(got.Types) != 0 {
			t.Fatalf("webhook without types reads back %#v, want empty", got.Types)
		}
	})

	t.Run("delete", func(t *testing.T) {
		err := s.Update(ctx, func(tx store.Tx) error { return tx.DeleteWebhook(ctx, tenB, "wh-1") })
		wantErr(t, err, store.ErrNotFound, "DeleteWebhook across tenants")
		if _, err := s.GetWebhook(ctx, tenA, "wh-1"); err != nil {
			t.Fatalf("webhook gone after a delete across tenants: %v", err)
		}
		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteWebhook(ctx, tenA, "wh-1") })
		_, err = s.GetWebhook(ctx, tenA, "wh-1")
		wantErr(t, err, store.ErrNotFound, "GetWebhook after delete")
		err = s.Update(ctx, func(tx store.Tx) error { return tx.DeleteWebhook(ctx, tenA, "wh-1") })
		wantErr(t, err, store.ErrNotFound, "second DeleteWebhook")
		got, err := s.ListWebhooks(ctx, tenA)
		noErr(t, err, "ListWebhooks")
		wantEqual(t, got, []model.Webhook{hooks[0]}, "A's webhooks after delete")
	})
}

func deliveryIDs(ds []model.WebhookDelivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprint(d.ID))
	}
	return out
}

func testDeliveries(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	mustUpdate(t, s, func(tx store.Tx) error {
		for _, w := range []model.Webhook{
			{ID: "wh-a1", TenantID: tenA, URL: "https://a.example/1", Secret: "x", Active: true, CreatedAt: base},
			{ID: "wh-a2", TenantID: tenA, URL: "https://a.example/2", Secret: "x", Active: true, CreatedAt: base},
			{ID: "wh-b1", TenantID: tenB, URL: "https://b.example/1", Secret: "x", Active: true, CreatedAt: base},
		} {
			if err := tx.CreateWebhook(ctx, &w); err != nil {
				return err
			}
		}
		return nil
	})
	dl := func(hook, tenant, event string, next time.Duration) model.WebhookDelivery {
		return model.WebhookDelivery{WebhookID: hook, TenantID: tenant, EventID: event, EventType: "device.created",
			Payload: []byte(`{"event":"` + event + `"}`), NextAttempt: ptr(at(next)), CreatedAt: base}
	}
	list := func(t *testing.T, tenant, hook string) []model.WebhookDelivery {
		t.Helper()
		ds, next, err := s.ListDeliveries(ctx, tenant, hook, store.ListOptions{Limit: 1000})
		noErr(t, err, "ListDeliveries")
		if next != "" {
			t.Fatal("one page of 1000 has a next cursor")
		}
		return ds
	}
	due := func(t *testing.T, now time.Duration, limit int) []string {
		t.Helper()
		ds, err := s.DueDeliveries(ctx, at(now), limit)
		noErr(t, err, "DueDeliveries")
		var out []string
		for _, d := range ds {
			if d.Status != "pending" {
				t.Fatalf("DueDeliveries returned a delivery with status %q", d.Status)
			}
			out = append(out, d.WebhookID+"/"+d.EventID)
		}
		return out
	}

	noErr(t, s.EnqueueDeliveries(ctx, []model.WebhookDelivery{
		dl("wh-a1", tenA, "evt-1", time.Minute),
		dl("wh-a1", tenA, "evt-2", 5*time.Minute),
		dl("wh-a2", tenA, "evt-1", 20*time.Minute),
	}), "EnqueueDeliveries")

	t.Run("enqueue is idempotent", func(t *testing.T) {
		again := dl("wh-a1", tenA, "evt-1", time.Minute)
		again.Payload = []byte(`{"changed":true}`)
		noErr(t, s.EnqueueDeliveries(ctx, []model.WebhookDelivery{again, dl("wh-b1", tenB, "evt-9", 2*time.Minute)}),
			"EnqueueDeliveries with a repeat")
		noErr(t, s.EnqueueDeliveries(ctx, nil), "EnqueueDeliveries of nothing")
		ds := list(t, tenA, "wh-a1")
		if len(ds) != 2 {
			t.Fatalf("wh-a1 has %d deliveries after a repeated enqueue, want 2", len(ds))
		}
		for _, d := range ds {
			want := `{"event":"` + d.EventID + `"}`
			if string(d.Payload) != want || d.Status != "pending" || d.Attempts != 0 || d.TenantID != tenA || d.ID == 0 {
				t.Fatalf("queued delivery: %+v (payload %s)", d, d.Payload)
			}
		}
		if n := len(list(t, tenB, "wh-b1")); n != 1 {
			t.Fatalf("wh-b1 has %d deliveries, want 1", n)
		}
		// The same event for another webhook is a separate delivery.
		if n := len(list(t, tenA, "wh-a2")); n != 1 {
			t.Fatalf("wh-a2 has %d deliveries, want 1", n)
		}
	})

	t.Run("due", func(t *testing.T) {
		if got := due(t, 0, 10); len(got) != 0 {
			t.Fatalf("due before any next attempt: %v", got)
		}
		// Oldest due first, across tenants (the dispatcher serves them all).
		wantIDs(t, due(t, 10*time.Minute, 10), []string{"wh-a1/evt-1", "wh-b1/evt-9", "wh-a1/evt-2"}, "due at +10m")
		wantIDs(t, due(t, 10*time.Minute, 2), []string{"wh-a1/evt-1", "wh-b1/evt-9"}, "due at +10m, limit 2")
		wantIDs(t, due(t, 5*time.Minute, 10), []string{"wh-a1/evt-1", "wh-b1/evt-9", "wh-a1/evt-2"}, "due exactly at +5m")
		wantIDs(t, due(t, 30*time.Minute, 10),
			[]string{"wh-a1/evt-1", "wh-b1/evt-9", "wh-a1/evt-2", "wh-a2/evt-1"}, "due at +30m")
	})

	t.Run("update", func(t *testing.T) {
		byEvent := map[string]model.WebhookDelivery{}
		for _, d := range list(t, tenA, "wh-a1") {
			byEvent[d.EventID] = d
		}
		retry := byEvent["evt-1"]
		retry.Attempts, retry.LastCode, retry.LastError = 1, 503, "503 Service Unavailable"
		retry.NextAttempt, retry.UpdatedAt = ptr(at(40*time.Minute)), at(10*time.Minute)
		noErr(t, s.UpdateDelivery(ctx, &retry), "UpdateDelivery (retry later)")
		done := byEvent["evt-2"]
		done.Attempts, done.Status, done.LastCode, done.NextAttempt, done.UpdatedAt = 1, "delivered", 204, nil, at(10*time.Minute)
		noErr(t, s.UpdateDelivery(ctx, &done), "UpdateDelivery (delivered)")
		b := list(t, tenB, "wh-b1")[0]
		b.Attempts, b.Status, b.LastError, b.NextAttempt, b.UpdatedAt = 8, "failed", "gave up", nil, at(10*time.Minute)
		noErr(t, s.UpdateDelivery(ctx, &b), "UpdateDelivery (failed)")

		wantIDs(t, due(t, 30*time.Minute, 10), []string{"wh-a2/evt-1"}, "due at +30m after the updates")
		wantIDs(t, due(t, 50*time.Minute, 10), []string{"wh-a2/evt-1", "wh-a1/evt-1"}, "due at +50m")
		wantIDs(t, due(t, 1000*time.Hour, 10), []string{"wh-a2/evt-1", "wh-a1/evt-1"}, "due much later")

		for _, d := range list(t, tenA, "wh-a1") {
			want := map[string]model.WebhookDelivery{"evt-1": retry, "evt-2": done}[d.EventID]
			wantEqual(t, d, want, "delivery "+d.EventID+" after update")
		}
		wantEqual(t, list(t, tenB, "wh-b1")[0], b, "B's delivery after update")

		err := s.UpdateDelivery(ctx, &model.WebhookDelivery{Status: "pending"})
		if err == nil {
			t.Fatal("UpdateDelivery without an ID: no error")
		}
		wantErr(t, s.UpdateDelivery(ctx, &model.WebhookDelivery{ID: 1 << 40, Status: "pending"}), store.ErrNotFound,
			"UpdateDelivery of a missing delivery")
	})

	t.Run("list newest first", func(t *testing.T) {
		var more []model.WebhookDelivery
		for i := range 7 {
			more = append(more, dl("wh-a1", tenA, fmt.Sprintf("evt-1%d", i), time.Hour))
		}
		noErr(t, s.EnqueueDeliveries(ctx, more), "EnqueueDeliveries")
		all := list(t, tenA, "wh-a1")
		if len(all) != 9 {
			t.Fatalf("wh-a1 lists %d deliveries, want 9", len(all))
		}
		if !slices.IsSortedFunc(all, func(a, b model.WebhookDelivery) int { return int(b.ID - a.ID) }) {
			t.Fatalf("deliveries not newest first: %v", deliveryIDs(all))
		}
		if all[0].EventID != "evt-16" || all[len(all)-1].EventID != "evt-1" {
			t.Fatalf("newest is %s and oldest %s, want evt-16 and evt-1", all[0].EventID, all[len(all)-1].EventID)
		}
		for _, limit := range []int{1, 2, 4, 9} {
			got := walk(t, limit, func(d model.WebhookDelivery) string { return fmt.Sprint(d.ID) },
				func(c string) ([]model.WebhookDelivery, string, error) {
					return s.ListDeliveries(ctx, tenA, "wh-a1", store.ListOptions{Limit: limit, Cursor: c})
				})
			wantIDs(t, got, deliveryIDs(all), fmt.Sprintf("deliveries by pages of %d", limit))
		}
		if ds := list(t, tenB, "wh-a1"); len(ds) != 0 {
			t.Fatalf("B lists %d of A's deliveries", len(ds))
		}
		for _, c := range garbageCursors {
			_, _, err := s.ListDeliveries(ctx, tenA, "wh-a1", store.ListOptions{Cursor: c})
			wantErr(t, err, store.ErrBadCursor, "ListDeliveries with a garbage cursor")
		}
	})

	t.Run("delete webhook drops its deliveries", func(t *testing.T) {
		mustUpdate(t, s, func(tx store.Tx) error { return tx.DeleteWebhook(ctx, tenA, "wh-a1") })
		if ds := list(t, tenA, "wh-a1"); len(ds) != 0 {
			t.Fatalf("a deleted webhook lists %d deliveries", len(ds))
		}
		wantIDs(t, due(t, 1000*time.Hour, 100), []string{"wh-a2/evt-1"}, "due after deleting wh-a1")
	})
}

func testIdempotency(t *testing.T, s store.Store) {
	ctx := t.Context()
	rec := func(scope, key, hash string) *store.IdempotencyRecord {
		// CreatedAt is now: the store may treat an old unfinished
		// reservation as abandoned.
		return &store.IdempotencyRecord{Scope: scope, Key: key, RequestHash: []byte(hash),
			CreatedAt: time.Now().UTC().Truncate(time.Second)}
	}
	reserve := func(t *testing.T, r *store.IdempotencyRecord) *store.IdempotencyRecord {
		t.Helper()
		got, err := s.ReserveIdempotency(ctx, r)
		noErr(t, err, "ReserveIdempotency")
		return got
	}
	first := rec("key-1", "idem-1", "hash-1")
	if got := reserve(t, first); got != nil {
		t.Fatalf("first reservation returned %+v, want nil (reserved)", got)
	}

	t.Run("in flight", func(t *testing.T) {
		got := reserve(t, rec("key-1", "idem-1", "hash-other"))
		if got == nil {
			t.Fatal("second reservation of a key in flight returned nil")
		}
		if got.Status != 0 || got.Scope != "key-1" || got.Key != "idem-1" || string(got.RequestHash) != "hash-1" ||
			len(got.Body) != 0 || !got.CreatedAt.Equal(first.CreatedAt) {
			t.Fatalf("record of a key in flight: %+v", got)
		}
	})

	t.Run("scopes are separate", func(t *testing.T) {
		if got := reserve(t, rec("key-2", "idem-1", "hash-2")); got != nil {
			t.Fatalf("the same key in another scope returned %+v, want nil", got)
		}
	})

	t.Run("complete then replay", func(t *testing.T) {
		done := *first
		done.Status, done.Body = 201, []byte(`{"id":"dev-1"}`)
		noErr(t, s.CompleteIdempotency(ctx, &done), "CompleteIdempotency")
		got := reserve(t, rec("key-1", "idem-1", "hash-1"))
		if got == nil || got.Status != 201 || string(got.Body) != `{"id":"dev-1"}` || string(got.RequestHash) != "hash-1" {
			t.Fatalf("replayed record: %+v", got)
		}
	})

	t.Run("release", func(t *testing.T) {
		// A finished answer is kept.
		noErr(t, s.ReleaseIdempotency(ctx, "key-1", "idem-1"), "ReleaseIdempotency of a finished key")
		if got := reserve(t, rec("key-1", "idem-1", "hash-1")); got == nil || got.Status != 201 {
			t.Fatalf("a finished key after release: %+v", got)
		}
		// An unfinished reservation is dropped, so the key can be used again.
		noErr(t, s.ReleaseIdempotency(ctx, "key-2", "idem-1"), "ReleaseIdempotency")
		if got := reserve(t, rec("key-2", "idem-1", "hash-3")); got != nil {
			t.Fatalf("reserving a released key returned %+v, want nil", got)
		}
		if got := reserve(t, rec("key-2", "idem-1", "hash-4")); got == nil || string(got.RequestHash) != "hash-3" {
			t.Fatalf("the new reservation: %+v", got)
		}
		noErr(t, s.ReleaseIdempotency(ctx, "key-none", "idem-none"), "ReleaseIdempotency of an unknown key")
	})
}
