package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/bus"
)

// fakeNode is the broker side of a node: the devices connected to it.
type fakeNode struct {
	mu   sync.Mutex
	devs map[string]broker.Connection
}

func (n *fakeNode) conn(tenantID, deviceID string) broker.Connection {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.devs[tenantID+"/"+deviceID]
}

func TestLocatorAsksTheNodeHoldingTheDevice(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Config{DataDir: t.TempDir(), Prefix: "loc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a := &fakeNode{devs: map[string]broker.Connection{"ten_1/dev_1": {Connected: true, Listener: "mqtts", Protocol: 5}}}
	other := &fakeNode{devs: map[string]broker.Connection{}}
	la, lb := NewLocator(b, a.conn, nil), NewLocator(b, other.conn, nil)
	defer la.Close()
	defer lb.Close()

	if c := lb.Connection("ten_1", "dev_1"); c.Connected {
		t.Fatalf("before the device is announced: %+v", c)
	}
	la.Presence("ten_1", "dev_1", true)
	la.Presence("ten_1", "dev_1", true) // a session taken over on the same node
	b.Conn().Flush()
	if c := lb.Connection("ten_1", "dev_1"); !c.Connected || c.Listener != "mqtts" || c.Protocol != 5 {
		t.Fatalf("asked from another node: %+v", c)
	}
	// Same device ID under another tenant: not found (the subject holds the tenant).
	if c := lb.Connection("ten_2", "dev_1"); c.Connected {
		t.Fatalf("another tenant's device: %+v", c)
	}
	// Invalid tokens are never put in a subject.
	if c := lb.Connection("ten_1", "dev_1.>"); c.Connected {
		t.Fatalf("wildcard device ID: %+v", c)
	}
	la.Presence("ten_1", "dev_1", false)
	b.Conn().Flush()
	start := time.Now()
	if c := lb.Connection("ten_1", "dev_1"); c.Connected {
		t.Fatalf("after the device left: %+v", c)
	}
	if d := time.Since(start); d > askTimeout/2 {
		t.Fatalf("an offline device took %s to answer: no responders should be immediate", d)
	}
	// After Close, presence changes are ignored and nothing panics.
	la.Close()
	la.Presence("ten_1", "dev_1", true)
}
