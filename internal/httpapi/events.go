package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humachi"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
)

type eventsIn struct {
	LastEventID string `header:"Last-Event-ID" doc:"Resume after this event (browsers send it on reconnect)."`
	After       string `query:"after" doc:"Same as Last-Event-ID, for clients that cannot set headers."`
}

// heartbeat keeps idle streams open through proxies.
const heartbeat = 20 * time.Second

func (a *API) routesEvents() {
	schema := a.huma.OpenAPI().Components.Schemas.Schema(reflect.TypeOf(model.Event{}), true, "Event")
	op := huma.Operation{OperationID: "streamEvents", Method: http.MethodGet, Path: Prefix + "/events",
		Summary: "Live domain events (Server-Sent Events)",
		Description: "Each SSE message carries one event as JSON; its id is the bus sequence. Reconnect with " +
			"Last-Event-ID to receive what was missed (events are kept 7 days). Platform admins without " +
			TenantHeader + " see every tenant. Comment lines (\": ping\") are heartbeats.",
		Responses: map[string]*huma.Response{"200": {Description: "An endless text/event-stream of events.",
			Content: map[string]*huma.MediaType{"text/event-stream": {Schema: schema}}}}}
	reg(a, op, access{perm: authz.EventsRead}, func(ctx context.Context, in *eventsIn) (*huma.StreamResponse, error) {
		if a.Bus == nil {
			return nil, huma.Error503ServiceUnavailable("the event bus is not running")
		}
		var after uint64
		for _, s := range []string{in.LastEventID, in.After} {
			if s == "" {
				continue
			}
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, huma.Error400BadRequest("Last-Event-ID must be the id of an event this stream sent")
			}
			after = v
		}
		tenant := tenantOf(ctx)
		return &huma.StreamResponse{Body: func(hctx huma.Context) { a.stream(hctx, tenant, after) }}, nil
	})
}

func (a *API) stream(hctx huma.Context, tenant string, after uint64) {
	_, w := humachi.Unwrap(hctx)
	ctx, cancel := context.WithCancel(hctx.Context())
	defer cancel()
	// Streams never finish on their own: end them when the server shuts
	// down so a graceful stop does not wait for its timeout.
	stopOnClose := context.AfterFunc(a.streams, cancel)
	defer stopOnClose()
	ch := make(chan model.Event, 256)
	stop, err := a.Bus.SubscribeEvents(ctx, tenant, after, func(ev model.Event) {
		select {
		case ch <- ev:
		case <-ctx.Done():
		}
	})
	if err != nil {
		logFrom(ctx).Error("events: subscribe", "err", err)
		huma.WriteErr(a.huma, hctx, http.StatusServiceUnavailable, "cannot subscribe to events; retry shortly")
		return
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
		return
	}
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
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
			if !write(": ping\n\n") {
				return
			}
		}
	}
}

// CloseStreams ends every open event stream; the server calls it when a
// graceful shutdown begins.
func (a *API) CloseStreams() { a.closeStreams() }
