package mqtt

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestTakeoverDuringDetach: a client reconnects with the same ID (clean
// session) while its old connection is ending. The old session's cleanup
// decided to remove its subscriptions (it was not taken over) before the
// new one registered; the new session then takes over and subscribes
// before the removal goes on. The new session must keep its subscription
// and its place among the clients. Before the patch the removal, by client
// ID, took the new session's subscription: the new connection stayed up
// and received nothing.
func TestTakeoverDuringDetach(t *testing.T) {
	s := New(&Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	newClient := func() *Client {
		c, _ := net.Pipe()
		t.Cleanup(func() { c.Close() })
		cl := s.NewClient(c, "t", "dev1", false)
		cl.Properties.ProtocolVersion = 4
		cl.Properties.Clean = true
		return cl
	}
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{Clean: true, ClientIdentifier: "dev1"}}
	sub := packets.Subscription{Filter: "d/dev1/commands/+", Qos: 1}
	subscribe := func(cl *Client) {
		s.Topics.Subscribe(cl.ID, sub)
		cl.State.Subscriptions.Add(sub.Filter, sub)
	}

	old := newClient()
	s.registerClient(connect, old)
	subscribe(old)

	cur := newClient()
	registered := make(chan struct{})
	unsubscribeGap = func() {
		unsubscribeGap = nil
		go func() { // the new session arrives while the old one is ending
			s.registerClient(connect, cur)
			subscribe(cur)
			close(registered)
		}()
		select {
		case <-registered: // without the session lock it gets in here
		case <-time.After(100 * time.Millisecond):
		}
	}
	defer func() { unsubscribeGap = nil }()
	_ = s.detachClient(old, "t", io.EOF)
	select {
	case <-registered:
	case <-time.After(5 * time.Second):
		t.Fatal("the new session did not register")
	}

	if got, ok := s.Clients.Get("dev1"); !ok || got != cur {
		t.Fatalf("the clients hold %p (present %v), want the new session %p", got, ok, cur)
	}
	if subs := s.Topics.Subscribers("d/dev1/commands/reboot"); len(subs.Subscriptions) != 1 {
		t.Fatalf("subscribers of the new session's topic: %d, want 1", len(subs.Subscriptions))
	}
	if !old.IsTakenOver() && !old.Closed() {
		t.Fatal("the old session is neither taken over nor closed")
	}
}
