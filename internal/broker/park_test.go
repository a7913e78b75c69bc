package broker_test

import (
	"errors"
	"io"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/broker"
)

// TestParkedDeviceConnections runs the whole device flow with connections
// that park after 30 ms without data, pausing before every packet the
// device sends, so that each one resumes a parked reader and the twin and
// command pushes reach a parked device; then a parked device's certificate
// is revoked and its session must still close at once.
func TestParkedDeviceConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park only on Linux (epoll)")
	}
	e := newEnv(t, envOpts{configure: func(c *broker.Config) { c.ParkAfter = 30 * time.Millisecond }})
	idle := func() { time.Sleep(100 * time.Millisecond) }
	for _, proto := range []string{"v5", "v3"} {
		t.Run(proto, func(t *testing.T) {
			dev := e.device(t)
			closed := make(chan string, 1)
			flow := deviceFlow{}
			if proto == "v5" {
				c := e.deviceV5(t, dev)
				flow = deviceFlow{inbox: c.inbox,
					subscribe: func(t *testing.T, f ...string) {
						idle()
						for i, r := range c.subscribe(t, f...) {
							if r != 1 {
								t.Fatalf("SUBACK for %s: 0x%02x", f[i], r)
							}
						}
					},
					publish: func(t *testing.T, topic string, qos byte, payload string) {
						idle()
						c.mustPublish(t, topic, qos, payload)
					}}
				go func() {
					select {
					case <-c.disconnect:
						closed <- "DISCONNECT"
					case <-c.c.Done():
						closed <- "connection closed"
					}
				}()
			} else {
				c := e.deviceV3(t, dev)
				flow = deviceFlow{inbox: c.inbox,
					subscribe: func(t *testing.T, f ...string) { idle(); c.subscribe(t, f...) },
					publish: func(t *testing.T, topic string, qos byte, payload string) {
						idle()
						if err := c.publish(t, topic, qos, payload); err != nil {
							t.Fatal(err)
						}
					}}
				go func() { err := <-c.lost; closed <- "connection lost: " + err.Error() }()
			}
			idle()
			if broker.ParkedCount() == 0 {
				t.Fatal("no connection parked after idling")
			}
			runDeviceFlow(t, e, dev, flow)

			idle()
			start := time.Now()
			e.must(t, http.StatusOK, http.MethodPost, api+"/certificates/"+dev.Serial+"/revoke", map[string]any{"reason": "key_compromise"})
			select {
			case how := <-closed:
				t.Logf("parked MQTT %s session closed %v after the revocation request was sent (%s)", proto, time.Since(start).Round(time.Millisecond), how)
			case <-time.After(10 * time.Second):
				t.Fatal("the parked session of a revoked certificate is still open after 10s")
			}
		})
	}
}

// TestParkedKeepalive: a device that goes silent while its connection is
// parked is still dropped when its keepalive runs out (the library allows
// keepalive + keepalive/2 whole seconds: 1 s here).
func TestParkedKeepalive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park only on Linux (epoll)")
	}
	e := newEnv(t, envOpts{configure: func(c *broker.Config) { c.ParkAfter = 30 * time.Millisecond }})
	dev := e.device(t)
	conn := dialTLS(t, e.cert, e.tls(&dev.TLS))
	defer conn.Close()
	// MQTT 3.1.1 CONNECT, clean session, keepalive 1 s; then silence (no PINGREQ).
	id := dev.DeviceID
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 1, byte(len(id) >> 8), byte(len(id))}, id...)
	if _, err := conn.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	connack := make([]byte, 4)
	if _, err := io.ReadFull(conn, connack); err != nil || connack[0] != 0x20 || connack[3] != 0 {
		t.Fatalf("CONNACK %x, %v", connack, err)
	}
	start := time.Now()
	// Still open while parked, well inside its keepalive.
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection ended early: %v", err)
	}
	if broker.ParkedCount() == 0 {
		t.Fatal("no connection parked")
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, conn) // until the server closes
	took := time.Since(start)
	if err != nil {
		t.Fatalf("the connection of a silent device was not closed (after %v): %v", took.Round(time.Millisecond), err)
	}
	t.Logf("a silent device with keepalive 1 s was dropped after %v", took.Round(time.Millisecond))
}
