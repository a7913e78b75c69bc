package main

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// A minimal MQTT 3.1.1 client: the same load generator drives every
// broker, so the comparison measures the brokers, not client libraries.

type conn struct {
	c  net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
	id string
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
	out := appendLength([]byte{typ}, len(body))
	return append(out, body...)
}

// dial opens a TLS connection and completes CONNECT/CONNACK.
func dial(addr string, cfg *tls.Config, clientID, user, pass string, keepalive uint16) (*conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	raw.(*net.TCPConn).SetNoDelay(true)
	tc := tls.Client(raw, cfg)
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls: %w", err)
	}
	c := &conn{c: tc, r: bufio.NewReaderSize(tc, 16<<10), w: bufio.NewWriterSize(tc, 16<<10), id: clientID}
	body := appendString(nil, "MQTT")
	flags := byte(0x02) // clean session
	if user != "" {
		flags |= 0x80 | 0x40
	}
	body = append(body, 4, flags)
	body = binary.BigEndian.AppendUint16(body, keepalive)
	body = appendString(body, clientID)
	if user != "" {
		body = appendString(body, user)
		body = appendString(body, pass)
	}
	c.w.Write(packet(0x10, body))
	if err := c.w.Flush(); err != nil {
		tc.Close()
		return nil, err
	}
	typ, b, err := c.read()
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("connack: %w", err)
	}
	if typ>>4 != 2 || len(b) < 2 || b[1] != 0 {
		tc.Close()
		return nil, fmt.Errorf("refused: CONNACK %x", b)
	}
	tc.SetDeadline(time.Time{})
	return c, nil
}

// read returns the next packet's first byte and body.
func (c *conn) read() (byte, []byte, error) {
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
			return 0, nil, errors.New("bad remaining length")
		}
	}
	b := make([]byte, n)
	_, err = io.ReadFull(c.r, b)
	return typ, b, err
}

func (c *conn) subscribe(filter string, qos byte) error {
	body := binary.BigEndian.AppendUint16(nil, 1)
	body = appendString(body, filter)
	body = append(body, qos)
	c.w.Write(packet(0x82, body))
	if err := c.w.Flush(); err != nil {
		return err
	}
	typ, b, err := c.read()
	if err != nil {
		return err
	}
	if typ>>4 != 9 || len(b) < 3 || b[2] >= 0x80 {
		return fmt.Errorf("subscribe %s refused: %x", filter, b)
	}
	return nil
}

// publish buffers a PUBLISH (flush separately).
func (c *conn) publish(topic string, payload []byte, qos byte, pid uint16) {
	body := appendString(make([]byte, 0, len(topic)+len(payload)+4), topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, pid)
	}
	body = append(body, payload...)
	c.w.Write(packet(0x30|qos<<1, body))
}

func (c *conn) puback(pid uint16) {
	c.w.Write([]byte{0x40, 2, byte(pid >> 8), byte(pid)})
}

func (c *conn) close() {
	c.w.Write([]byte{0xe0, 0})
	c.w.Flush()
	c.c.Close()
}
