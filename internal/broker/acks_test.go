package broker_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward/internal/broker"
)

// rawConnect sends an MQTT 3.1.1 CONNECT (clean session) as clientID
// over conn, encoded by the broker library, and checks that r, reading
// conn, gets a CONNACK that accepts it.
func rawConnect(t *testing.T, conn io.Writer, r *bufio.Reader, clientID string, keepalive uint16) {
	t.Helper()
	var out bytes.Buffer
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: keepalive, ClientIdentifier: clientID}}
	if err := connect.ConnectEncode(&out); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	if typ, body, err := readRaw(r); err != nil || typ != 0x20 || len(body) != 2 || body[1] != 0 {
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

// TestTelemetryAcksInOrder sends a burst of QoS 1 messages in one write:
// telemetry, whose PUBACKs follow the database commit and go out several
// to a write, with a twin report (acknowledged by the connection itself)
// in the middle. Every PUBACK must come, in the order of publication
// (MQTT 4.6), and the last message must be the stored last value.
func TestTelemetryAcksInOrder(t *testing.T) {
	e := newEnv(t, envOpts{configure: func(c *broker.Config) { c.RateLimit, c.RateBurst = 10000, 1000 }})
	dev := e.device(t)
	conn := dialTLS(t, e.cert, e.tls(&dev.TLS))
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)

	rawConnect(t, conn, r, dev.DeviceID, 60)

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
