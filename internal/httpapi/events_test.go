package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// TestEventStream: the tenant's SSE stream carries device.created and
// device.state_changed; a client that reconnects with Last-Event-ID gets
// exactly what it missed, with no gap and no duplicate.
func TestEventStream(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, srv *testserver.Server) {
		ten := srv.CreateTenant(t, "events")
		p := srv.CreateProduct(t, ten.ID)
		key := ten.Admin.Secret
		transition := func(id, to string) {
			srv.Must(t, http.StatusOK, testserver.Req{Method: http.MethodPost, Path: api + "/devices/" + id + "/transitions",
				Key: key, Body: map[string]any{"to": to, "reason": "events test"}})
		}
		type want struct{ typ, subject, to string }
		match := func(t *testing.T, got []testserver.SSEEvent, wants []want) {
			t.Helper()
			if len(got) != len(wants) {
				t.Fatalf("got %d events, want %d: %v", len(got), len(wants), summary(got))
			}
			for i, w := range wants {
				ev := got[i].Event
				var data struct {
					To string `json:"to"`
				}
				json.Unmarshal(ev.Data, &data)
				if ev.Type != w.typ || ev.Subject != w.subject || data.To != w.to || ev.TenantID != ten.ID {
					t.Fatalf("event %d is %s %s (to %q, tenant %s), want %s %s (to %q):\nall: %v", i, ev.Type, ev.Subject,
						data.To, ev.TenantID, w.typ, w.subject, w.to, summary(got))
				}
				if got[i].ID != strconv.FormatUint(ev.Seq, 10) || ev.ID == "" {
					t.Fatalf("event %d: SSE id %q, seq %d, event id %q", i, got[i].ID, ev.Seq, ev.ID)
				}
			}
		}
		collect := func(st *testserver.Stream, n int) []testserver.SSEEvent {
			t.Helper()
			var out []testserver.SSEEvent
			for len(out) < n {
				ev, ok := st.Next(10 * time.Second)
				if !ok {
					t.Fatalf("got %d events, want %d: %v", len(out), n, summary(out))
				}
				out = append(out, ev)
			}
			// Nothing more than asked for.
			if ev, ok := st.Next(100 * time.Millisecond); ok {
				t.Fatalf("unexpected extra event %s %s after %v", ev.Event.Type, ev.Event.Subject, summary(out))
			}
			return out
		}

		// Settle: the tenant's own setup events may still be on their way
		// out of the outbox; wait until a marker event is through.
		warm := srv.Events(t, testserver.StreamOpts{Key: key})
		marker := srv.CreateProduct(t, ten.ID)
		if _, ok := warm.Until(10*time.Second, func(ev testserver.SSEEvent) bool { return ev.Event.Subject == marker.ID }); !ok {
			t.Fatalf("the marker event did not arrive")
		}
		warm.Close()

		st := srv.Events(t, testserver.StreamOpts{Key: key})
		d := srv.CreateDevice(t, ten.ID, p.ID)
		transition(d.ID, "claimed")
		first := collect(st, 2)
		match(t, first, []want{{"device.created", d.ID, ""}, {"device.state_changed", d.ID, "claimed"}})
		st.Close()

		// Missed while disconnected.
		transition(d.ID, "provisioned")
		d2 := srv.CreateDevice(t, ten.ID, p.ID)
		transition(d.ID, "active")
		missed := []want{{"device.state_changed", d.ID, "provisioned"}, {"device.created", d2.ID, ""},
			{"device.state_changed", d.ID, "active"}}

		last := first[len(first)-1].ID
		resumed := srv.Events(t, testserver.StreamOpts{Key: key, LastEventID: last})
		// Events made after reconnecting follow the missed ones.
		transition(d.ID, "quarantined")
		got := collect(resumed, 4)
		match(t, got, append(missed, want{"device.state_changed", d.ID, "quarantined"}))
		seen := map[string]bool{}
		for _, ev := range append(first, got...) {
			if seen[ev.Event.ID] {
				t.Fatalf("event %s delivered twice", ev.Event.ID)
			}
			seen[ev.Event.ID] = true
		}
		resumed.Close()

		// The same resume through ?after=, from the very first event: the
		// whole history in one piece equals the two pieces seen above.
		before, _ := strconv.ParseUint(first[0].ID, 10, 64)
		all := srv.Events(t, testserver.StreamOpts{Key: key, After: strconv.FormatUint(before-1, 10)})
		whole := collect(all, 6)
		for i, ev := range append(first, got...) {
			if whole[i].Event.ID != ev.Event.ID || whole[i].ID != ev.ID {
				t.Fatalf("replay from the start differs at %d: %v vs %v", i, summary(whole), summary(append(first, got...)))
			}
		}
	})
}

func summary(evs []testserver.SSEEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID + ":" + ev.Event.Type + ":" + ev.Event.Subject
	}
	return out
}
