package telemetry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/model"
)

// Sink takes the points of one device message (the broker's side of
// ingestion). Write returns once the points are durable; WriteThen calls
// then(err) once they are (or failed), in submission order, without
// blocking the caller; Enqueue only hands them over.
type Sink interface {
	Write(ctx context.Context, pts []model.TelemetryPoint) error
	WriteThen(ctx context.Context, pts []model.TelemetryPoint, then func(error)) error
	Enqueue(ctx context.Context, pts []model.TelemetryPoint) error
}

var (
	_ Sink = (*Ingester)(nil)
	_ Sink = (*StreamSink)(nil)
)

// StreamSink is the Sink of a scaled-out deployment: each message goes to
// the bus's telemetry stream, and points are durable once the stream has
// stored them; every node's Consume then writes them to the store. Run
// makes it work.
type StreamSink struct {
	b   *bus.Bus
	log *slog.Logger
	q   chan streamReq

	mu      sync.Mutex
	stopped bool
	pending sync.WaitGroup // requests submitted and not yet answered

	// Counters, for metrics and tests.
	Published atomic.Int64 // messages the stream stored
	Failed    atomic.Int64 // messages that could not be published
}

type streamReq struct {
	ack  bus.TelemetryAck
	none bool // nothing was published (no points): answer nil
	then func(error)
}

// NewStreamSink returns a sink publishing to b.
func NewStreamSink(b *bus.Bus, log *slog.Logger) *StreamSink {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The queue holds at most what the bus lets be in flight, plus slack.
	return &StreamSink{b: b, log: log, q: make(chan streamReq, 16384)}
}

// Write publishes pts and returns once the stream stored them.
func (s *StreamSink) Write(ctx context.Context, pts []model.TelemetryPoint) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.pending.Done()
	ack, none, err := s.publish(ctx, pts)
	if err != nil || none {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- ack.Wait() }()
	select {
	case err := <-done:
		s.count(err)
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WriteThen publishes pts and calls then(err) once the stream stored them
// or publishing failed; calls happen on one goroutine in submission order
// and must not block.
func (s *StreamSink) WriteThen(ctx context.Context, pts []model.TelemetryPoint, then func(error)) error {
	return s.submit(ctx, pts, then)
}

// Enqueue publishes pts without waiting for the stream.
func (s *StreamSink) Enqueue(ctx context.Context, pts []model.TelemetryPoint) error {
	return s.submit(ctx, pts, nil)
}

func (s *StreamSink) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrClosed
	}
	s.pending.Add(1)
	return nil
}

func (s *StreamSink) submit(ctx context.Context, pts []model.TelemetryPoint, then func(error)) error {
	if err := s.begin(); err != nil {
		return err
	}
	ack, none, err := s.publish(ctx, pts)
	if err != nil {
		s.pending.Done()
		return err
	}
	// Run keeps reading until every submitted request is answered, so
	// this cannot block for good.
	s.q <- streamReq{ack: ack, none: none, then: then}
	return nil
}

// publish sends the points of one device message.
func (s *StreamSink) publish(ctx context.Context, pts []model.TelemetryPoint) (bus.TelemetryAck, bool, error) {
	if len(pts) == 0 {
		return bus.TelemetryAck{}, true, nil
	}
	tenant, device := pts[0].TenantID, pts[0].DeviceID
	for _, p := range pts[1:] {
		if p.TenantID != tenant || p.DeviceID != device {
			return bus.TelemetryAck{}, false, errors.New("telemetry: points of one message must belong to one device")
		}
	}
	data, err := EncodePoints(pts)
	if err != nil {
		return bus.TelemetryAck{}, false, err
	}
	ack, err := s.b.PublishTelemetry(ctx, tenant, device, data)
	if err != nil {
		s.Failed.Add(1)
	}
	return ack, false, err
}

func (s *StreamSink) count(err error) {
	if err == nil {
		s.Published.Add(1)
	} else {
		s.Failed.Add(1)
	}
}

// Run answers submitted messages in order as the stream confirms them,
// until ctx ends; then it refuses new ones and answers those still
// pending (each within the bus's publish timeout).
func (s *StreamSink) Run(ctx context.Context) {
	idle := make(chan struct{})
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		s.pending.Wait()
		close(idle)
	})
	for {
		select {
		case r := <-s.q:
			var err error
			if !r.none {
				err = r.ack.Wait()
				s.count(err)
				if err != nil && r.then == nil {
					s.log.Warn("QoS 0 telemetry lost", "err", err)
				}
			}
			if r.then != nil {
				r.then(err)
			}
			s.pending.Done()
		case <-idle:
			return
		}
	}
}

// Consume runs this node's share of the deployment's ingestion: messages
// from the telemetry stream are decoded and written through in (group
// commit); each is acknowledged to the stream only after the transaction
// holding its points committed, so a message is stored at least once and,
// rows being keyed by series and time, never twice. in must keep running
// until stop returns.
func Consume(ctx context.Context, b *bus.Bus, in *Ingester, log *slog.Logger) (stop func(), err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return b.ConsumeTelemetry(ctx, func(ctx context.Context, m *bus.TelemetryMsg) {
		pts, err := DecodePoints(m.Data, m.TenantID, m.DeviceID)
		if err != nil {
			m.Reject(err) // retrying cannot fix it
			return
		}
		if err := in.WriteThen(ctx, pts, func(err error) {
			if err != nil {
				m.Retry(err)
			} else {
				m.Ack()
			}
		}); err != nil {
			m.Retry(err)
		}
	})
}

// The stream encoding of one message's points (tenant and device are in
// the subject): version byte 1, the number of points (uvarint), then per
// point the metric (uvarint length, bytes), the time (varint nanoseconds
// since the previous point's, the first since the epoch), the kind (one
// byte) and the value: 8 bytes float64 for numbers and booleans, uvarint
// length and bytes for text.
const streamVersion = 1

// EncodePoints encodes the points of one message for the telemetry stream.
func EncodePoints(pts []model.TelemetryPoint) ([]byte, error) {
	n := 1 + binary.MaxVarintLen64
	for _, p := range pts {
		n += len(p.Metric) + len(p.Text) + 3*binary.MaxVarintLen64 + 9
	}
	buf := make([]byte, 0, n)
	buf = append(buf, streamVersion)
	buf = binary.AppendUvarint(buf, uint64(len(pts)))
	var prev int64
	for _, p := range pts {
		buf = binary.AppendUvarint(buf, uint64(len(p.Metric)))
		buf = append(buf, p.Metric...)
		ns := p.Time.UnixNano()
		buf = binary.AppendVarint(buf, ns-prev)
		prev = ns
		switch p.Kind {
		case model.KindNumber, model.KindBool:
			buf = append(buf, p.Kind[0])
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(p.Num))
		case model.KindString, model.KindData:
			buf = append(buf, p.Kind[0])
			buf = binary.AppendUvarint(buf, uint64(len(p.Text)))
			buf = append(buf, p.Text...)
		default:
			return nil, fmt.Errorf("telemetry: point %q has unknown kind %q", p.Metric, p.Kind)
		}
	}
	return buf, nil
}

// DecodePoints decodes what EncodePoints made; the points get tenantID
// and deviceID.
func DecodePoints(data []byte, tenantID, deviceID string) ([]model.TelemetryPoint, error) {
	d := decoder{b: data}
	if v := d.byte(); v != streamVersion {
		return nil, fmt.Errorf("telemetry: stream message version %d, want %d", v, streamVersion)
	}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(data)) { // each point takes several bytes
		d.fail("point count %d larger than the message", n)
	}
	pts := make([]model.TelemetryPoint, 0, min(n, uint64(len(data))))
	var prev int64
	for i := uint64(0); i < n && d.err == nil; i++ {
		p := model.TelemetryPoint{TenantID: tenantID, DeviceID: deviceID}
		p.Metric = d.str()
		prev += d.varint()
		p.Time = time.Unix(0, prev).UTC()
		switch k := model.ValueKind([]byte{d.byte()}); k {
		case model.KindNumber, model.KindBool:
			p.Kind, p.Num = k, math.Float64frombits(d.uint64())
		case model.KindString, model.KindData:
			p.Kind, p.Text = k, d.str()
		default:
			d.fail("unknown kind %q", k)
		}
		pts = append(pts, p)
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d bytes after the last point", len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return pts, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("telemetry: bad stream message: "+format, a...)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if !d.skipVarint(n) {
		return 0
	}
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if !d.skipVarint(n) {
		return 0
	}
	return v
}

// skipVarint moves past a varint of n bytes, as encoding/binary reports
// it (n <= 0: truncated or overflowing).
func (d *decoder) skipVarint(n int) bool {
	if n <= 0 {
		d.fail("truncated or bad varint")
		return false
	}
	d.b = d.b[n:]
	return true
}

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
