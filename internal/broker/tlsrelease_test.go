package broker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// TestTLSLayout fails when crypto/tls no longer has the fields releaseTLS
// touches: after a Go upgrade, releaseTLS would quietly do nothing.
func TestTLSLayout(t *testing.T) {
	if _, err := tlsFields(); err != nil {
		t.Fatalf("releaseTLS cannot work with this Go release (%s): %v", runtime.Version(), err)
	}
}

// mtlsPair is a TLS 1.3 connection with a client certificate: the server
// side over conn(raw) and the client side.
func mtlsPair(t *testing.T, wrap func(net.Conn) net.Conn) (server, client *tls.Conn) {
	t.Helper()
	return mtlsPairVersion(t, wrap, tls.VersionTLS13)
}

// mtlsPairVersion is mtlsPair with the highest TLS version the client offers.
func mtlsPairVersion(t *testing.T, wrap func(net.Conn) net.Conn, maxVersion uint16) (server, client *tls.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	clientCert := selfSigned(t)
	leaf, err := x509.ParseCertificate(clientCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert}
	dialed := make(chan *tls.Conn, 1)
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, // test only: self-signed
			Certificates: []tls.Certificate{clientCert}, MaxVersion: maxVersion})
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server = tls.Server(wrap(raw), cfg)
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if client = <-dialed; client == nil {
		t.FailNow()
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}

// collected reports whether the cleanup registered by watch has run,
// collecting garbage until it has or 5 s have passed.
func collected(done chan struct{}) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		select {
		case <-done:
			return true
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

// watch returns a channel closed once cert has been collected.
func watch(cert *x509.Certificate) chan struct{} {
	done := make(chan struct{})
	runtime.AddCleanup(cert, func(ch chan struct{}) { close(ch) }, done)
	return done
}

// held reports the capacity of c's input buffers: record bytes,
// plaintext (a slice of the record buffer) and handshake bytes.
func held(c *tls.Conn) (rawInput, input, hand int) {
	l, err := tlsFields()
	if err != nil {
		panic(err)
	}
	p := unsafe.Pointer(c)
	return (*bytes.Buffer)(unsafe.Add(p, l.rawInput)).Cap(), int((*bytes.Reader)(unsafe.Add(p, l.input)).Size()),
		(*bytes.Buffer)(unsafe.Add(p, l.hand)).Cap()
}

func handCap(c *tls.Conn) int { _, _, h := held(c); return h }

// released fails the test unless c holds no input buffer.
func released(t *testing.T, c *tls.Conn, when string) {
	t.Helper()
	if r, i, h := held(c); r != 0 || i != 0 || h != 0 {
		t.Fatalf("%s: input buffers still held: record %d, plaintext %d, handshake %d bytes", when, r, i, h)
	}
}

// TestReleaseTLS: on a connection that holds nothing unread, the buffers
// and the client certificate go (the certificate is collected), and the
// connection works on as before, records large and small, both ways, to
// its close_notify. With data still held, the buffers stay and no byte is
// lost. TLS 1.3 and 1.2.
func TestReleaseTLS(t *testing.T) {
	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS 1.3", tls.VersionTLS13}, {"TLS 1.2", tls.VersionTLS12}} {
		t.Run(v.name, func(t *testing.T) { testReleaseTLS(t, v.max) })
	}
}

func testReleaseTLS(t *testing.T, maxVersion uint16) {
	server, client := mtlsPairVersion(t, func(c net.Conn) net.Conn { return c }, maxVersion)
	if got := server.ConnectionState().Version; got != maxVersion {
		t.Fatalf("negotiated version %#x, want %#x", got, maxVersion)
	}
	certs := server.ConnectionState().PeerCertificates
	if len(certs) != 1 {
		t.Fatalf("peer certificates: %d", len(certs))
	}
	done := watch(certs[0])
	certs = nil

	exchange := func(msg []byte) {
		t.Helper()
		go func() { _, _ = client.Write(msg) }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("server read %d bytes (%v), not what was sent", len(got), err)
		}
		go func() { _, _ = server.Write(msg) }()
		if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("client read %d bytes (%v), not what was sent", len(got), err)
		}
	}
	exchange([]byte("hello"))
	if r, _, h := held(server); r == 0 || h == 0 {
		t.Fatalf("record buffer %d, handshake buffer %d bytes: nothing to release, nothing measured", r, h)
	}
	if !releaseTLS(server) {
		t.Fatal("buffers not released on a connection with nothing unread")
	}
	released(t, server, "after release")
	if n := len(server.ConnectionState().PeerCertificates); n != 0 {
		t.Fatalf("%d peer certificates still held", n)
	}
	if !collected(done) {
		t.Fatal("the client certificate is still reachable after release")
	}
	exchange(bytes.Repeat([]byte("0123456789abcdef"), 3000)) // several full records
	exchange([]byte("x"))

	// Data held by TLS: nothing is released, nothing lost.
	if _, err := client.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(server, one); err != nil || one[0] != 'a' {
		t.Fatalf("read %q, %v", one, err)
	}
	if releaseTLS(server) {
		t.Fatal("released with plaintext unread")
	}
	rest := make([]byte, 2)
	if _, err := io.ReadFull(server, rest); err != nil || string(rest) != "bc" {
		t.Fatalf("after a refused release, read %q, %v", rest, err)
	}

	// The peer's close_notify after a release ends the stream cleanly.
	if !releaseTLS(server) {
		t.Fatal("buffers not released")
	}
	client.Close()
	if n, err := server.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer's close_notify: %d bytes, %v; want io.EOF", n, err)
	}
}

// TestReleaseTLSConcurrent releases over and over while the connection
// carries data both ways: under -race, a crypto/tls that guarded its input
// buffers with another lock than the one releaseTLS takes shows up here.
func TestReleaseTLSConcurrent(t *testing.T) {
	server, client := mtlsPair(t, func(c net.Conn) net.Conn { return c })
	const n = 300
	msg := bytes.Repeat([]byte("m"), 100)
	var writers, releaser sync.WaitGroup
	writers.Add(2)
	go func() { // client -> server
		defer writers.Done()
		for range n {
			if _, err := client.Write(msg); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	echoed := make(chan error, 1)
	go func() { // server -> client, read by the client
		_, err := io.ReadFull(client, make([]byte, n*len(msg)))
		echoed <- err
	}()
	go func() {
		defer writers.Done()
		for range n {
			if _, err := server.Write(msg); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	stop := make(chan struct{})
	releaser.Add(1)
	go func() {
		defer releaser.Done()
		for {
			select {
			case <-stop:
				return
			default:
				releaseTLS(server) // waits while a read holds the buffers
			}
		}
	}()
	got := make([]byte, n*len(msg))
	_, err := io.ReadFull(server, got)
	writers.Wait()
	close(stop)
	releaser.Wait()
	if err != nil || !bytes.Equal(got, bytes.Repeat(msg, n)) {
		t.Fatalf("server read %v: the stream changed under release", err)
	}
	if err := <-echoed; err != nil {
		t.Fatalf("client read: %v", err)
	}
}
