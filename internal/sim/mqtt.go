package sim

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// A minimal MQTT 3.1.1 client, enough for a simulated device: CONNECT,
// SUBSCRIBE, PUBLISH QoS 0/1 in both directions, PUBACK, PINGREQ. A
// library client costs several goroutines and tens of KiB per
// connection; this one costs one reading goroutine and small buffers, so
// that one machine can hold 100k devices.

type mconn struct {
	c  net.Conn
	r  *bufio.Reader
	mu sync.Mutex // serialises writes
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func packet(typ byte, body []byte) []byte {
	out := appendLength(append(make([]byte, 0, len(body)+5), typ), len(body))
	return append(out, body...)
}

// errRefused is a CONNACK with a non-zero return code.
type errRefused struct{ code byte }

func (e errRefused) Error() string {
	return fmt.Sprintf("mqtt: connection refused (CONNACK 0x%02x)", e.code)
}

// dialMQTT opens a TLS connection and completes CONNECT/CONNACK (clean
// session, client identifier = device ID).
func dialMQTT(addr string, cfg *tls.Config, clientID string, keepalive uint16, timeout time.Duration) (*mconn, error) {
	d := &net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls: %w", err)
	}
	c := &mconn{c: tc, r: bufio.NewReaderSize(tc, 512)}
	body := appendString(nil, "MQTT")
	body = append(body, 4, 0x02)
	body = binary.BigEndian.AppendUint16(body, keepalive)
	body = appendString(body, clientID)
	if _, err := tc.Write(packet(0x10, body)); err != nil {
		tc.Close()
		return nil, err
	}
	typ, b, err := c.read()
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("connack: %w", err)
	}
	if typ>>4 != 2 || len(b) < 2 {
		tc.Close()
		return nil, fmt.Errorf("mqtt: expected CONNACK, got packet type %d", typ>>4)
	}
	if b[1] != 0 {
		tc.Close()
		return nil, errRefused{b[1]}
	}
	tc.SetDeadline(time.Time{})
	return c, nil
}

// read returns the next packet's first byte and body.
func (c *mconn) read() (byte, []byte, error) {
	typ, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
		if i > 3 {
			return 0, nil, errors.New("mqtt: bad remaining length")
		}
	}
	b := make([]byte, n)
	_, err = io.ReadFull(c.r, b)
	return typ, b, err
}

func (c *mconn) write(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.c.Write(p)
	return err
}

// subscribe sends a SUBSCRIBE; the SUBACK arrives on the reading goroutine.
func (c *mconn) subscribe(pid uint16, qos byte, filters ...string) error {
	body := binary.BigEndian.AppendUint16(nil, pid)
	for _, f := range filters {
		body = appendString(body, f)
		body = append(body, qos)
	}
	return c.write(packet(0x82, body))
}

func (c *mconn) publish(topic string, payload []byte, qos byte, pid uint16) error {
	body := appendString(make([]byte, 0, len(topic)+len(payload)+4), topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, pid)
	}
	body = append(body, payload...)
	return c.write(packet(0x30|qos<<1, body))
}

func (c *mconn) puback(pid uint16) error {
	return c.write([]byte{0x40, 2, byte(pid >> 8), byte(pid)})
}

func (c *mconn) ping() error { return c.write([]byte{0xc0, 0}) }

func (c *mconn) close() {
	_ = c.write([]byte{0xe0, 0})
	c.c.Close()
}

// parsePublish splits an incoming PUBLISH body.
func parsePublish(flags byte, b []byte) (topic string, pid uint16, payload []byte, err error) {
	if len(b) < 2 {
		return "", 0, nil, errors.New("mqtt: short PUBLISH")
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", 0, nil, errors.New("mqtt: short PUBLISH topic")
	}
	topic, b = string(b[2:2+n]), b[2+n:]
	if (flags>>1)&3 > 0 {
		if len(b) < 2 {
			return "", 0, nil, errors.New("mqtt: PUBLISH without packet ID")
		}
		pid, b = binary.BigEndian.Uint16(b), b[2:]
	}
	return topic, pid, b, nil
}
