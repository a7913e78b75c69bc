package broker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"runtime"
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
			Certificates: []tls.Certificate{clientCert}})
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
// collecting garbage a few times first.
func collected(done chan struct{}) bool {
	for range 20 {
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

func handCap(c *tls.Conn) int {
	l, _ := tlsFields()
	return (*bytes.Buffer)(unsafe.Add(unsafe.Pointer(c), l.hand)).Cap()
}

// TestReleaseTLS: on a connection that holds nothing unread, the buffers
// and the client certificate go (the certificate is collected), and the
// connection works on as before, records large and small, both ways. With
// data still held, the buffers stay and no byte is lost.
func TestReleaseTLS(t *testing.T) {
	server, client := mtlsPair(t, func(c net.Conn) net.Conn { return c })
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
	if handCap(server) == 0 {
		t.Fatal("the handshake buffer is already empty: nothing to measure")
	}
	if !releaseTLS(server) {
		t.Fatal("buffers not released on a connection with nothing unread")
	}
	if handCap(server) != 0 {
		t.Fatal("the handshake buffer kept its array")
	}
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
}
