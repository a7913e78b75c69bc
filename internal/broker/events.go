package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward/internal/commands"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/twin"
)

// Event types the broker raises.
const (
	EventConnected    = "device.connected"
	EventDisconnected = "device.disconnected"
	EventAuthFailed   = "device.auth_failed"
)

// Connection events go straight onto the bus (bus.PublishEvent), not
// through the store's outbox: they record observations, not changes of
// record, so there is no transaction for them to be atomic with, and a
// reconnect storm of thousands of devices must not become thousands of
// write transactions on the database. They are published from one
// goroutine behind a bounded queue; when the bus cannot keep up, events
// are dropped and counted rather than slowing connections down. last_seen
// is written the same way, at most once a minute per device while
// messages flow (Config.TouchEvery).

type noteKind uint8

const (
	noteConnected noteKind = iota + 1
	noteDisconnected
	noteAuthFailed
	noteTouch
)

type note struct {
	kind               noteKind
	tenantID, deviceID string
	at                 time.Time
	data               map[string]any
}

func (b *Broker) note(n note) {
	select {
	case b.notes <- n:
	default:
		b.log.Warn("mqtt: connection event queue full, event dropped", "device", n.deviceID)
	}
}

func (b *Broker) notifier() {
	defer b.wg.Done()
	for {
		select {
		case n := <-b.notes:
			b.deliverNote(n)
		case <-b.ctx.Done():
			for { // what is queued still goes out (disconnects at shutdown)
				select {
				case n := <-b.notes:
					b.deliverNote(n)
				default:
					return
				}
			}
		}
	}
}

func (b *Broker) deliverNote(n note) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n.kind == noteTouch {
		if err := b.d.Store.TouchDevice(ctx, n.tenantID, n.deviceID, n.at); err != nil {
			b.log.Warn("mqtt: recording last seen", "device", n.deviceID, "err", err)
		}
		return
	}
	typ := map[noteKind]string{noteConnected: EventConnected, noteDisconnected: EventDisconnected, noteAuthFailed: EventAuthFailed}[n.kind]
	data, _ := json.Marshal(n.data)
	ev := &model.Event{ID: ids.New("evt"), TenantID: n.tenantID, Type: typ, Subject: n.deviceID, Time: n.at, Data: data}
	if b.d.OnConnectionEvent != nil {
		b.d.OnConnectionEvent(*ev)
	}
	if _, err := b.d.Bus.PublishEvent(ctx, ev); err != nil {
		b.log.Warn("mqtt: publishing a connection event", "type", typ, "device", n.deviceID, "err", err)
	}
}

// ---- platform events the broker enforces or acts on ----

// DeviceEvents are the event types that concern a connected device and
// that HandleDeviceEvent acts on: internal/cluster routes each of them to
// the node that holds the device's connection. Cutting a session off
// (revocation, suspension, deletion) is not among them: every node's
// authenticator hears of those and calls CutOff.
var DeviceEvents = []string{"device.state_changed", twin.EventDesiredChanged, commands.EventCreated,
	ota.EventAssigned, ota.EventWithdrawn, eventMitigated}

// HandleDeviceEvent acts on an event about a device connected here (one of
// DeviceEvents): the new desired twin is pushed, new commands and update
// assignments are delivered, rights follow a quarantine, an automatic
// mitigation's disconnect is carried out. It reports whether the device
// is connected to this node; it does not block (the work is queued, and
// every push reads the current record, so a repeated or reordered event
// does no harm).
func (b *Broker) HandleDeviceEvent(ev model.Event) bool {
	var d struct {
		DeviceID string `json:"device_id"`
		Action   string `json:"action"` // device.mitigated
		Result   string `json:"result"`
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.DeviceID == "" {
		return false
	}
	s := b.reg.device(d.DeviceID)
	if s == nil || s.tenantID != ev.TenantID {
		return false
	}
	switch ev.Type {
	case "device.state_changed":
		b.schedule(job{kind: jobState, s: s})
	case twin.EventDesiredChanged:
		b.schedule(job{kind: jobTwin, s: s})
	case commands.EventCreated:
		b.schedule(job{kind: jobCommands, s: s})
	case ota.EventAssigned, ota.EventWithdrawn:
		b.schedule(job{kind: jobOTA, s: s})
	case eventMitigated:
		// A disconnect decided on the node that saw the traffic reaches the
		// node the device is on (a session opened since is left alone).
		if d.Action == "disconnect" && d.Result == "applied" && s.connectedAt.Before(ev.Time) {
			go b.kick(s, codeAdmin, "disconnected by an automatic mitigation", ev.Time)
		}
	}
	return true
}

// checkState reads the device's lifecycle state and applies it to the
// session: after a state change, and once the device's events are routed
// here after it connected.
func (b *Broker) checkState(ctx context.Context, s *session) {
	dev, err := b.d.Store.GetDevice(ctx, s.tenantID, s.deviceID)
	if errors.Is(err, store.ErrNotFound) {
		b.kick(s, codeNotAuthorized, "device deleted", b.now())
		return
	}
	if err != nil {
		b.log.Warn("mqtt: reading a device's state", "device", s.deviceID, "err", err)
		return
	}
	b.applyState(s, dev.State, b.now())
}

// eventMitigated is alarm.EventMitigated (the broker does not import the
// alarm package, which acts through the broker).
const eventMitigated = "device.mitigated"

// applyState reduces or ends a connected device's rights after a
// lifecycle change.
func (b *Broker) applyState(s *session, to model.State, at time.Time) {
	switch to {
	case model.StateQuarantined:
		if s.quarantined.Swap(true) {
			return
		}
		// Rights shrink now (the ACL reads the flag); subscriptions outside
		// ota/ are removed from the session.
		for filter := range s.cl.State.Subscriptions.GetAll() {
			if !deviceMaySubscribe(s.deviceID, filter, true) {
				b.srv.Topics.Unsubscribe(filter, s.cl.ID)
				s.cl.State.Subscriptions.Delete(filter)
			}
		}
		b.log.Info("mqtt device quarantined: rights reduced to ota/", "device", s.deviceID, "after", time.Since(at).String())
	default:
		if !identity.MayConnect(to) {
			b.kick(s, codeNotAuthorized, fmt.Sprintf("device is %s", to), at)
			return
		}
		if s.quarantined.Load() {
			b.kick(s, codeAdmin, "quarantine lifted: connect again", at)
		}
	}
}

// kick closes a device's connection (MQTT 5: DISCONNECT with the code).
func (b *Broker) kick(s *session, code byte, reason string, at time.Time) {
	if s.cl.Properties.ProtocolVersion == 5 {
		_ = b.srv.DisconnectClient(s.cl, packets.Code{Code: code, Reason: reason})
	} else {
		s.cl.Stop(packets.Code{Code: code, Reason: reason})
	}
	b.log.Info("mqtt device disconnected by the platform", "device", s.deviceID, "reason", reason,
		"after_event", time.Since(at).String())
}

func sameSerial(a, b string) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimPrefix(strings.ReplaceAll(s, ":", ""), "0x"))
		return strings.TrimLeft(s, "0")
	}
	return norm(a) == norm(b)
}

// ---- deferred work: twin pushes and command delivery ----

type jobKind uint8

const (
	jobTwin jobKind = iota + 1
	jobCommands
	jobReconnect
	jobOTA
	jobState
)

type job struct {
	kind jobKind
	s    *session
}

func (b *Broker) schedule(j job) {
	select {
	case b.jobs <- j:
	default:
		b.log.Warn("mqtt: work queue full; the device gets it on its next connection", "device", j.s.deviceID)
	}
}

// scheduleAlways queues j, or runs it on a goroutine of its own when the
// queue is full: for work that no later connection would make up for.
func (b *Broker) scheduleAlways(j job) {
	select {
	case b.jobs <- j:
	default:
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.run(j)
		}()
	}
}

func (b *Broker) worker() {
	defer b.wg.Done()
	for {
		select {
		case j := <-b.jobs:
			b.run(j)
		case <-b.ctx.Done():
			return
		}
	}
}

func (b *Broker) run(j job) {
	if j.s.cl.Closed() {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	switch j.kind {
	case jobTwin:
		b.pushTwin(ctx, j.s)
	case jobCommands:
		b.deliverCommands(ctx, j.s)
	case jobOTA:
		b.pushAssignment(ctx, j.s)
	case jobState:
		b.checkState(ctx, j.s)
	case jobReconnect:
		b.pushAssignment(ctx, j.s)
		if b.subscribedTo(j.s, DeviceTopic(j.s.deviceID, topicTwinDesired)) ||
			b.subscribedTo(j.s, DeviceTopic(j.s.deviceID, topicTwinDelta)) {
			b.pushTwin(ctx, j.s)
		}
		b.deliverCommands(ctx, j.s)
	}
}

func (b *Broker) pushTwin(ctx context.Context, s *session) {
	tw, err := b.d.Twin.Get(ctx, s.tenantID, s.deviceID)
	if err != nil {
		b.log.Warn("mqtt: reading the twin", "device", s.deviceID, "err", err)
		return
	}
	b.publishTwin(s, tw, true)
}

func (b *Broker) subscribedTo(s *session, topic string) bool {
	for filter := range s.cl.State.Subscriptions.GetAll() {
		if matchFilter(filter, topic) {
			return true
		}
	}
	return false
}

// deliverCommands publishes the device's pending commands, oldest first,
// if it is subscribed to its command topic; each is marked sent.
func (b *Broker) deliverCommands(ctx context.Context, s *session) {
	if s.quarantined.Load() || !b.subscribedTo(s, CommandTopic(s.deviceID, "x")) {
		return
	}
	cmds, err := b.d.Commands.Pending(ctx, s.tenantID, s.deviceID)
	if err != nil {
		b.log.Warn("mqtt: reading pending commands", "device", s.deviceID, "err", err)
		return
	}
	for i := range cmds {
		c := &cmds[i]
		if s.cl.Closed() {
			return
		}
		// Recorded first: a device may answer before a write after the
		// publish would land. If the publish then fails, the command is
		// sent again on the next connection (delivery is at least once).
		if err := b.d.Commands.MarkSent(ctx, c); err != nil {
			b.log.Warn("mqtt: recording a sent command", "device", s.deviceID, "command", c.ID, "err", err)
			return
		}
		if c.Status.Final() {
			continue
		}
		if err := b.srv.Publish(CommandTopic(s.deviceID, c.ID), commands.Message(c), false, 1); err != nil {
			b.log.Warn("mqtt: publishing a command", "device", s.deviceID, "command", c.ID, "err", err)
			return
		}
	}
}

// CutOff ends the session of a device the identity service says must go
// now (revoked certificate or token, suspended, decommissioned, deleted,
// transferred). It is called on the authenticator's goroutine and does not
// block: the disconnect runs on its own.
func (b *Broker) CutOff(c identity.CutOff) {
	s := b.reg.device(c.DeviceID)
	if s == nil || s.tenantID != c.TenantID {
		return
	}
	if c.CertSerial != "" && (s.method != identity.MethodCertificate || !sameSerial(c.CertSerial, s.certSerial)) {
		return
	}
	if c.Method != "" && s.method != c.Method {
		return
	}
	at := time.Now()
	if c.Method == identity.MethodToken && s.token != "" {
		// The device's token was replaced or revoked: a session that
		// connected with the current token (e.g. the new one, connecting
		// before this news arrived) stays; others end.
		go func() {
			ctx, cancel := context.WithTimeout(b.ctx, b.d.AuthCheck)
			defer cancel()
			if _, err := b.d.Auth.AuthenticateToken(ctx, s.deviceID, s.token); err != nil {
				b.kick(s, codeNotAuthorized, c.Reason, at)
			}
		}()
		return
	}
	go b.kick(s, codeNotAuthorized, c.Reason, at)
}
