package httpapi

import (
	"context"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humachi"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/sse"
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
	ctx := hctx.Context()
	// Streams never finish on their own: end them when the server shuts
	// down so a graceful stop does not wait for its timeout.
	err := sse.Serve(ctx, w, a.Bus, tenant, after, sse.Options{Heartbeat: heartbeat, Done: a.streams.Done()})
	if err != nil {
		logFrom(ctx).Error("events: subscribe", "err", err)
		huma.WriteErr(a.huma, hctx, http.StatusServiceUnavailable, "cannot subscribe to events; retry shortly")
	}
}

// CloseStreams ends every open event stream; the server calls it when a
// graceful shutdown begins.
func (a *API) CloseStreams() { a.closeStreams() }
