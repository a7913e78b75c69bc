// Package cluster ties the nodes of one platform together over the bus.
// A node subscribes to the subjects of every device connected to it,
// <prefix>.dev.<tenant>.<device>.<what>, so that a question about a
// device, or an event for it, reaches the node holding its connection
// and only that node; when no node holds it, NATS answers "no responders"
// at once, and the device catches up when it next connects.
//
// With the embedded bus there is one node and no other process on the
// bus, so one wildcard subscription serves every device.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/model"
)

const (
	// askTimeout bounds a question or an event sent to another node.
	askTimeout = 2 * time.Second
	// flushTimeout bounds waiting for the bus to confirm a subscription.
	flushTimeout = 2 * time.Second

	whatConnection = "connection"
	whatEvent      = "event"
)

// Replies to a routed event.
var (
	replyDelivered = []byte("1")
	replyNotHere   = []byte("0") // only a single node may say so: others stay silent
)

// token is an ID that is one subject token and no wildcard.
var token = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Local is this node's broker as the router needs it (*broker.Broker).
type Local interface {
	// Connection reports the device's connection on this node.
	Connection(tenantID, deviceID string) broker.Connection
	// HandleDeviceEvent acts on an event for a device; false when the
	// device is not connected here. It must not block.
	HandleDeviceEvent(ev model.Event) bool
}

// Router answers "is this device connected, and where" for the whole
// platform, and carries device-bound events to the node holding the
// device's connection.
type Router struct {
	b      *bus.Bus
	local  func() Local // nil until the broker runs
	log    *slog.Logger
	single bool // embedded bus: this is the only node

	mu   sync.Mutex
	subs map[string]*nats.Subscription // by device subject prefix; nil once closed
	in   chan *nats.Msg
	done chan struct{}
	once sync.Once
}

// NewRouter answers for the devices of local (this node's broker, which
// may return nil before it runs) and reaches the other nodes through b.
func NewRouter(b *bus.Bus, local func() Local, log *slog.Logger) (*Router, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{b: b, local: local, log: log.With("component", "cluster"), single: b.Embedded(),
		subs: map[string]*nats.Subscription{}, in: make(chan *nats.Msg, 4096), done: make(chan struct{})}
	if r.single {
		s, err := b.Conn().ChanSubscribe(b.Subject("dev", "*", "*", whatEvent), r.in)
		if err != nil {
			return nil, fmt.Errorf("cluster: subscribing to device events: %w", err)
		}
		r.subs["*"] = s
	}
	go r.answer()
	return r, nil
}

func (r *Router) subject(tenantID, deviceID, what string) string {
	return r.b.Subject("dev", tenantID, deviceID, what)
}

// Presence follows the broker (broker.Deps.OnPresence): a device online
// here gets its subjects subscribed, one that left is unsubscribed. When
// it returns for a device coming online, the subscription is in place on
// the bus, so what is routed to the device from then on reaches this node.
func (r *Router) Presence(tenantID, deviceID string, online bool) {
	if r.single || !token.MatchString(tenantID) || !token.MatchString(deviceID) {
		return
	}
	subj := r.subject(tenantID, deviceID, "*")
	r.mu.Lock()
	if r.subs == nil { // closed
		r.mu.Unlock()
		return
	}
	sub, ok := r.subs[subj]
	switch {
	case online && !ok:
		s, err := r.b.Conn().ChanSubscribe(subj, r.in)
		if err != nil {
			r.mu.Unlock()
			r.log.Warn("subscribing to a device subject", "device", deviceID, "err", err)
			return
		}
		r.subs[subj] = s
	case !online && ok:
		_ = sub.Unsubscribe()
		delete(r.subs, subj)
	}
	r.mu.Unlock()
	if online && !ok {
		if err := r.b.Conn().FlushTimeout(flushTimeout); err != nil {
			r.log.Warn("confirming a device subscription", "device", deviceID, "err", err)
		}
	}
}

// answer replies to questions and events for devices connected here.
func (r *Router) answer() {
	for {
		select {
		case <-r.done:
			return
		case m := <-r.in:
			if m.Reply == "" {
				continue
			}
			var l Local
			if r.local != nil {
				l = r.local()
			}
			switch what := lastToken(m.Subject); {
			case what == whatConnection && l != nil:
				var q struct{ TenantID, DeviceID string }
				if json.Unmarshal(m.Data, &q) != nil {
					continue
				}
				c := l.Connection(q.TenantID, q.DeviceID)
				if !c.Connected {
					continue // it left meanwhile; another node may answer
				}
				if b, err := json.Marshal(c); err == nil {
					_ = m.Respond(b)
				}
			case what == whatEvent:
				var ev model.Event
				if json.Unmarshal(m.Data, &ev) != nil {
					continue
				}
				switch {
				case l != nil && l.HandleDeviceEvent(ev):
					_ = m.Respond(replyDelivered)
				case r.single:
					_ = m.Respond(replyNotHere)
				}
			}
		}
	}
}

func lastToken(subject string) string {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			return subject[i+1:]
		}
	}
	return subject
}

// Connection reports the device's live connection on any node.
func (r *Router) Connection(tenantID, deviceID string) broker.Connection {
	if r.local != nil {
		if l := r.local(); l != nil {
			if c := l.Connection(tenantID, deviceID); c.Connected {
				return c
			}
		}
	}
	if r.single || !token.MatchString(tenantID) || !token.MatchString(deviceID) {
		return broker.Connection{}
	}
	q, _ := json.Marshal(struct{ TenantID, DeviceID string }{tenantID, deviceID})
	m, err := r.b.Conn().Request(r.subject(tenantID, deviceID, whatConnection), q, askTimeout)
	if err != nil {
		if !errors.Is(err, nats.ErrNoResponders) {
			r.log.Debug("asking where a device is connected", "device", deviceID, "err", err)
		}
		return broker.Connection{}
	}
	var c broker.Connection
	if json.Unmarshal(m.Data, &c) != nil {
		return broker.Connection{}
	}
	return c
}

// Route carries a device-bound event (broker.DeviceEvents) to the node
// holding the device's connection. It returns nil once that node has
// taken it, or when no node holds the device (it catches up on its next
// connection), and an error, to be retried, when the answer did not come.
// It is the handler of a durable consumer shared by all nodes
// (bus.ConsumeEventTypes), so each event is routed once per platform.
func (r *Router) Route(ctx context.Context, ev model.Event) error {
	var d struct {
		DeviceID string `json:"device_id"`
	}
	if json.Unmarshal(ev.Data, &d) != nil || !token.MatchString(d.DeviceID) || !token.MatchString(ev.TenantID) {
		return nil // not about one device: nothing to route
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	_, err = r.b.Conn().RequestWithContext(ctx, r.subject(ev.TenantID, d.DeviceID, whatEvent), data)
	if err == nil || errors.Is(err, nats.ErrNoResponders) {
		return nil
	}
	return fmt.Errorf("routing %s to device %s: %w", ev.Type, d.DeviceID, err)
}

// Close unsubscribes every device subject and stops answering.
func (r *Router) Close() {
	r.once.Do(func() {
		r.mu.Lock()
		for _, s := range r.subs {
			_ = s.Unsubscribe()
		}
		r.subs = nil
		r.mu.Unlock()
		close(r.done)
	})
}
