package mqtt

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// parkConn parks whenever offered and hands the resume function to the
// test, which plays the part of the connection's poller.
type parkConn struct {
	net.Conn
	parks chan func()
}

func (c *parkConn) Park(resume func()) bool {
	c.parks <- resume
	return true
}

// disconnects records the errors OnDisconnect saw.
type disconnects struct {
	HookBase
	mu   sync.Mutex
	errs []error
}

func (h *disconnects) ID() string { return "disconnects" }
func (h *disconnects) Provides(b byte) bool {
	return b == OnConnectAuthenticate || b == OnACLCheck || b == OnDisconnect
}
func (h *disconnects) OnConnectAuthenticate(*Client, packets.Packet) bool { return true }
func (h *disconnects) OnACLCheck(*Client, string, bool) bool              { return true }
func (h *disconnects) OnDisconnect(_ *Client, err error, _ bool) {
	h.mu.Lock()
	h.errs = append(h.errs, err)
	h.mu.Unlock()
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func nextPark(t *testing.T, c *parkConn) func() {
	t.Helper()
	select {
	case r := <-c.parks:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the read loop did not offer to park")
		return nil
	}
}

// TestParkedReadLoop covers the parking read loop: EstablishConnection
// returns once the connection parks, a parked connection holds no read
// buffer, a resumed loop reads and answers the next packet, and a
// connection closed while parked ends, when resumed, as a closed
// connection does (an error, so the will would be sent), with the
// connected count and the clients' wait group settled.
func TestParkedReadLoop(t *testing.T) {
	h := new(disconnects)
	s := New(&Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	srv, peer := net.Pipe()
	defer peer.Close()
	pc := &parkConn{Conn: srv, parks: make(chan func(), 1)}
	established := make(chan error, 1)
	go func() { established <- s.EstablishConnection("t", pc) }()

	// CONNECT (3.1.1, clean session, keepalive 60 s, client "c1").
	connect := []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'c', '1'}
	if _, err := peer.Write(connect); err != nil {
		t.Fatal(err)
	}
	if b := readN(t, peer, 4); b[0] != 0x20 || b[3] != 0 {
		t.Fatalf("CONNACK %x", b)
	}
	resume := nextPark(t, pc)
	select {
	case err := <-established:
		if err != nil {
			t.Fatalf("EstablishConnection of a parked connection: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("EstablishConnection did not return when the connection parked")
	}
	if n := atomic.LoadInt64(&s.Info.ClientsConnected); n != 1 {
		t.Fatalf("%d clients connected while parked, want 1", n)
	}
	cl, ok := s.Clients.Get("c1")
	if !ok {
		t.Fatal("client c1 not found")
	}
	if cl.Net.bconn != nil {
		t.Fatal("a parked connection kept its read buffer")
	}

	// A PINGREQ arrives: the resumed loop reads it and answers.
	go peer.Write([]byte{0xC0, 0})
	go resume()
	if b := readN(t, peer, 2); b[0] != 0xD0 {
		t.Fatalf("PINGRESP %x", b)
	}
	resume = nextPark(t, pc)
	if cl.Net.bconn != nil {
		t.Fatal("the connection parked again kept its read buffer")
	}

	// Closed while parked, then resumed as the connection would.
	cl.Stop(errors.New("revoked"))
	go resume()
	done := make(chan struct{})
	go func() { s.Listeners.ClientsWg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the resumed loop of a closed connection did not end the client")
	}
	if n := atomic.LoadInt64(&s.Info.ClientsConnected); n != 0 {
		t.Fatalf("%d clients connected after the end, want 0", n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.errs) != 1 || h.errs[0] == nil {
		t.Fatalf("OnDisconnect saw %v, want one error (a closed connection, not a clean DISCONNECT)", h.errs)
	}
}
