package broker

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"testing"
	"time"
)

// chunkConn returns its data in pieces of random size, as a socket may.
type chunkConn struct {
	net.Conn
	data []byte
	rnd  *mrand.Rand
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rnd.IntN(700))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// TestRecordConnFraming: whatever the socket's pieces and the reader's
// buffers, the bytes come out unchanged and no read crosses the end of a
// record (so crypto/tls never holds a record it has not asked for).
func TestRecordConnFraming(t *testing.T) {
	rnd := mrand.New(mrand.NewPCG(1, 2))
	for round := range 50 {
		var stream []byte
		var ends []int // offsets where a record ends
		for range 1 + rnd.IntN(40) {
			body := rnd.IntN(3000)
			if rnd.IntN(10) == 0 {
				body = 0
			}
			hdr := []byte{23, 3, 3, byte(body >> 8), byte(body)}
			stream = append(stream, hdr...)
			for range body {
				stream = append(stream, byte(rnd.Uint32()))
			}
			ends = append(ends, len(stream))
		}
		rc := newRecordConn(&chunkConn{data: append([]byte(nil), stream...), rnd: rnd})
		var got []byte
		for {
			p := make([]byte, 1+rnd.IntN(1200))
			n, err := rc.Read(p)
			start := len(got)
			got = append(got, p[:n]...)
			for _, e := range ends {
				hdrEnd := e // a read may end at a header's end or a record's end, never run past either
				if start < hdrEnd && len(got) > hdrEnd {
					t.Fatalf("round %d: a read of [%d, %d) crosses the record end at %d", round, start, len(got), hdrEnd)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if !bytes.Equal(got, stream) {
			t.Fatalf("round %d: %d bytes out, %d in, or different", round, len(got), len(stream))
		}
		if rc.buffered() || rc.buf != nil {
			t.Fatalf("round %d: a read-ahead buffer is still held at the end", round)
		}
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// acceptIdle accepts one connection on ln and makes it the broker's TLS
// connection: TLS over recordConn, wrapped in an idleConn.
func acceptIdle(t *testing.T, ln net.Listener, cfg *tls.Config, parkAfter time.Duration) *idleConn {
	t.Helper()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecordConn(raw)
	tconn := tls.Server(rec, cfg)
	if err := tconn.Handshake(); err != nil {
		t.Fatal(err)
	}
	c, ok := newIdleConn(tconn, rec, parkAfter).(*idleConn)
	if !ok {
		t.Fatal("a TCP connection was not wrapped")
	}
	return c
}

// TestIdleConnOverTLS runs a real TLS connection through recordConn and
// idleConn: bursts of small records that arrive together, records larger
// than the reader's buffer, pauses in between (so the reader waits on the
// socket), a read deadline while idle, and the end of the stream. Every
// byte must arrive, in order, and nothing may hang.
func TestIdleConnOverTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	var sent bytes.Buffer
	firstBurst := make(chan int, 1) // bytes of the first burst, once written
	goOn := make(chan struct{})
	clientDone := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true}) // test only: self-signed
		if err != nil {
			clientDone <- err
			return
		}
		defer c.Close()
		rnd := mrand.New(mrand.NewPCG(3, 4))
		for burst := range 30 {
			for range 1 + rnd.IntN(20) { // each Write is one record or more
				msg := make([]byte, 1+rnd.IntN(100))
				if rnd.IntN(8) == 0 {
					msg = make([]byte, 20000+rnd.IntN(20000)) // several records
				}
				for i := range msg {
					msg[i] = byte(rnd.Uint32())
				}
				if _, err := c.Write(msg); err != nil {
					clientDone <- err
					return
				}
				sent.Write(msg)
			}
			if burst == 0 {
				firstBurst <- sent.Len()
				<-goOn
			}
			time.Sleep(time.Duration(rnd.IntN(3)) * time.Millisecond)
		}
		clientDone <- nil
	}()
	conn := acceptIdle(t, ln, cfg, 0)
	var got bytes.Buffer
	buf := make([]byte, 7) // small, so reads end both full and short
	rnd := mrand.New(mrand.NewPCG(5, 6))
	read := func(until int) { // until < 0: to the end of the stream
		for until < 0 || got.Len() < until {
			if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			n, err := conn.Read(buf[:1+rnd.IntN(len(buf))])
			got.Write(buf[:n])
			if err == io.EOF && until < 0 {
				return
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", got.Len(), err)
			}
		}
	}
	read(<-firstBurst)
	// Everything sent so far was read: an idle read ends at its deadline,
	// in the shallow wait, and the connection stays usable.
	conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := conn.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle read with a deadline: got %v, want a deadline error", err)
	}
	close(goOn)
	read(-1)
	if err := <-clientDone; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), sent.Bytes()) {
		t.Fatalf("received %d bytes, sent %d, or different", got.Len(), sent.Len())
	}
	t.Logf("%d bytes through TLS in bursts and pauses, with an idle deadline on the way", got.Len())
}
