package web

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/sse"
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
	// A signed-out or disabled user's stream ends at the next heartbeat.
	keep := func(ctx context.Context) bool {
		if s, err := d.Store.GetSession(ctx, v.sess.ID); err != nil || time.Now().After(s.ExpiresAt) {
			return false
		}
		u, err := d.Store.GetUser(ctx, v.user.TenantID, v.user.ID)
		return err == nil && !u.Disabled()
	}
	err := sse.Serve(r.Context(), w, d.Bus, v.tenant.ID, after, sse.Options{Heartbeat: heartbeat, Keep: keep, Done: d.done})
	if err != nil {
		d.Log.Error("dashboard events: subscribing", "err", err)
		http.Error(w, "cannot subscribe to events; retry shortly", http.StatusServiceUnavailable)
	}
}
