package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
)

// heartbeat keeps idle streams open through proxies and is when the
// stream checks that its session is still valid.
var heartbeat = 20 * time.Second

// events streams the tenant's domain events to the page as Server-Sent
// Events, for the session that is signed in: the same events as the API's
// stream, authenticated by the session cookie instead of an API key.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	v := visitFrom(r.Context())
	if !v.can(authz.EventsRead) {
		http.Error(w, "your role may not read events", http.StatusForbidden)
		return
	}
	if v.tenant == nil || d.Bus == nil {
		// Nothing to stream; 204 tells EventSource not to reconnect.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var after uint64
	for _, s := range []string{r.URL.Query().Get("after"), r.Header.Get("Last-Event-ID")} {
		if s == "" {
			continue
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			http.Error(w, "after / Last-Event-ID must be an event id", http.StatusBadRequest)
			return
		}
		after = n
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ch := make(chan model.Event, 256)
	stop, err := d.Bus.SubscribeEvents(ctx, v.tenant.ID, after, func(ev model.Event) {
		select {
		case ch <- ev:
		case <-ctx.Done():
		}
	})
	if err != nil {
		d.Log.Error("dashboard events: subscribing", "err", err)
		http.Error(w, "cannot subscribe to events; retry shortly", http.StatusServiceUnavailable)
		return
	}
	defer stop()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
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
		return
	}
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.done:
			return
		case ev := <-ch:
			b, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			if !write("id: " + strconv.FormatUint(ev.Seq, 10) + "\ndata: " + string(b) + "\n\n") {
				return
			}
		case <-t.C:
			// A signed-out or disabled user's stream ends here at the latest.
			if s, err := d.Store.GetSession(ctx, v.sess.ID); err != nil || time.Now().After(s.ExpiresAt) {
				return
			}
			if u, err := d.Store.GetUser(ctx, v.user.TenantID, v.user.ID); err != nil || u.Disabled() {
				return
			}
			if !write(": ping\n\n") {
				return
			}
		}
	}
}
