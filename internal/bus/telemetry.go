package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Inbound telemetry of a scaled-out deployment goes through a work-queue
// stream, "<PREFIX>_TELEMETRY" on "<prefix>.telemetry.<tenant>.<device>":
// the node holding a device's connection publishes, every node takes its
// share through one shared durable, and a message is gone once acked.

const (
	// TelemetryDurable is the consumer every node shares.
	TelemetryDurable = "telemetry-ingest"
	// defaultTelemetryAckWait is short so that messages held by a node
	// that died go to another one soon.
	defaultTelemetryAckWait = 10 * time.Second
	// telemetryInFlight bounds the messages one consumer loop holds
	// unsettled; telemetryMaxAckPending bounds all nodes together.
	telemetryInFlight      = 2048
	telemetryMaxAckPending = 1 << 14
	telemetryPull          = 512
	telemetryFetchWait     = time.Second
	// telemetryPubTimeout fails a publish the server did not confirm.
	telemetryPubTimeout   = 10 * time.Second
	telemetryMaxPending   = 8192
	defaultTelemetryKeep  = 24 * time.Hour
	telemetryMaxStallWait = 5 * time.Second
)

// telemetrySubject returns "<prefix>.telemetry.<tenant>.<device>".
func (b *Bus) telemetrySubject(tenantID, deviceID string) (string, error) {
	if tenantID == "" || validTenant(tenantID) != nil {
		return "", fmt.Errorf("bus: invalid tenant ID %q: must be [A-Za-z0-9_-] and not start with '_'", tenantID)
	}
	if !tokenRe.MatchString(deviceID) {
		return "", fmt.Errorf("bus: invalid device ID %q: must be [A-Za-z0-9_-]", deviceID)
	}
	return b.Subject("telemetry", tenantID, deviceID), nil
}

// TelemetryStreamName returns the name of the telemetry stream.
func (b *Bus) TelemetryStreamName() string { return b.tstream }

// TelemetryAck is the outcome of one PublishTelemetry.
type TelemetryAck struct{ f jetstream.PubAckFuture }

// Wait returns nil once the stream stored the message, or the error that
// made publishing fail. It always returns: an unconfirmed publish fails
// after a timeout.
func (a TelemetryAck) Wait() error {
	select {
	case <-a.f.Ok():
		return nil
	case err := <-a.f.Err():
		return fmt.Errorf("bus: publish telemetry: %w", err)
	}
}

// PublishTelemetry sends data to the telemetry stream for the device
// without waiting for the stream to store it: many publishes may be in
// flight; the returned ack says when this one is stored. It blocks while
// too many are in flight (until ctx's deadline, at most a few seconds).
func (b *Bus) PublishTelemetry(ctx context.Context, tenantID, deviceID string, data []byte) (TelemetryAck, error) {
	subj, err := b.telemetrySubject(tenantID, deviceID)
	if err != nil {
		return TelemetryAck{}, err
	}
	if err := ctx.Err(); err != nil {
		return TelemetryAck{}, err
	}
	stall := telemetryMaxStallWait
	if d, ok := ctx.Deadline(); ok {
		stall = max(min(stall, time.Until(d)), time.Millisecond)
	}
	f, err := b.tjs.PublishMsgAsync(&nats.Msg{Subject: subj, Data: data},
		jetstream.WithExpectStream(b.tstream), jetstream.WithStallWait(stall))
	if err != nil {
		return TelemetryAck{}, fmt.Errorf("bus: publish telemetry: %w", err)
	}
	return TelemetryAck{f}, nil
}

// TelemetryMsg is one message of the telemetry stream. The handler of
// ConsumeTelemetry settles each message exactly once, possibly later and
// from another goroutine: Ack once what it carries is committed, Retry
// when committing failed, Reject when it can never be processed.
type TelemetryMsg struct {
	TenantID, DeviceID string
	Data               []byte
	// Delivered is 1 on the first delivery.
	Delivered uint64

	m       jetstream.Msg
	b       *Bus
	release func()
	settled atomic.Bool
}

// Ack removes the message from the stream.
func (m *TelemetryMsg) Ack() {
	if !m.settled.CompareAndSwap(false, true) {
		return
	}
	defer m.release()
	if err := m.m.Ack(); err != nil {
		// The message comes back after the ack wait; writes are idempotent.
		m.b.log.Warn("ack telemetry", "device", m.DeviceID, "err", err)
	}
}

// Retry has the message delivered again after a backoff (Config.RetryBackoff).
func (m *TelemetryMsg) Retry(cause error) {
	if !m.settled.CompareAndSwap(false, true) {
		return
	}
	defer m.release()
	bo := m.b.cfg.RetryBackoff
	delay := bo[min(int(max(m.Delivered, 1)), len(bo))-1]
	// Debug: whatever failed (the store) logs once per batch.
	m.b.log.Debug("telemetry not stored, will retry", "tenant", m.TenantID, "device", m.DeviceID,
		"attempt", m.Delivered, "retry_in", delay, "err", cause)
	if err := m.m.NakWithDelay(delay); err != nil {
		m.b.log.Warn("nak telemetry", "device", m.DeviceID, "err", err)
	}
}

// Reject drops the message for good (it can never be stored).
func (m *TelemetryMsg) Reject(cause error) {
	if !m.settled.CompareAndSwap(false, true) {
		return
	}
	defer m.release()
	m.b.log.Error("undecodable telemetry dropped", "tenant", m.TenantID, "device", m.DeviceID, "err", cause)
	if err := m.m.Term(); err != nil {
		m.b.log.Warn("term telemetry", "device", m.DeviceID, "err", err)
	}
}

// ConsumeTelemetry runs fn for every message of the telemetry stream taken
// by this process through the shared durable TelemetryDurable: every
// process of the deployment gets a share, each message goes to one of
// them (again to another if it is not settled within a few seconds). fn
// runs on one goroutine, in delivery order, and must not block for long;
// it settles the message itself (see TelemetryMsg), and at most a few
// thousand messages are held unsettled at a time.
//
// The loop runs until ctx is done, stop is called or the bus is closed.
// Then messages fetched but not handed to fn are given back (another
// process gets them a second later), and stop waits (up to the ack wait)
// for fn's messages to be settled: keep whatever settles them running
// until stop returns.
func (b *Bus) ConsumeTelemetry(ctx context.Context, fn func(context.Context, *TelemetryMsg)) (stop func(), err error) {
	if fn == nil {
		return nil, errors.New("bus: nil telemetry handler")
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       TelemetryDurable,
		Description:   "Steward telemetry ingestion, shared by every node",
		FilterSubject: b.Subject("telemetry", ">"),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.cfg.TelemetryAckWait,
		MaxDeliver:    -1, // the stream's max age bounds retrying
		MaxAckPending: telemetryMaxAckPending,
	}
	return b.runConsumer(ctx, b.tstream, cfg, func(ctx context.Context, cons jetstream.Consumer) {
		b.consumeTelemetry(ctx, cons, cfg, fn)
	})
}

func (b *Bus) consumeTelemetry(ctx context.Context, cons jetstream.Consumer, cfg jetstream.ConsumerConfig, fn func(context.Context, *TelemetryMsg)) {
	var (
		mu   sync.Mutex
		cond = sync.NewCond(&mu)
		held int // handed to fn, not settled
	)
	release := func() {
		mu.Lock()
		held--
		cond.Broadcast()
		mu.Unlock()
	}
	// free waits for room to fetch more and says how much.
	free := func() int {
		mu.Lock()
		defer mu.Unlock()
		for held >= telemetryInFlight-telemetryPull && ctx.Err() == nil {
			cond.Wait()
		}
		return telemetryInFlight - held
	}
	stopWaiting := context.AfterFunc(ctx, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
	defer stopWaiting()
	for ctx.Err() == nil {
		n := min(free(), telemetryPull)
		if ctx.Err() != nil {
			break
		}
		// No context: a fetch ends by itself within telemetryFetchWait,
		// so at shutdown what it still brings is given back (Nak) instead
		// of being lost in flight until the ack wait.
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(telemetryFetchWait))
		if err == nil {
			for msg := range batch.Messages() {
				if ctx.Err() != nil {
					// To another node soon rather than after the ack wait;
					// delayed past this fetch, which would take it again.
					_ = msg.NakWithDelay(telemetryFetchWait)
					continue
				}
				mu.Lock()
				held++
				mu.Unlock()
				b.handleTelemetry(ctx, msg, release, fn)
			}
			err = batch.Error()
		}
		if err == nil || errors.Is(err, nats.ErrTimeout) || ctx.Err() != nil {
			continue
		}
		b.log.Warn("fetch telemetry", "err", err)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			if c, err := b.js.CreateOrUpdateConsumer(ctx, b.tstream, cfg); err == nil {
				cons = c
			}
		}
		sleepCtx(ctx, time.Second)
	}
	// Wait for fn's messages to be settled; bounded, so that a handler
	// that lost one does not hold shutdown (it is redelivered).
	settled := make(chan struct{})
	go func() {
		mu.Lock()
		for held > 0 {
			cond.Wait()
		}
		mu.Unlock()
		close(settled)
	}()
	t := time.NewTimer(b.cfg.TelemetryAckWait)
	defer t.Stop()
	select {
	case <-settled:
	case <-t.C:
		b.log.Warn("telemetry messages still unsettled at shutdown; they are redelivered")
	}
}

// handleTelemetry hands one fetched message to fn, or rejects it.
func (b *Bus) handleTelemetry(ctx context.Context, msg jetstream.Msg, release func(), fn func(context.Context, *TelemetryMsg)) {
	tm := &TelemetryMsg{m: msg, b: b, Data: msg.Data(), release: release}
	if md, err := msg.Metadata(); err == nil {
		tm.Delivered = md.NumDelivered
	}
	rest, ok := strings.CutPrefix(msg.Subject(), b.Subject("telemetry")+".")
	tenant, device, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || b.telemetryCheck(tenant, device) != nil {
		tm.Reject(fmt.Errorf("bad subject %q", msg.Subject()))
		return
	}
	tm.TenantID, tm.DeviceID = tenant, device
	fn(ctx, tm)
}

func (b *Bus) telemetryCheck(tenantID, deviceID string) error {
	_, err := b.telemetrySubject(tenantID, deviceID)
	return err
}
