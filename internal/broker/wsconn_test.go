package broker

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWSConnWriteDeadline: a write deadline set on a WebSocket connection
// holds. The WebSocket sets the socket's write deadline itself on every
// write, so one set on the socket was overwritten, and a device that
// stopped reading kept the broker's writer waiting.
func TestWSConnWriteDeadline(t *testing.T) {
	conns := make(chan *wsConn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		conns <- &wsConn{Conn: c.UnderlyingConn(), ws: c}
		<-r.Context().Done()
	}))
	defer srv.Close()
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := <-conns
	defer c.Close()

	if _, err := c.Write([]byte("ok")); err != nil {
		t.Fatalf("write without a deadline: %v", err)
	}
	for _, set := range []func(time.Time) error{c.SetWriteDeadline, c.SetDeadline} {
		if err := set(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		// The WebSocket library words timeouts its own way (a net.Error).
		if _, err := c.Write([]byte("late")); !isTimeout(err) {
			t.Fatalf("write after its deadline: %v, want a timeout", err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
