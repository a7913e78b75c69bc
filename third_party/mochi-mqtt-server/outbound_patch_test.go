package mqtt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// allowACL lets every client read every topic.
type allowACL struct{ HookBase }

func (h *allowACL) ID() string { return "allow-acl" }
func (h *allowACL) Provides(b byte) bool {
	return b == OnACLCheck
}
func (h *allowACL) OnACLCheck(*Client, string, bool) bool { return true }

// outboundClient is a connected client of a server whose outbound queue
// holds at most pending packets, and the peer end of its connection.
func outboundClient(t *testing.T, pending int32) (*Server, *Client, net.Conn) {
	t.Helper()
	caps := NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = pending
	s := New(&Options{Capabilities: caps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(new(allowACL), nil); err != nil {
		t.Fatal(err)
	}
	srv, peer := net.Pipe()
	t.Cleanup(func() { srv.Close(); peer.Close() })
	cl := s.NewClient(srv, "t", "c1", false)
	cl.Properties.ProtocolVersion = 4
	t.Cleanup(func() { cl.Stop(nil) })
	return s, cl, peer
}

// writerState reads whether a writing goroutine runs and the queue's
// length and capacity.
func writerState(cl *Client) (writing bool, queued, capacity int) {
	cl.State.outMu.Lock()
	defer cl.State.outMu.Unlock()
	return cl.State.outWriting, len(cl.State.outQueue) - cl.State.outHead, cap(cl.State.outQueue)
}

// readPublishes decodes n PUBLISH packets from r and returns their payloads.
func readPublishes(t *testing.T, br *bufio.Reader, n int) []string {
	t.Helper()
	var got []string
	for i := 0; i < n; i++ {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("after %d packets: %v", len(got), err)
		}
		var fh packets.FixedHeader
		if err := fh.Decode(b); err != nil {
			t.Fatal(err)
		}
		rem, _, err := packets.DecodeLength(br)
		if err != nil {
			t.Fatal(err)
		}
		fh.Remaining = rem
		body := make([]byte, rem)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
		pk := packets.Packet{FixedHeader: fh, ProtocolVersion: 4}
		if err := pk.PublishDecode(body); err != nil {
			t.Fatal(err)
		}
		got = append(got, string(pk.Payload))
	}
	return got
}

// TestOutboundQueueLazy covers the patched outbound queue: nothing is
// kept for an idle client, queued packets leave in order, and the writing
// goroutine and a large queue go away once everything is written.
func TestOutboundQueueLazy(t *testing.T) {
	s, cl, peer := outboundClient(t, 1000)
	if w, q, c := writerState(cl); w || q != 0 || c != 0 {
		t.Fatalf("a new client has a writer (%v) or a queue (%d of %d)", w, q, c)
	}
	const n = 300
	var want []string
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("m%03d", i)
		want = append(want, p)
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a/b", Payload: []byte(p)}
		if _, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b"}, pk); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	br := bufio.NewReader(peer)
	got := readPublishes(t, br, n)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("packet %d is %q, want %q (out of order)", i, got[i], want[i])
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, q, c := writerState(cl)
		if !w && q == 0 && c <= 16 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the burst: writer %v, %d queued, capacity %d", w, q, c)
		}
		time.Sleep(time.Millisecond)
	}

	// The writer starts again for the next packet.
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a/b", Payload: []byte("again")}
	if _, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b"}, pk); err != nil {
		t.Fatal(err)
	}
	if got := readPublishes(t, br, 1); got[0] != "again" {
		t.Fatalf("got %q after idling", got[0])
	}
}

// waitTaken waits until the writer has taken every queued packet.
func waitTaken(t *testing.T, cl *Client) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, q, _ := writerState(cl); q == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer does not take the queued packet")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestOutboundQueueBounded: a queue that never empties, because the next
// packet always arrives before the writer is done, keeps a small array.
func TestOutboundQueueBounded(t *testing.T) {
	s, cl, peer := outboundClient(t, 4)
	br := bufio.NewReader(peer)
	pub := func(i int) {
		t.Helper()
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a/b", Payload: []byte(fmt.Sprint(i))}
		if _, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b"}, pk); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	pub(0) // the writer takes it and blocks on the unread pipe
	for i := 1; i <= 1000; i++ {
		waitTaken(t, cl)
		pub(i)
		if got := readPublishes(t, br, 1)[0]; got != fmt.Sprint(i-1) {
			t.Fatalf("got %s, want %d", got, i-1)
		}
		if _, _, c := writerState(cl); c > 16 {
			t.Fatalf("after %d packets the queue's array holds %d", i, c)
		}
	}
}

// TestOutboundQueueFull: a client that does not read gets at most
// MaximumClientWritesPending packets queued; the rest are refused as the
// library refused them, and a closed client's queue is let go.
func TestOutboundQueueFull(t *testing.T) {
	s, cl, peer := outboundClient(t, 4)
	pub := func(i int) error {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a/b", Payload: []byte{byte(i)}}
		_, err := s.publishToClient(cl, packets.Subscription{Filter: "a/b"}, pk)
		return err
	}
	// The first packet is taken by the writer, which then blocks on the
	// unread pipe; four more fill the queue.
	if err := pub(0); err != nil {
		t.Fatal(err)
	}
	waitTaken(t, cl)
	for i := 1; i <= 4; i++ {
		if err := pub(i); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	if err := pub(5); !errors.Is(err, packets.ErrPendingClientWritesExceeded) {
		t.Fatalf("a fifth queued packet: %v, want %v", err, packets.ErrPendingClientWritesExceeded)
	}
	if got := s.Info.MessagesDropped; got != 1 {
		t.Fatalf("%d messages dropped, want 1", got)
	}

	cl.Stop(errors.New("test"))
	peer.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, q, _ := writerState(cl)
		if !w && q == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after close: writer %v, %d queued", w, q)
		}
		time.Sleep(time.Millisecond)
	}
}
