package broker

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Most device connections are idle most of the time, and an idle
// connection's cost is mostly the stack of the goroutine waiting for its
// next packet. Waiting inside crypto/tls parks that goroutine under a deep
// chain of frames, which keeps its stack at twice the size it needs. So a
// TLS connection whose buffers are empty waits for the socket to become
// readable first, in a shallow frame, and only then reads through TLS.
//
// Knowing that TLS holds nothing takes two parts: recordConn, below TLS,
// never gives it bytes past the end of the record it is reading, so TLS
// keeps no further record buffered; idleConn, above TLS, knows that TLS's
// plaintext is used up when a read returned less than was asked.

// recordConn hands the bytes of a TLS record stream to crypto/tls without
// crossing the end of the current record. It reads the socket ahead into a
// pooled buffer, held only while it has unread bytes, so the record limit
// costs no extra system call.
type recordConn struct {
	net.Conn // the TCP connection
	buf      *[]byte
	pending  []byte // read from the socket, not yet given to TLS
	hdr      [5]byte
	hdrLeft  int // bytes of the record header still to give; 5 at a record boundary
	bodyLeft int // bytes of the record body still to give
}

const readAheadSize = 2048

var readAhead = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}

func newRecordConn(c net.Conn) *recordConn { return &recordConn{Conn: c, hdrLeft: 5} }

func (c *recordConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.pending) == 0 {
		if c.buf == nil {
			c.buf = readAhead.Get().(*[]byte)
		}
		n, err := c.Conn.Read(*c.buf)
		if n == 0 {
			c.release()
			return 0, err
		}
		c.pending = (*c.buf)[:n]
		// An error with data: the data first, the error on the next read.
	}
	limit := c.bodyLeft
	if c.hdrLeft > 0 {
		limit = c.hdrLeft
	}
	n := copy(p[:min(len(p), limit)], c.pending)
	c.advance(c.pending[:n])
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.release()
	}
	return n, nil
}

// advance follows the record framing over bytes given to TLS.
func (c *recordConn) advance(b []byte) {
	if c.hdrLeft > 0 {
		copy(c.hdr[5-c.hdrLeft:], b)
		c.hdrLeft -= len(b)
		if c.hdrLeft == 0 {
			c.bodyLeft = int(c.hdr[3])<<8 | int(c.hdr[4])
			if c.bodyLeft == 0 {
				c.hdrLeft = 5
			}
		}
		return
	}
	c.bodyLeft -= len(b)
	if c.bodyLeft == 0 {
		c.hdrLeft = 5
	}
}

func (c *recordConn) release() {
	if c.buf != nil {
		c.pending = nil
		readAhead.Put(c.buf)
		c.buf = nil
	}
}

// buffered reports bytes read from the socket that TLS has not had yet.
func (c *recordConn) buffered() bool { return len(c.pending) > 0 }

// idleConn is the TLS connection the broker library reads from.
type idleConn struct {
	*tls.Conn
	rec *recordConn
	raw syscall.RawConn
	// drained: the last read returned less than asked, so TLS holds no
	// plaintext, and (recordConn) no record either.
	drained bool
	// deadline is the read deadline last set (the library sets the
	// keepalive deadline before each packet).
	deadline time.Time
	// ready: Park saw data waiting, so the next read need not look.
	ready bool
	// parkAfter is how long the connection waits for data with its
	// goroutine before it parks without one (<= 0: never). A connection
	// with traffic keeps its goroutine; a parked one costs a new
	// goroutine, whose stack grows again, for its next packet.
	parkAfter time.Duration

	// Parking (Park): pmu guards the rest.
	pmu    sync.Mutex
	closed bool
	parked parking // the platform's registration while parked
}

// newIdleConn wraps a TLS server connection made over rec.
func newIdleConn(t *tls.Conn, rec *recordConn, parkAfter time.Duration) net.Conn {
	sc, ok := rec.Conn.(syscall.Conn)
	if !ok {
		return t
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return t
	}
	return &idleConn{Conn: t, rec: rec, raw: raw, parkAfter: parkAfter}
}

// Park lets the broker library's reader end while the connection idles
// (mochi Parker, see third_party/mochi-mqtt-server/PATCHES.md). It first
// waits up to parkAfter for data, in this goroutine; then, if nothing came
// and the keepalive deadline is further away, it hands the socket to the
// idle poller, which calls resume when data arrives, the deadline passes
// or the connection is closed. An idle device connection then costs no
// goroutine at all, and the one that waited gives back its stack.
func (c *idleConn) Park(resume func()) bool {
	if c.parkAfter <= 0 || !c.drained || c.rec.buffered() {
		return false
	}
	until := time.Now().Add(c.parkAfter)
	canWait := c.deadline.IsZero() || until.Before(c.deadline) // else the deadline comes first: the usual read reports it
	waiting, ready := false, false
	// The first look is made inside the poller's read, after it forgot
	// earlier readiness: data arriving after the look is then reported by
	// the poller, where a look made before the read would miss it until
	// the wait times out (the socket is edge-triggered).
	err := c.raw.Read(func(fd uintptr) bool {
		if ready = socketReady(fd); ready || waiting || !canWait {
			return ready || !waiting
		}
		waiting = true
		if afterLook != nil {
			afterLook()
		}
		_ = c.Conn.SetReadDeadline(until)
		return false
	})
	if waiting {
		_ = c.Conn.SetReadDeadline(c.deadline)
	}
	if !waiting || !errors.Is(err, os.ErrDeadlineExceeded) {
		// Data (the usual case with traffic: the read takes it without
		// looking again), an end, an error, or a deadline too near or
		// already past.
		c.ready = ready
		return false
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.closed {
		return false
	}
	// Before registering: once registered, a reader may resume at once.
	releaseTLS(c.Conn)
	return c.park(resume)
}

// afterLook, in tests, runs when Park found nothing and is about to wait.
var afterLook func()

// wake ends the parking p, if it is still the current one, and resumes
// the reader.
func (c *idleConn) wake(p parking) {
	c.pmu.Lock()
	if !c.parked.is(p) {
		c.pmu.Unlock()
		return
	}
	resume := c.unpark()
	c.pmu.Unlock()
	go resume()
}

// Close closes the connection; a parked reader is resumed to see it
// closed, as a waiting read would.
func (c *idleConn) Close() error {
	c.pmu.Lock()
	c.closed = true
	var resume func()
	if c.parked.active() {
		resume = c.unpark() // before the socket closes: its number may be reused
	}
	c.pmu.Unlock()
	// Not under pmu: closing TLS may wait up to 5 s to send its alert, and
	// the poller must not wait for that.
	err := c.Conn.Close()
	if resume != nil {
		go resume()
	}
	return err
}

func (c *idleConn) SetDeadline(t time.Time) error {
	c.deadline = t
	return c.Conn.SetDeadline(t)
}

func (c *idleConn) SetReadDeadline(t time.Time) error {
	c.deadline = t
	return c.Conn.SetReadDeadline(t)
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.drained && !c.rec.buffered() && !c.ready {
		if err := c.waitReadable(); err != nil {
			return 0, err
		}
	}
	c.ready = false
	n, err := c.Conn.Read(p)
	c.drained = n < len(p)
	return n, err
}

// waitReadable parks until the socket has data (or an end or error), in a
// shallow frame. The read deadline applies.
func (c *idleConn) waitReadable() error {
	return c.raw.Read(socketReady)
}
