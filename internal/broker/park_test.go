package broker_test

import (
	"bufio"
	"errors"
	"io"
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
			var flow deviceFlow
			var ended <-chan string
			if proto == "v5" {
				c := e.deviceV5(t, dev)
				flow, ended = c.flow(), c.ended()
			} else {
				c := e.deviceV3(t, dev)
				flow, ended = c.flow(), c.ended()
			}
			idle()
			if broker.ParkedCount() == 0 {
				t.Fatal("no connection parked after idling")
			}
			runDeviceFlow(t, e, dev, flow.pausing(idle))

			idle()
			revokeEnds(t, e, dev, ended, "parked MQTT "+proto+" session")
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
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	rawConnect(t, conn, r, dev.DeviceID, 1) // keepalive 1 s; then silence (no PINGREQ)
	start := time.Now()
	// Still open while parked, well inside its keepalive.
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := r.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection ended early: %v", err)
	}
	if broker.ParkedCount() == 0 {
		t.Fatal("no connection parked")
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, r) // until the server closes
	took := time.Since(start)
	if err != nil {
		t.Fatalf("the connection of a silent device was not closed (after %v): %v", took.Round(time.Millisecond), err)
	}
	t.Logf("a silent device with keepalive 1 s was dropped after %v", took.Round(time.Millisecond))
}
