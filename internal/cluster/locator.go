// Package cluster ties the nodes of one platform together over the bus.
// A node subscribes to the subject of every device connected to it,
// <prefix>.dev.<tenant>.<device>.<what>, so that a question about a
// device reaches the node holding its connection, and only that node;
// when no node holds it, NATS answers "no responders" at once.
package cluster

import (
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/bus"
)

// askTimeout bounds a question to another node.
const askTimeout = 2 * time.Second

// token is an ID that is one subject token and no wildcard.
var token = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Locator answers "is this device connected, and where" for the whole
// platform: from this node's broker, or by asking on the device's subject.
type Locator struct {
	b     *bus.Bus
	local func(tenantID, deviceID string) broker.Connection
	log   *slog.Logger

	mu   sync.Mutex
	subs map[string]*nats.Subscription // by tenant/device subject
	in   chan *nats.Msg
	done chan struct{}
	once sync.Once
}

// NewLocator answers for the devices of local (this node's broker) and
// asks the other nodes through b.
func NewLocator(b *bus.Bus, local func(tenantID, deviceID string) broker.Connection, log *slog.Logger) *Locator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Locator{b: b, local: local, log: log.With("component", "cluster"), subs: map[string]*nats.Subscription{},
		in: make(chan *nats.Msg, 4096), done: make(chan struct{})}
	go l.answer()
	return l
}

func (l *Locator) subject(tenantID, deviceID string) string {
	return l.b.Subject("dev", tenantID, deviceID, "connection")
}

// Presence follows the broker (broker.Deps.OnPresence): a device online
// here gets its subject subscribed, one that left is unsubscribed.
func (l *Locator) Presence(tenantID, deviceID string, online bool) {
	if !token.MatchString(tenantID) || !token.MatchString(deviceID) {
		return
	}
	subj := l.subject(tenantID, deviceID)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.subs == nil { // closed
		return
	}
	sub, ok := l.subs[subj]
	switch {
	case online && !ok:
		s, err := l.b.Conn().ChanSubscribe(subj, l.in)
		if err != nil {
			l.log.Warn("subscribing to a device subject", "device", deviceID, "err", err)
			return
		}
		l.subs[subj] = s
	case !online && ok:
		_ = sub.Unsubscribe()
		delete(l.subs, subj)
	}
}

// answer replies to questions about devices connected here.
func (l *Locator) answer() {
	for {
		select {
		case <-l.done:
			return
		case m := <-l.in:
			var q struct{ TenantID, DeviceID string }
			if json.Unmarshal(m.Data, &q) != nil || m.Reply == "" {
				continue
			}
			c := l.local(q.TenantID, q.DeviceID)
			if !c.Connected {
				continue // it left meanwhile; another node may answer
			}
			if b, err := json.Marshal(c); err == nil {
				_ = m.Respond(b)
			}
		}
	}
}

// Connection reports the device's live connection on any node.
func (l *Locator) Connection(tenantID, deviceID string) broker.Connection {
	if c := l.local(tenantID, deviceID); c.Connected {
		return c
	}
	if !token.MatchString(tenantID) || !token.MatchString(deviceID) {
		return broker.Connection{}
	}
	q, _ := json.Marshal(struct{ TenantID, DeviceID string }{tenantID, deviceID})
	m, err := l.b.Conn().Request(l.subject(tenantID, deviceID), q, askTimeout)
	if err != nil {
		if !errors.Is(err, nats.ErrNoResponders) {
			l.log.Debug("asking where a device is connected", "device", deviceID, "err", err)
		}
		return broker.Connection{}
	}
	var c broker.Connection
	if json.Unmarshal(m.Data, &c) != nil {
		return broker.Connection{}
	}
	return c
}

// Close unsubscribes every device subject and stops answering.
func (l *Locator) Close() {
	l.once.Do(func() {
		l.mu.Lock()
		for _, s := range l.subs {
			_ = s.Unsubscribe()
		}
		l.subs = nil
		l.mu.Unlock()
		close(l.done)
	})
}
