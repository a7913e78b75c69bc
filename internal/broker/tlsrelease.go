package broker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"reflect"
	"sync"
	"unsafe"
)

// crypto/tls keeps two things for a connection's whole life that an idle
// device connection does not need: input buffers as large as the largest
// record and handshake message it ever read (a ClientHello with a
// post-quantum key share is about 1.3 KB, a client certificate message
// about as much again, a record up to 16 KiB), and the parsed client
// certificate, which the broker reads once, at CONNECT. Together they were
// about a third of an idle connection's heap. OpenSSL lets go of its
// buffers on idle connections when asked (SSL_MODE_RELEASE_BUFFERS);
// crypto/tls has no such switch, so releaseTLS does it from outside,
// through the fields' offsets, found once by name and type. Should a Go
// release rename or retype one of them, releaseTLS does nothing and the
// connection only costs more (TestTLSLayout fails, so the change is
// noticed, and the broker warns at start).

// tlsLayout holds the offsets, within tls.Conn, of what releaseTLS touches.
type tlsLayout struct {
	handshakeMutex   uintptr // sync.Mutex: guards peerCertificates, verifiedChains
	in               uintptr // halfConn, whose embedded sync.Mutex guards the input buffers
	rawInput         uintptr // bytes.Buffer: record bytes
	input            uintptr // bytes.Reader: plaintext, a slice of rawInput's array
	hand             uintptr // bytes.Buffer: handshake message bytes
	peerCertificates uintptr // []*x509.Certificate
	verifiedChains   uintptr // [][]*x509.Certificate
}

var tlsFields = sync.OnceValues(findTLSLayout)

func findTLSLayout() (*tlsLayout, error) {
	t := reflect.TypeFor[tls.Conn]()
	l := &tlsLayout{}
	for _, f := range []struct {
		name string
		typ  reflect.Type
		off  *uintptr
	}{
		{"handshakeMutex", reflect.TypeFor[sync.Mutex](), &l.handshakeMutex},
		{"rawInput", reflect.TypeFor[bytes.Buffer](), &l.rawInput},
		{"input", reflect.TypeFor[bytes.Reader](), &l.input},
		{"hand", reflect.TypeFor[bytes.Buffer](), &l.hand},
		{"peerCertificates", reflect.TypeFor[[]*x509.Certificate](), &l.peerCertificates},
		{"verifiedChains", reflect.TypeFor[[][]*x509.Certificate](), &l.verifiedChains},
	} {
		sf, ok := t.FieldByName(f.name)
		if !ok || sf.Type != f.typ || len(sf.Index) != 1 {
			return nil, fmt.Errorf("crypto/tls.Conn has no field %s of type %v", f.name, f.typ)
		}
		*f.off = sf.Offset
	}
	in, ok := t.FieldByName("in")
	if !ok || in.Type.Kind() != reflect.Struct || in.Type.NumField() == 0 {
		return nil, fmt.Errorf("crypto/tls.Conn has no field in of struct type")
	}
	if mu := in.Type.Field(0); !mu.Anonymous || mu.Type != reflect.TypeFor[sync.Mutex]() || mu.Offset != 0 {
		return nil, fmt.Errorf("crypto/tls.Conn's field in does not start with a sync.Mutex")
	}
	l.in = in.Offset
	return l, nil
}

// releaseTLS lets go of c's input buffers, when they hold nothing, and of
// its peer certificates, once the handshake is done. It is for a server
// connection nobody reads from (a parked one): a client connection reads
// its peer certificates when a session ticket arrives, under another lock.
// TLS grows new buffers when the next record comes, and ConnectionState
// reports no peer certificates from then on. It reports whether the
// buffers were released.
func releaseTLS(c *tls.Conn) bool {
	l, err := tlsFields()
	if err != nil || !c.ConnectionState().HandshakeComplete {
		return false
	}
	p := unsafe.Pointer(c)

	in := (*sync.Mutex)(unsafe.Add(p, l.in))
	in.Lock()
	rawInput := (*bytes.Buffer)(unsafe.Add(p, l.rawInput))
	input := (*bytes.Reader)(unsafe.Add(p, l.input))
	hand := (*bytes.Buffer)(unsafe.Add(p, l.hand))
	released := rawInput.Len() == 0 && input.Len() == 0 && hand.Len() == 0
	if released {
		*rawInput, *input, *hand = bytes.Buffer{}, bytes.Reader{}, bytes.Buffer{}
	}
	in.Unlock()

	hm := (*sync.Mutex)(unsafe.Add(p, l.handshakeMutex))
	hm.Lock()
	*(*[]*x509.Certificate)(unsafe.Add(p, l.peerCertificates)) = nil
	*(*[][]*x509.Certificate)(unsafe.Add(p, l.verifiedChains)) = nil
	hm.Unlock()
	return released
}
