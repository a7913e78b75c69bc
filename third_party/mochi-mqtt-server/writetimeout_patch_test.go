package mqtt

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestWriteTimeoutWhileReading: a write to a client that keeps sending but
// no longer reads fails after ClientWriteTimeout. Its packets keep moving
// the read (keepalive) deadline; before the patch they moved the write
// deadline too, and the write waited for as long as the client sent.
func TestWriteTimeoutWhileReading(t *testing.T) {
	s := New(&Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ClientWriteTimeout: 200 * time.Millisecond})
	if err := s.AddHook(new(disconnects), nil); err != nil {
		t.Fatal(err)
	}
	srv, peer := net.Pipe() // unbuffered: a peer that does not read blocks every write
	defer peer.Close()
	go s.EstablishConnection("t", srv)

	connect := []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'c', '1'}
	if _, err := peer.Write(connect); err != nil {
		t.Fatal(err)
	}
	if b := readN(t, peer, 4); b[0] != 0x20 || b[3] != 0 {
		t.Fatalf("CONNACK %x", b)
	}
	var cl *Client
	for i := 0; cl == nil && i < 500; i++ {
		if c, ok := s.Clients.Get("c1"); ok {
			cl = c
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if cl == nil {
		t.Fatal("client c1 not found")
	}

	// QoS 0 publishes, which get no answer, every 10 ms; never a read.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		publish := []byte{0x30, 6, 0, 3, 'a', '/', 'b', 'x'}
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if _, err := peer.Write(publish); err != nil {
				return
			}
		}
	}()

	done := make(chan error, 1)
	go func() {
		done <- cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a/b", Payload: []byte("x")})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write to a client that does not read: %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write to a client that does not read is still waiting after 5 s (its reads moved the deadline)")
	}
}
