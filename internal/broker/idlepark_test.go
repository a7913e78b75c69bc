//go:build linux

package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// parkPair is a TLS connection whose server side is an idleConn that
// parks after parkAfter; the client side is returned to write to.
func parkPair(t *testing.T, parkAfter time.Duration) (*idleConn, *tls.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	dialed := make(chan *tls.Conn, 1)
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true}) // test only: self-signed
		if err != nil {
			t.Error(err)
			close(dialed)
			return
		}
		dialed <- c
	}()
	c := acceptIdle(t, ln, cfg, parkAfter)
	client := <-dialed
	if client == nil {
		t.FailNow()
	}
	t.Cleanup(func() { client.Close() })
	t.Cleanup(func() { c.Close() })
	return c, client
}

// readSome reads what the client sent last; a short read leaves the
// connection drained, as between two packets.
func readSome(t *testing.T, c *idleConn, want string) {
	t.Helper()
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != want {
		t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
	}
}

func isParked(c *idleConn) bool {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.parked.active()
}

// waitResume waits for a parked connection's reader to be resumed.
func waitResume(t *testing.T, resumed chan struct{}, why string) {
	t.Helper()
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatalf("not resumed after %s", why)
	}
}

// TestParkIdleConn covers parking: only when drained and idle for
// parkAfter, never with data waiting, and every way out of it — data, the
// read deadline, closing — resumes the reader once, which then reads as a
// waiting read would have.
func TestParkIdleConn(t *testing.T) {
	c, client := parkPair(t, 20*time.Millisecond)
	resumed := make(chan struct{}, 4)
	resume := func() { resumed <- struct{}{} }

	if c.Park(resume) {
		t.Fatal("parked before any read: TLS may hold data")
	}
	client.Write([]byte("a"))
	readSome(t, c, "a")

	// Data already waiting: no parking, the read takes it.
	client.Write([]byte("b"))
	time.Sleep(50 * time.Millisecond)
	if c.Park(resume) {
		t.Fatal("parked with data waiting")
	}
	readSome(t, c, "b")

	// Idle: parks; data resumes it, once.
	if !c.Park(resume) || !isParked(c) {
		t.Fatal("an idle, drained connection did not park")
	}
	client.Write([]byte("c"))
	waitResume(t, resumed, "data arrived")
	if isParked(c) {
		t.Fatal("still registered after resuming")
	}
	readSome(t, c, "c")

	// The read deadline passes while parked: resumed, and the read says so.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if !c.Park(resume) {
		t.Fatal("did not park before a far deadline")
	}
	waitResume(t, resumed, "the deadline passed")
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the deadline woke it: %v", err)
	}
	// A deadline nearer than parkAfter: no parking.
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if c.Park(resume) {
		t.Fatal("parked although the deadline comes first")
	}

	// Closed while parked: resumed, and the read fails.
	c.SetReadDeadline(time.Time{})
	if !c.Park(resume) {
		t.Fatal("did not park without a deadline")
	}
	c.Close()
	waitResume(t, resumed, "close")
	if _, err := c.Read(make([]byte, 8)); err == nil {
		t.Fatal("read on a closed connection succeeded")
	}
	if c.Park(resume) {
		t.Fatal("a closed connection parked")
	}
	select {
	case <-resumed:
		t.Fatal("resumed more than once")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestParkOff: a zero or negative delay never parks.
func TestParkOff(t *testing.T) {
	c, client := parkPair(t, 0)
	client.Write([]byte("a"))
	readSome(t, c, "a")
	if c.Park(func() {}) {
		t.Fatal("parked with parking off")
	}
}

// TestParkSeesDataAfterLook: data that arrives after Park looked and found
// nothing, but before it starts waiting, ends the wait at once. The
// socket is edge-triggered: had the look been made before the poller's
// read, which forgets readiness reported earlier, the wait would miss the
// data and last the whole parkAfter, and the connection would then park
// with a packet waiting.
func TestParkSeesDataAfterLook(t *testing.T) {
	c, client := parkPair(t, time.Minute)
	client.Write([]byte("a"))
	readSome(t, c, "a")
	afterLook = func() {
		client.Write([]byte("b"))
		time.Sleep(50 * time.Millisecond) // for the runtime's poller to see it
	}
	t.Cleanup(func() { afterLook = nil })
	resumed := make(chan struct{}, 1)
	if c.Park(func() { resumed <- struct{}{} }) {
		t.Fatal("parked although data came during the look")
	}
	if !c.ready {
		t.Fatal("Park did not report the data it waited for")
	}
	readSome(t, c, "b")
}

// TestIdleConnReset: a connection reset while the reader waits ends the
// read with the reset, not with a clean end (looking at the socket takes
// nothing from it, not even the error).
func TestIdleConnReset(t *testing.T) {
	c, client := parkPair(t, time.Minute)
	client.Write([]byte("a"))
	readSome(t, c, "a")
	tcp := client.NetConn().(*net.TCPConn)
	if err := tcp.SetLinger(0); err != nil { // close with a reset
		t.Fatal(err)
	}
	tcp.Close()
	time.Sleep(50 * time.Millisecond) // the reset arrives before the read looks
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after a reset: %v, want %v", err, syscall.ECONNRESET)
	}
}

// TestParkReleasesTLS: a parked connection holds neither TLS's input
// buffers nor the client certificate, and reads on when data comes.
func TestParkReleasesTLS(t *testing.T) {
	var rec *recordConn
	server, client := mtlsPair(t, func(c net.Conn) net.Conn { rec = newRecordConn(c); return rec })
	c, ok := newIdleConn(server, rec, 20*time.Millisecond).(*idleConn)
	if !ok {
		t.Fatal("a TCP connection was not wrapped")
	}
	done := watch(server.ConnectionState().PeerCertificates[0])
	resumed := make(chan struct{}, 1)
	for i, msg := range []string{"first", "second"} {
		if _, err := client.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		readSome(t, c, msg)
		if r, _, h := held(server); r == 0 || (i == 0 && h == 0) {
			t.Fatalf("round %d: record buffer %d, handshake buffer %d bytes before parking: nothing measured", i, r, h)
		}
		if !c.Park(func() { resumed <- struct{}{} }) {
			t.Fatalf("round %d: an idle connection did not park", i)
		}
		released(t, server, fmt.Sprintf("round %d, parked", i))
		if i == 0 && !collected(done) {
			t.Fatal("parked with the client certificate still reachable")
		}
		if _, err := client.Write([]byte("wake")); err != nil {
			t.Fatal(err)
		}
		waitResume(t, resumed, "data arrived")
		readSome(t, c, "wake")
	}
}
