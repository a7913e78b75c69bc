package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/testutil/natstest"
)

// node is the broker side of a node as the router sees it: the devices
// connected to it and the events it was handed.
type node struct {
	mu   sync.Mutex
	devs map[string]broker.Connection
	got  chan model.Event
}

func newNode(devs ...string) *node {
	n := &node{devs: map[string]broker.Connection{}, got: make(chan model.Event, 100)}
	for _, d := range devs {
		n.devs[d] = broker.Connection{Connected: true, Listener: "mqtts", Protocol: 5}
	}
	return n
}

func (n *node) Connection(tenantID, deviceID string) broker.Connection {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.devs[tenantID+"/"+deviceID]
}

func (n *node) HandleDeviceEvent(ev model.Event) bool {
	var d struct {
		DeviceID string `json:"device_id"`
	}
	_ = json.Unmarshal(ev.Data, &d)
	if !n.Connection(ev.TenantID, d.DeviceID).Connected {
		return false
	}
	n.got <- ev
	return true
}

func (n *node) local() Local { return n }

func deviceEvent(tenantID, deviceID, typ string) model.Event {
	data, _ := json.Marshal(map[string]string{"device_id": deviceID})
	return model.Event{ID: "evt_" + deviceID + typ, TenantID: tenantID, Type: typ, Time: time.Now(), Data: data}
}

func expectEvent(t *testing.T, n *node, typ string) {
	t.Helper()
	select {
	case ev := <-n.got:
		if ev.Type != typ {
			t.Fatalf("got %s, want %s", ev.Type, typ)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s not delivered", typ)
	}
}

func expectNoEvent(t *testing.T, n *node) {
	t.Helper()
	select {
	case ev := <-n.got:
		t.Fatalf("unexpected %s", ev.Type)
	default:
	}
}

// sharedBus opens buses on the shared NATS server under one new prefix,
// as the nodes of one platform do.
func sharedBus(t *testing.T) func() *bus.Bus {
	prefix := natstest.Prefix(t)
	return func() *bus.Bus {
		b, err := bus.Open(context.Background(), bus.Config{URL: natstest.URL(), Prefix: prefix}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
}

// Two nodes on a shared NATS server: a question or an event about a device
// reaches the node that holds it, and only that node.
func TestRouterAcrossNodes(t *testing.T) {
	open := sharedBus(t)
	ba, bb := open(), open()
	a, other := newNode("ten_1/dev_1"), newNode()
	ra, err := NewRouter(ba, a.local, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb, err := NewRouter(bb, other.local, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	ctx := context.Background()

	if c := rb.Connection("ten_1", "dev_1"); c.Connected {
		t.Fatalf("before the device is announced: %+v", c)
	}
	// Not announced yet: no node holds it, so the event is done with (the
	// device catches up when it connects), and nobody got it.
	if err := rb.Route(ctx, deviceEvent("ten_1", "dev_1", "command.created")); err != nil {
		t.Fatalf("routing to an offline device: %v", err)
	}
	expectNoEvent(t, a)

	// Presence returns once the subscription is in place: no flush here.
	ra.Presence("ten_1", "dev_1", true)
	ra.Presence("ten_1", "dev_1", true) // a session taken over on the same node
	if err := rb.Route(ctx, deviceEvent("ten_1", "dev_1", "command.created")); err != nil {
		t.Fatalf("routing from the other node: %v", err)
	}
	expectEvent(t, a, "command.created")
	if err := ra.Route(ctx, deviceEvent("ten_1", "dev_1", "twin.desired_changed")); err != nil {
		t.Fatalf("routing from the same node: %v", err)
	}
	expectEvent(t, a, "twin.desired_changed")
	expectNoEvent(t, other)
	if c := rb.Connection("ten_1", "dev_1"); !c.Connected || c.Listener != "mqtts" || c.Protocol != 5 {
		t.Fatalf("asked from another node: %+v", c)
	}

	// Same device ID under another tenant, bad tokens, no device: nothing
	// is routed and nothing is an error to retry.
	for _, ev := range []model.Event{
		deviceEvent("ten_2", "dev_1", "command.created"),
		deviceEvent("ten_1", "dev_1.>", "command.created"),
		deviceEvent("ten_1", "*", "command.created"),
		{ID: "evt_x", TenantID: "ten_1", Type: "command.created", Data: json.RawMessage(`{}`)},
		{ID: "evt_y", TenantID: "ten_1", Type: "command.created", Data: json.RawMessage(`not json`)},
	} {
		if err := rb.Route(ctx, ev); err != nil {
			t.Errorf("Route(%s): %v", ev.Data, err)
		}
	}
	expectNoEvent(t, a)
	if c := rb.Connection("ten_2", "dev_1"); c.Connected {
		t.Fatalf("another tenant's device: %+v", c)
	}
	if c := rb.Connection("ten_1", "dev_1.>"); c.Connected {
		t.Fatalf("wildcard device ID: %+v", c)
	}

	// The device left: questions and events are answered at once.
	a.mu.Lock()
	delete(a.devs, "ten_1/dev_1")
	a.mu.Unlock()
	ra.Presence("ten_1", "dev_1", false)
	_ = ba.Conn().Flush()
	start := time.Now()
	if c := rb.Connection("ten_1", "dev_1"); c.Connected {
		t.Fatalf("after the device left: %+v", c)
	}
	if err := rb.Route(ctx, deviceEvent("ten_1", "dev_1", "ota.assigned")); err != nil {
		t.Fatalf("routing after the device left: %v", err)
	}
	if d := time.Since(start); d > askTimeout/2 {
		t.Fatalf("an offline device took %s to answer: no responders should be immediate", d)
	}

	// A node whose subscription outlived the session stays silent, so the
	// event is retried rather than lost (another node may hold the device).
	ra.Presence("ten_1", "dev_1", true)
	if err := rb.Route(ctx, deviceEvent("ten_1", "dev_1", "ota.assigned")); err == nil {
		t.Fatal("an unanswered event counted as routed")
	}
	// After Close, presence changes are ignored and nothing panics.
	ra.Close()
	ra.Presence("ten_1", "dev_1", true)
}

// With the embedded bus the one node answers for every device: events
// for a device connected elsewhere (nowhere) are done with at once.
func TestRouterSingleNode(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Config{DataDir: t.TempDir(), Prefix: "single"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n := newNode("ten_1/dev_1")
	r, err := NewRouter(b, n.local, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	start := time.Now()
	if err := r.Route(ctx, deviceEvent("ten_1", "dev_2", "command.created")); err != nil {
		t.Fatalf("routing to a device not connected: %v", err)
	}
	if d := time.Since(start); d > askTimeout/2 {
		t.Fatalf("took %s: the single node should say at once that the device is not here", d)
	}
	if err := r.Route(ctx, deviceEvent("ten_1", "dev_1", "command.created")); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, n, "command.created")
	if c := r.Connection("ten_1", "dev_1"); !c.Connected {
		t.Fatalf("local device: %+v", c)
	}
	if c := r.Connection("ten_1", "dev_2"); c.Connected {
		t.Fatalf("unknown device: %+v", c)
	}
	// Before the broker runs (local returns nil) an event is done with too.
	r2, err := NewRouter(b, func() Local { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	r.Close()
	if err := r2.Route(ctx, deviceEvent("ten_1", "dev_1", "command.created")); err != nil {
		t.Fatal(err)
	}
}

// Events published on the bus reach the device's node through the shared
// durable consumers, whichever node publishes and whichever routes.
func TestRouterFromTheStream(t *testing.T) {
	open := sharedBus(t)
	ctx := context.Background()
	types := []string{"command.created", "ota.assigned"}
	var nodes []*node
	var buses []*bus.Bus
	for i := range 2 {
		b := open()
		n := newNode()
		if i == 0 {
			n = newNode("ten_1/dev_1")
		}
		r, err := NewRouter(b, n.local, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		stop, err := b.ConsumeEventTypes(ctx, "device-route", types, r.Route)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		if i == 0 {
			r.Presence("ten_1", "dev_1", true)
		}
		nodes, buses = append(nodes, n), append(buses, b)
	}
	for i := range 6 {
		ev := deviceEvent("ten_1", "dev_1", types[i%2])
		ev.ID = ev.ID + string(rune('a'+i))
		if _, err := buses[1].PublishEvent(ctx, &ev); err != nil {
			t.Fatal(err)
		}
		other := deviceEvent("ten_1", "dev_1", "device.connected") // not routed
		other.ID += string(rune('a' + i))
		if _, err := buses[1].PublishEvent(ctx, &other); err != nil {
			t.Fatal(err)
		}
	}
	for range 6 {
		select {
		case <-nodes[0].got:
		case <-time.After(10 * time.Second):
			t.Fatal("a published event did not reach the device's node")
		}
	}
	time.Sleep(200 * time.Millisecond)
	expectNoEvent(t, nodes[0])
	expectNoEvent(t, nodes[1])
}
