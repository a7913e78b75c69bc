package broker

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
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
}

// newIdleConn wraps a TLS server connection made over rec.
func newIdleConn(t *tls.Conn, rec *recordConn) net.Conn {
	sc, ok := rec.Conn.(syscall.Conn)
	if !ok {
		return t
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return t
	}
	return &idleConn{Conn: t, rec: rec, raw: raw}
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.drained && !c.rec.buffered() {
		if err := c.waitReadable(); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	c.drained = n < len(p)
	return n, err
}

// waitReadable parks until the socket has data (or an end or error), in a
// shallow frame. The read deadline applies.
func (c *idleConn) waitReadable() error {
	var b [1]byte
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return !errors.Is(err, syscall.EAGAIN)
		}
	})
	return err
}
