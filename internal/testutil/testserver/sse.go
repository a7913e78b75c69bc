package testserver

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// SSEEvent is one Server-Sent Events message of /api/v1/events.
type SSEEvent struct {
	ID    string // the SSE id (bus sequence)
	Data  string
	Event model.Event // Data decoded
}

// Stream is an open /api/v1/events stream.
type Stream struct {
	// C delivers the stream's events in order; it is closed when the
	// stream ends.
	C      <-chan SSEEvent
	cancel context.CancelFunc
	done   chan struct{}
}

// StreamOpts select what an event stream resumes from.
type StreamOpts struct {
	Key    string
	Tenant string // X-Steward-Tenant
	// LastEventID is sent as the Last-Event-ID header when not empty.
	LastEventID string
	// After is sent as the ?after= query parameter when not empty.
	After string
}

// Events opens the event stream and returns once the server has
// subscribed (its ": connected" comment arrived), so every event committed
// afterwards is delivered. A non-200 answer fails the test; OpenEvents
// returns it instead.
func (s *Server) Events(t testing.TB, o StreamOpts) *Stream {
	t.Helper()
	st, res, err := s.OpenEvents(o)
	if err != nil {
		t.Fatalf("opening the event stream: %v", err)
	}
	if st == nil {
		t.Fatalf("opening the event stream: want 200, got %s", res)
	}
	t.Cleanup(st.Close)
	return st
}

// OpenEvents is Events without a test. When the answer is not 200 it
// returns a nil stream and the answer. The caller must Close the stream.
func (s *Server) OpenEvents(o StreamOpts) (*Stream, *Resp, error) {
	ctx, cancel := context.WithCancel(context.Background())
	u := s.URL + APIPrefix + "/events"
	if o.After != "" {
		u += "?after=" + url.QueryEscape(o.After)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if o.Key != "" {
		req.Header.Set("Authorization", "Bearer "+o.Key)
	}
	if o.Tenant != "" {
		req.Header.Set("X-Steward-Tenant", o.Tenant)
	}
	if o.LastEventID != "" {
		req.Header.Set("Last-Event-ID", o.LastEventID)
	}
	// No client timeout: the stream is endless; ctx ends it.
	resp, err := (&http.Client{Transport: s.HTTP.Transport}).Do(req)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, &Resp{Status: resp.StatusCode, Header: resp.Header, Raw: raw}, nil
	}
	rd := bufio.NewReader(resp.Body)
	// Wait for the subscription to be in place.
	connected := make(chan error, 1)
	go func() {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				connected <- err
				return
			}
			if strings.HasPrefix(line, ": connected") {
				connected <- nil
				return
			}
		}
	}()
	select {
	case err = <-connected:
	case <-time.After(10 * time.Second):
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		resp.Body.Close()
		return nil, nil, err
	}
	ch := make(chan SSEEvent, 1024)
	st := &Stream{C: ch, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(st.done)
		defer close(ch)
		defer resp.Body.Close()
		var ev SSEEvent
		var data []string
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case line == "":
				if len(data) > 0 {
					ev.Data = strings.Join(data, "\n")
					json.Unmarshal([]byte(ev.Data), &ev.Event)
					select {
					case ch <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev, data = SSEEvent{}, nil
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id:"):
				ev.ID = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
			case strings.HasPrefix(line, "data:"):
				data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
			}
		}
	}()
	return st, nil, nil
}

// Close ends the stream; it may be called more than once.
func (st *Stream) Close() {
	st.cancel()
	<-st.done
}

// Next waits up to d for the next event.
func (st *Stream) Next(d time.Duration) (SSEEvent, bool) {
	select {
	case ev, ok := <-st.C:
		return ev, ok
	case <-time.After(d):
		return SSEEvent{}, false
	}
}

// Until collects events until one satisfies stop (included) or d passes;
// it reports whether stop was met.
func (st *Stream) Until(d time.Duration, stop func(SSEEvent) bool) ([]SSEEvent, bool) {
	deadline := time.After(d)
	var out []SSEEvent
	for {
		select {
		case ev, ok := <-st.C:
			if !ok {
				return out, false
			}
			out = append(out, ev)
			if stop(ev) {
				return out, true
			}
		case <-deadline:
			return out, false
		}
	}
}

// Eventually polls cond every few milliseconds until it holds or timeout
// passes, then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(wait)
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}
