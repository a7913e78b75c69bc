package broker_test

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/testutil/testserver"
)

// rawConnect sends an MQTT 3.1.1 CONNECT (clean session) as clientID
// over conn, encoded by the broker library, and checks that r, reading
// conn, gets a CONNACK that accepts it.
func rawConnect(t *testing.T, conn io.Writer, r *bufio.Reader, clientID string, keepalive uint16) {
	t.Helper()
	rawConnectVersion(t, conn, r, clientID, keepalive, 4)
}

// rawConnectVersion is rawConnect for MQTT 3.1.1 (version 4) or 5.
func rawConnectVersion(t *testing.T, conn io.Writer, r *bufio.Reader, clientID string, keepalive uint16, version byte) {
	t.Helper()
	var out bytes.Buffer
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: keepalive, ClientIdentifier: clientID}}
	if err := connect.ConnectEncode(&out); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := readRaw(r); err != nil || typ != 0x20 || len(body) < 2 || body[1] != 0 {
		t.Fatalf("CONNACK: type %#x body %v err %v", typ, body, err)
	}
}

// readRaw reads one packet: its first byte and body.
func readRaw(r *bufio.Reader) (byte, []byte, error) {
	first, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for {
		d, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		if d&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return first, body, err
}

// rawDevice enrolls a device and connects it over TLS with the raw client
// (MQTT version 4 or 5), the connection closed at the test's end.
func rawDevice(t *testing.T, e *env, version byte) (*testserver.EnrolledDevice, net.Conn, *bufio.Reader) {
	t.Helper()
	dev := e.device(t)
	conn := dialTLS(t, e.cert, e.tls(&dev.TLS))
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	rawConnectVersion(t, conn, r, dev.DeviceID, 60, version)
	return dev, conn, r
}

// TestTelemetryAcksInOrder sends a burst of QoS 1 messages in one write:
// telemetry, whose PUBACKs follow the database commit and go out several
// to a write, with a twin report (acknowledged by the connection itself)
// in the middle. Every PUBACK must come, in the order of publication
// (MQTT 4.6), and the last message must be the stored last value.
func TestTelemetryAcksInOrder(t *testing.T) {
	e := newEnv(t, envOpts{configure: func(c *broker.Config) { c.RateLimit, c.RateBurst = 10000, 1000 }})
	dev, conn, r := rawDevice(t, e, 4)

	const n = 300
	const twinAt = 150
	var out bytes.Buffer
	for i := 1; i <= n; i++ {
		topic, payload := "d/"+dev.DeviceID+"/telemetry", fmt.Sprintf(`{"seq":%d}`, i)
		if i == twinAt {
			topic, payload = "d/"+dev.DeviceID+"/twin/reported", `{"burst":true}`
		}
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
			TopicName: topic, PacketID: uint16(i), Payload: []byte(payload)}
		if err := pk.PublishEncode(&out); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write(out.Bytes()); err != nil { // the whole burst in one write
		t.Fatal(err)
	}
	for want := 1; want <= n; {
		typ, body, err := readRaw(r)
		if err != nil {
			t.Fatalf("waiting for the PUBACK of message %d: %v", want, err)
		}
		if typ>>4 != 4 { // not a PUBACK: the twin answers on its own topics
			continue
		}
		if got := int(binary.BigEndian.Uint16(body)); got != want {
			t.Fatalf("PUBACK for message %d, want %d: acknowledgements out of order", got, want)
		}
		want++
	}
	if got := e.latest(t, dev.DeviceID)["seq"]; got != float64(n) {
		t.Fatalf("last stored seq = %v, want %d", got, n)
	}
}

// holdWriter keeps the store's single SQLite writer busy until the
// returned function is called (also at the test's end): telemetry stays
// uncommitted, so its PUBACKs stay owed.
func holdWriter(t *testing.T, e *env) func() {
	t.Helper()
	st, ok := e.srv.Platform.Store.(interface{ DBs() (*sql.DB, *sql.DB) })
	if !ok || e.srv.Backend() != "sqlite" {
		t.Skip("holding the writer needs SQLite's single write connection")
	}
	w, _ := st.DBs()
	tx, err := w.Begin()
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { tx.Rollback() }) }
	t.Cleanup(release)
	return release
}

// telemetryAccepted reads how many telemetry messages the broker has
// taken (steward_mqtt_messages_total{kind="telemetry"}).
func telemetryAccepted(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.srv.Platform.API.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "steward_mqtt_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "telemetry" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// burst sends QoS 1 telemetry messages with seq 1..n in one write.
func burst(t *testing.T, conn io.Writer, deviceID string, version byte, n int) {
	t.Helper()
	var out bytes.Buffer
	for i := 1; i <= n; i++ {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: version,
			TopicName: "d/" + deviceID + "/telemetry", PacketID: uint16(i), Payload: []byte(fmt.Sprintf(`{"seq":%d}`, i))}
		if err := pk.PublishEncode(&out); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// TestReceiveMaximum: QoS 1 telemetry is acknowledged after the commit,
// and a device may have at most Receive Maximum of it unacknowledged. An
// MQTT 5 device that sends more is disconnected with 0x93 and nothing past
// the limit is stored; a 3.1.1 device, never told a limit, is read from
// again as PUBACKs go out, and loses nothing; a client that keeps to the
// limit (paho) is never cut off, however fast its PUBACKs come back.
func TestReceiveMaximum(t *testing.T) {
	const max = 4
	e := newEnv(t, envOpts{configure: func(c *broker.Config) {
		c.RateLimit, c.RateBurst, c.ReceiveMaximum = 10000, 1000, max
	}})

	t.Run("v5 beyond the limit", func(t *testing.T) {
		dev, conn, r := rawDevice(t, e, 5)
		release := holdWriter(t, e)
		burst(t, conn, dev.DeviceID, 5, 3*max)
		typ, body, err := readRaw(r)
		release()
		if err != nil || typ != 0xE0 || len(body) < 1 || body[0] != 0x93 {
			t.Fatalf("want DISCONNECT 0x93 (Receive Maximum exceeded), got type %#x body %x err %v", typ, body, err)
		}
		for {
			if _, _, err := readRaw(r); err != nil {
				break // closed
			}
		}
		eventually(t, "the messages within the limit stored", func() bool { return e.latest(t, dev.DeviceID)["seq"] == float64(max) })
		time.Sleep(100 * time.Millisecond)
		if got := e.latest(t, dev.DeviceID)["seq"]; got != float64(max) {
			t.Fatalf("last stored seq = %v: a message past the limit was stored", got)
		}
	})

	t.Run("v3 waits", func(t *testing.T) {
		dev, conn, r := rawDevice(t, e, 4)
		const n = 10 * max
		release := holdWriter(t, e)
		before := telemetryAccepted(t, e)
		burst(t, conn, dev.DeviceID, 4, n)
		eventually(t, "the broker taking messages up to the limit", func() bool { return telemetryAccepted(t, e)-before >= max })
		time.Sleep(100 * time.Millisecond)
		if got := telemetryAccepted(t, e) - before; got != max {
			t.Fatalf("%v messages taken while their PUBACKs wait, want Receive Maximum (%d)", got, max)
		}
		release()
		for want := 1; want <= n; want++ {
			typ, body, err := readRaw(r)
			if err != nil || typ>>4 != 4 || int(binary.BigEndian.Uint16(body)) != want {
				t.Fatalf("want the PUBACK of message %d, got type %#x body %x err %v", want, typ, body, err)
			}
		}
		if got := e.latest(t, dev.DeviceID)["seq"]; got != float64(n) {
			t.Fatalf("last stored seq = %v, want %d", got, n)
		}
	})

	t.Run("v5 within the limit", func(t *testing.T) {
		dev := e.device(t)
		c := e.deviceV5(t, dev)
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.publish(t, "d/"+dev.DeviceID+"/telemetry", 1, fmt.Sprintf(`{"n":%d}`, i)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("publishing within Receive Maximum: %v", err)
		}
		select {
		case d := <-c.disconnect:
			t.Fatalf("disconnected within Receive Maximum: %+v", d)
		default:
		}
	})
}
