package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/steward-iot/steward/internal/model"
)

// Event is a domain event as carried on the bus.
type Event = model.Event

const (
	// platformToken stands for "no tenant" in subjects. Tenant IDs may not
	// start with '_', so no tenant can subscribe to platform events.
	platformToken = "_platform"
	fetchBatch    = 10
	ackWait       = 30 * time.Second
	// maxDeliver is large so that an event survives a long outage of
	// whatever the worker talks to; with the default backoff (capped at
	// 5m) that is days of retrying.
	maxDeliver = 1000
	// eventBatchWait bounds the wait for the acknowledgements of one
	// PublishEvents call when its context sets no deadline.
	eventBatchWait = 10 * time.Second
)

// eventSubject returns "<prefix>.events.<tenant>.<type>".
func (b *Bus) eventSubject(tenantID, typ string) (string, error) {
	if err := validTenant(tenantID); err != nil {
		return "", err
	}
	if typ == "" {
		return "", errors.New("bus: event type is empty")
	}
	for _, tok := range strings.Split(typ, ".") {
		if !tokenRe.MatchString(tok) {
			return "", fmt.Errorf("bus: invalid event type %q: must be dot separated tokens of [A-Za-z0-9_-]", typ)
		}
	}
	if tenantID == "" {
		tenantID = platformToken
	}
	return b.Subject("events", tenantID, typ), nil
}

func validTenant(id string) error {
	if id != "" && (!tokenRe.MatchString(id) || id[0] == '_') {
		return fmt.Errorf("bus: invalid tenant ID %q: must be [A-Za-z0-9_-] and not start with '_'", id)
	}
	return nil
}

// PublishEvent stores ev in the events stream and sets ev.Seq. ev.ID is the
// JetStream message ID, so re-publishing the same event within the
// duplicate window (an outbox relay retrying after a crash) stores nothing
// and returns the original sequence.
func (b *Bus) PublishEvent(ctx context.Context, ev *model.Event) (uint64, error) {
	msg, err := b.eventMsg(ev)
	if err != nil {
		return 0, err
	}
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(b.stream))
	if err != nil {
		return 0, fmt.Errorf("bus: publish event %s: %w", ev.ID, err)
	}
	return b.eventStored(ev, ack)
}

// PublishEvents is PublishEvent for several events, in order, without a
// round trip each: all are sent, then their acknowledgements awaited. It
// returns how many events from the start are stored (their Seq set) and
// the error of the first that is not. Events after that one may be stored
// too; publishing them again is harmless (duplicates are recognised by
// ID), though the failed event then lands after them.
func (b *Bus) PublishEvents(ctx context.Context, evs []model.Event) (int, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	var sendErr error
	for i := range evs {
		msg, err := b.eventMsg(&evs[i])
		if err != nil {
			sendErr = err
			break
		}
		f, err := b.js.PublishMsgAsync(msg, jetstream.WithMsgID(evs[i].ID), jetstream.WithExpectStream(b.stream))
		if err != nil {
			sendErr = fmt.Errorf("bus: publish event %s: %w", evs[i].ID, err)
			break
		}
		futures = append(futures, f)
	}
	// Asynchronous publishes have no timeout of their own; a synchronous
	// one waits 5 s by default when ctx has no deadline.
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, eventBatchWait)
		defer cancel()
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if _, err := b.eventStored(&evs[i], ack); err != nil {
				return i, err
			}
		case err := <-f.Err():
			return i, fmt.Errorf("bus: publish event %s: %w", evs[i].ID, err)
		case <-ctx.Done():
			return i, fmt.Errorf("bus: publish event %s: %w", evs[i].ID, ctx.Err())
		}
	}
	return len(futures), sendErr
}

// eventMsg checks ev and encodes it for its subject.
func (b *Bus) eventMsg(ev *model.Event) (*nats.Msg, error) {
	if ev == nil {
		return nil, errors.New("bus: nil event")
	}
	if ev.ID == "" || strings.IndexFunc(ev.ID, unicode.IsControl) >= 0 {
		return nil, fmt.Errorf("bus: invalid event ID %q: must be non-empty without control characters", ev.ID)
	}
	subj, err := b.eventSubject(ev.TenantID, ev.Type)
	if err != nil {
		return nil, err
	}
	body := *ev
	body.Seq = 0 // the sequence is the stream's, not part of the stored body
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("bus: encode event %s: %w", ev.ID, err)
	}
	return &nats.Msg{Subject: subj, Data: data}, nil
}

// eventStored sets ev.Seq from the stream's acknowledgement.
func (b *Bus) eventStored(ev *model.Event, ack *jetstream.PubAck) (uint64, error) {
	if ack.Duplicate {
		if ack.Sequence == 0 { // clustered: the original is not stored yet
			return 0, fmt.Errorf("bus: publish event %s: duplicate of a message still in flight, retry", ev.ID)
		}
		b.log.Debug("duplicate event ignored", "id", ev.ID, "seq", ack.Sequence)
	}
	ev.Seq = ack.Sequence
	return ack.Sequence, nil
}

// LastEventSeq returns the sequence of the last stored event (0 if none).
func (b *Bus) LastEventSeq(ctx context.Context) (uint64, error) {
	s, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return 0, fmt.Errorf("bus: stream info: %w", err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// SubscribeEvents delivers, in order, every event of tenantID ("" = all
// tenants and platform events) with a stream sequence > afterSeq, then live
// ones, until ctx is done, stop is called or the bus is closed. afterSeq 0
// means only events published from now on. If afterSeq is older than the
// oldest stored event, delivery starts at the oldest; if it is beyond the
// last one (e.g. the stream was recreated) only new events are delivered.
//
// fn runs on one goroutine, must not block forever and must not call stop;
// stop waits for a running fn to return.
func (b *Bus) SubscribeEvents(ctx context.Context, tenantID string, afterSeq uint64, fn func(model.Event)) (stop func(), err error) {
	if fn == nil {
		return nil, errors.New("bus: nil event handler")
	}
	if err := validTenant(tenantID); err != nil {
		return nil, err
	}
	filter := b.Subject("events", ">")
	if tenantID != "" {
		filter = b.Subject("events", tenantID, ">")
	}
	return b.subscribe(ctx, filter, afterSeq, fn)
}

// SubscribeEventTypes delivers the live events of the given types, of
// every tenant, until ctx is done, stop is called or the bus is closed.
// Each node that needs to hear of a change (a cache to invalidate) uses
// it instead of reading the whole stream. A NATS server before 2.10 takes
// one filter per consumer, so there is one ordered consumer per type:
// events of one type arrive in order, events of different types may not.
// fn is called from one goroutine at a time and must not call stop.
func (b *Bus) SubscribeEventTypes(ctx context.Context, types []string, fn func(model.Event)) (stop func(), err error) {
	if fn == nil {
		return nil, errors.New("bus: nil event handler")
	}
	if len(types) == 0 {
		return nil, errors.New("bus: no event types to subscribe to")
	}
	var mu sync.Mutex
	one := func(ev model.Event) { mu.Lock(); defer mu.Unlock(); fn(ev) }
	return b.perType(types, func(typ, filter string) (func(), error) {
		return b.subscribe(ctx, filter, 0, one)
	})
}

// perType starts one subscription or consumer per event type; if one
// fails, those already started are stopped. The returned stop stops all.
func (b *Bus) perType(types []string, start func(typ, filter string) (stop func(), err error)) (func(), error) {
	stops := make([]func(), 0, len(types))
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	for _, typ := range types {
		filter, err := b.typeFilter(typ)
		if err == nil {
			var s func()
			if s, err = start(typ, filter); err == nil {
				stops = append(stops, s)
				continue
			}
		}
		stopAll()
		return nil, err
	}
	return stopAll, nil
}

// typeFilter is the subject filter for one event type of every tenant.
func (b *Bus) typeFilter(typ string) (string, error) {
	if _, err := b.eventSubject("", typ); err != nil { // validates typ
		return "", err
	}
	return b.Subject("events", "*", typ), nil
}

func (b *Bus) subscribe(ctx context.Context, filter string, afterSeq uint64, fn func(model.Event)) (stop func(), err error) {
	s, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return nil, fmt.Errorf("bus: stream info: %w", err)
	}
	// A concrete start sequence instead of DeliverNew: the ordered consumer
	// re-applies its initial policy when it resets before the first message,
	// and DeliverNew would then skip events published in between.
	st := s.CachedInfo().State
	start := st.LastSeq + 1
	if afterSeq > 0 && afterSeq < st.LastSeq {
		start = max(afterSeq+1, st.FirstSeq)
	}
	it, err := b.ordered(ctx, filter, start)
	if err != nil {
		return nil, err
	}
	stop, err = b.spawn(ctx, func(ctx context.Context) {
		next := start
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				it.Stop()
				if ctx.Err() != nil {
					return
				}
				// The ordered consumer recovers from reconnects itself; this
				// is what it cannot (e.g. stream deleted). Resume where we were.
				b.log.Warn("event subscription interrupted, resubscribing", "filter", filter, "err", err)
				for {
					if !sleepCtx(ctx, time.Second) {
						return
					}
					if it, err = b.ordered(ctx, filter, next); err == nil {
						break
					}
					b.log.Warn("resubscribe to events", "filter", filter, "err", err)
				}
				continue
			}
			ev, md, ok := b.decode(msg)
			if md != nil {
				next = md.Sequence.Stream + 1
			}
			if ok {
				fn(ev)
			}
		}
	})
	if err != nil {
		it.Stop()
	}
	return stop, err
}

// ordered starts an ordered (ephemeral, flow-controlled, self-healing)
// consumer on filter from stream sequence start.
func (b *Bus) ordered(ctx context.Context, filter string, start uint64) (jetstream.MessagesContext, error) {
	c, err := b.js.OrderedConsumer(ctx, b.stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create ordered consumer: %w", err)
	}
	it, err := c.Messages()
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe to events: %w", err)
	}
	return it, nil
}

// ConsumeEvents runs fn for every event through the durable pull consumer
// named durable, shared by every process that uses the same name: each
// event goes to one of them. Delivery is at least once, so fn should be
// idempotent (by event ID). An event is acked when fn returns nil and
// redelivered after a backoff (Config.RetryBackoff) when it returns an
// error. A new durable starts with the oldest stored event.
//
// The loop runs until ctx is done, stop is called or the bus is closed; fn
// then gets a cancelled context. stop waits for a running fn to return and
// must not be called from fn.
func (b *Bus) ConsumeEvents(ctx context.Context, durable string, fn func(context.Context, model.Event) error) (stop func(), err error) {
	if fn == nil {
		return nil, errors.New("bus: nil event handler")
	}
	if !tokenRe.MatchString(durable) {
		return nil, fmt.Errorf("bus: invalid durable name %q: must be [A-Za-z0-9_-]", durable)
	}
	return b.consume(ctx, jetstream.ConsumerConfig{
		Durable:       durable,
		FilterSubject: b.Subject("events", ">"),
		DeliverPolicy: jetstream.DeliverAllPolicy, // events stored before the worker first ran are not lost
	}, fn)
}

// ConsumeEventTypes is ConsumeEvents for the events of the given types
// only, starting with the events published after the durables were first
// created: it is for work that only matters while it is fresh (routing a
// change to the node holding a device's connection, which otherwise
// catches up when the device connects). There is one durable per type,
// named durable + "-" + the type with dots as underscores, since a NATS
// server before 2.10 takes one filter per consumer; fn may run
// concurrently for events of different types.
func (b *Bus) ConsumeEventTypes(ctx context.Context, durable string, types []string, fn func(context.Context, model.Event) error) (stop func(), err error) {
	if fn == nil {
		return nil, errors.New("bus: nil event handler")
	}
	if !tokenRe.MatchString(durable) {
		return nil, fmt.Errorf("bus: invalid durable name %q: must be [A-Za-z0-9_-]", durable)
	}
	if len(types) == 0 {
		return nil, errors.New("bus: no event types to consume")
	}
	return b.perType(types, func(typ, filter string) (func(), error) {
		return b.consume(ctx, jetstream.ConsumerConfig{
			Durable:       durable + "-" + strings.ReplaceAll(typ, ".", "_"),
			FilterSubject: filter,
			DeliverPolicy: jetstream.DeliverNewPolicy,
		}, fn)
	})
}

// consume runs the durable pull consumer cfg (acks explicit) until ctx
// is done, the returned stop is called or the bus is closed.
func (b *Bus) consume(ctx context.Context, cfg jetstream.ConsumerConfig, fn func(context.Context, model.Event) error) (stop func(), err error) {
	durable := cfg.Durable
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	cfg.AckWait = ackWait
	cfg.MaxDeliver = maxDeliver
	return b.runConsumer(ctx, b.stream, cfg, func(ctx context.Context, cons jetstream.Consumer) {
		for ctx.Err() == nil {
			batch, err := cons.Fetch(fetchBatch, jetstream.FetchContext(ctx))
			if err == nil {
				for msg := range batch.Messages() {
					if ctx.Err() != nil {
						_ = msg.Nak() // hand it to another worker now rather than after AckWait
						continue
					}
					b.handle(ctx, durable, msg, fn)
				}
				err = batch.Error()
			}
			if err == nil || ctx.Err() != nil {
				continue
			}
			b.log.Warn("fetch events", "durable", durable, "err", err)
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				if c, err := b.js.CreateOrUpdateConsumer(ctx, b.stream, cfg); err == nil {
					cons = c
				}
			}
			sleepCtx(ctx, time.Second)
		}
	})
}

// runConsumer creates or updates the durable cfg on stream and runs loop
// with it on a tracked goroutine until ctx is done, the returned stop is
// called or the bus is closed; stop waits for loop to return.
func (b *Bus) runConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig, loop func(context.Context, jetstream.Consumer)) (stop func(), err error) {
	cons, err := b.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("bus: create consumer %s: %w", cfg.Durable, err)
	}
	return b.spawn(ctx, func(ctx context.Context) { loop(ctx, cons) })
}

// spawn runs fn on a goroutine the bus tracks, with a context that ends
// with ctx, with the returned stop or when the bus closes; stop waits for
// fn to return. It fails once Close has begun.
func (b *Bus) spawn(ctx context.Context, fn func(context.Context)) (stop func(), err error) {
	if err := b.track(); err != nil {
		return nil, err
	}
	ctx, cancel := b.runCtx(ctx)
	done := make(chan struct{})
	go func() {
		defer b.wg.Done()
		defer close(done)
		defer cancel()
		fn(ctx)
	}()
	return func() { cancel(); <-done }, nil
}

// handle runs fn on one message and acks, naks with backoff, or terminates it.
func (b *Bus) handle(ctx context.Context, durable string, msg jetstream.Msg, fn func(context.Context, model.Event) error) {
	ev, md, ok := b.decode(msg)
	if !ok {
		_ = msg.Term() // retrying cannot fix a malformed message
		return
	}
	err := fn(ctx, ev)
	if err == nil {
		if err := msg.Ack(); err != nil {
			b.log.Warn("ack event", "durable", durable, "seq", ev.Seq, "err", err)
		}
		return
	}
	n := int(md.NumDelivered)
	if n >= maxDeliver {
		b.log.Error("event handler failed, giving up", "durable", durable, "seq", ev.Seq, "id", ev.ID, "type", ev.Type, "attempts", n, "err", err)
		_ = msg.Term()
		return
	}
	delay := b.cfg.RetryBackoff[min(n, len(b.cfg.RetryBackoff))-1]
	b.log.Warn("event handler failed, will retry", "durable", durable, "seq", ev.Seq, "id", ev.ID, "type", ev.Type, "attempt", n, "retry_in", delay, "err", err)
	if err := msg.NakWithDelay(delay); err != nil {
		b.log.Warn("nak event", "durable", durable, "seq", ev.Seq, "err", err)
	}
}

// decode parses a stored event and sets its Seq from the stream sequence.
func (b *Bus) decode(msg jetstream.Msg) (model.Event, *jetstream.MsgMetadata, bool) {
	var ev model.Event
	md, err := msg.Metadata()
	if err != nil {
		b.log.Error("event without JetStream metadata", "subject", msg.Subject(), "err", err)
		return ev, nil, false
	}
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		b.log.Error("undecodable event skipped", "subject", msg.Subject(), "seq", md.Sequence.Stream, "err", err)
		return ev, md, false
	}
	ev.Seq = md.Sequence.Stream
	return ev, md, true
}

// runCtx derives a context that ends with ctx or with the bus.
func (b *Bus) runCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(b.ctx, cancel)
	return ctx, func() { unhook(); cancel() }
}

// sleepCtx waits d or until ctx is done; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
