package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// authMode says how clients of a listener prove who they are.
type authMode uint8

const (
	authCert        authMode = iota + 1 // client certificate
	authToken                           // username and password
	authCertOrToken                     // a certificate if presented, else username and password
)

// connectTimeout bounds the TLS handshake and the wait for CONNECT; after
// CONNECT the keep-alive governs.
const connectTimeout = 10 * time.Second

// tcpListener serves MQTT over TCP or TLS on a socket bound by Start.
type tcpListener struct {
	id        string
	ln        net.Listener
	tls       *tls.Config
	log       *slog.Logger
	parkAfter time.Duration // see Config.ParkAfter
	end       atomic.Bool
	wg        sync.WaitGroup
}

func newTCPListener(id string, ln net.Listener, tc *tls.Config, log *slog.Logger, parkAfter time.Duration) *tcpListener {
	return &tcpListener{id: id, ln: ln, tls: tc, log: log, parkAfter: parkAfter}
}

func (l *tcpListener) ID() string              { return l.id }
func (l *tcpListener) Address() string         { return l.ln.Addr().String() }
func (l *tcpListener) Protocol() string        { return "tcp" }
func (l *tcpListener) Init(*slog.Logger) error { return nil }

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("mqtt accept", "listener", l.id, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go l.serveConn(conn, establish)
	}
}

func (l *tcpListener) serveConn(conn net.Conn, establish listeners.EstablishFn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	_ = conn.SetDeadline(time.Now().Add(connectTimeout))
	if l.tls != nil {
		rec := newRecordConn(conn)
		tconn := tls.Server(rec, l.tls)
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		err := tconn.HandshakeContext(ctx)
		cancel()
		if err != nil {
			l.log.Debug("tls handshake failed", "listener", l.id, "remote", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = newIdleConn(tconn, rec, l.parkAfter) // see idleconn.go
	}
	// The handshake grew this goroutine's stack (deep crypto calls); a
	// fresh goroutine carries the long-lived, mostly idle connection, whose
	// stack is a large part of what an idle connection costs.
	go func() {
		if err := establish(l.id, conn); err != nil && !errors.Is(err, io.EOF) {
			l.log.Debug("mqtt connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "err", err)
		}
	}()
}

func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) {
		closeClients(l.id)
	}
	l.ln.Close()
}

// wsListener serves MQTT over WebSocket (path /mqtt, subprotocol mqtt).
type wsListener struct {
	id        string
	ln        net.Listener
	srv       *http.Server
	log       *slog.Logger
	upgrader  websocket.Upgrader
	establish listeners.EstablishFn
	end       atomic.Bool
}

func newWSListener(id string, ln net.Listener, tc *tls.Config, log *slog.Logger) *wsListener {
	l := &wsListener{id: id, ln: ln, log: log, upgrader: websocket.Upgrader{
		Subprotocols:    []string{"mqtt"},
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		// Devices and tools, not browsers of other origins with cookies:
		// the credential is the client certificate or token, not ambient.
		CheckOrigin: func(*http.Request) bool { return true },
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("/mqtt", l.handle)
	l.srv = &http.Server{Handler: mux, TLSConfig: tc, ReadHeaderTimeout: connectTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return l
}

func (l *wsListener) ID() string              { return l.id }
func (l *wsListener) Address() string         { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string        { return "wss" }
func (l *wsListener) Init(*slog.Logger) error { return nil }

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	ln := l.ln
	if l.srv.TLSConfig != nil {
		ln = tls.NewListener(ln, l.srv.TLSConfig)
	}
	if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !l.end.Load() {
		l.log.Warn("websocket listener stopped", "listener", l.id, "err", err)
	}
}

func (l *wsListener) handle(w http.ResponseWriter, r *http.Request) {
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	conn := &wsConn{Conn: c.UnderlyingConn(), ws: c, state: r.TLS}
	_ = conn.SetDeadline(time.Now().Add(connectTimeout))
	if err := l.establish(l.id, conn); err != nil && !errors.Is(err, io.EOF) {
		l.log.Debug("mqtt connection ended", "listener", l.id, "remote", r.RemoteAddr, "err", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	if l.end.CompareAndSwap(false, true) {
		closeClients(l.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.srv.Shutdown(ctx)
	l.ln.Close()
}

// wsConn carries an MQTT byte stream in binary WebSocket messages.
type wsConn struct {
	net.Conn
	ws    *websocket.Conn
	state *tls.ConnectionState
	r     io.Reader
	wmu   sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			t, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if t != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }

// SetWriteDeadline goes to the WebSocket, which sets the socket's write
// deadline itself on every write: one set on the socket would be
// overwritten (and the broker's write timeout lost).
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }

func (c *wsConn) SetDeadline(t time.Time) error {
	_ = c.ws.SetWriteDeadline(t)
	return c.ws.SetReadDeadline(t)
}

// ConnectionState exposes the TLS state (and so the client certificate).
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if c.state == nil {
		return tls.ConnectionState{}
	}
	return *c.state
}
