package mqtt

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestSubscribersPatched covers the patched Subscribers: maps only where
// something matched, the same matches as before, and shared selection
// merging into a result that had no plain subscriber.
func TestSubscribersPatched(t *testing.T) {
	x := NewTopicsIndex()
	x.Subscribe("app", packets.Subscription{Filter: "d/+/telemetry", Qos: 1})
	x.Subscribe("ops", packets.Subscription{Filter: "d/#", Qos: 0})
	x.Subscribe("w1", packets.Subscription{Filter: "$share/g/d/+/events"})
	x.Subscribe("w2", packets.Subscription{Filter: "$share/g/d/+/events"})
	x.InlineSubscribe(InlineSubscription{Subscription: packets.Subscription{Filter: "d/dev1/telemetry", Identifier: 7},
		Handler: func(*Client, packets.Subscription, packets.Packet) {}})

	tests := []struct {
		topic  string
		subs   []string
		shared int
		inline int
	}{
		{"x/y", nil, 0, 0},
		{"d/dev2/telemetry", []string{"app", "ops"}, 0, 0},
		{"d/dev1/telemetry", []string{"app", "ops"}, 0, 1},
		{"d/dev1/events", []string{"ops"}, 1, 0},
		{"$SYS/x", nil, 0, 0},
	}
	for _, tt := range tests {
		got := x.Subscribers(tt.topic)
		if len(got.Subscriptions) != len(tt.subs) {
			t.Errorf("%s: subscriptions %v, want %v", tt.topic, got.Subscriptions, tt.subs)
		}
		for _, c := range tt.subs {
			if _, ok := got.Subscriptions[c]; !ok {
				t.Errorf("%s: %s missing from %v", tt.topic, c, got.Subscriptions)
			}
		}
		if len(got.Shared) != tt.shared || len(got.InlineSubscriptions) != tt.inline {
			t.Errorf("%s: %d shared groups, %d inline; want %d, %d", tt.topic, len(got.Shared), len(got.InlineSubscriptions), tt.shared, tt.inline)
		}
		if tt.subs == nil && (got.Subscriptions != nil || got.Shared != nil || got.InlineSubscriptions != nil) {
			t.Errorf("%s: nothing matched, yet maps were made: %+v", tt.topic, got)
		}
	}

	// Only a shared group matches: the selected member lands in a map made
	// for it.
	x2 := NewTopicsIndex()
	x2.Subscribe("w1", packets.Subscription{Filter: "$share/g/a/b"})
	got := x2.Subscribers("a/b")
	got.SelectShared()
	got.MergeSharedSelected()
	if len(got.Subscriptions) != 1 {
		t.Fatalf("shared only: %v", got.Subscriptions)
	}
}

// TestPlainSubscribers checks the list-based match against Subscribers on
// the same tree: the same clients with the same merged subscriptions, or
// a refusal where shared or inline subscriptions match or too many
// clients do.
func TestPlainSubscribers(t *testing.T) {
	x := NewTopicsIndex()
	x.Subscribe("app", packets.Subscription{Filter: "d/+/telemetry", Qos: 1, Identifier: 3})
	x.Subscribe("app", packets.Subscription{Filter: "d/#", Qos: 0, Identifier: 4})
	x.Subscribe("ops", packets.Subscription{Filter: "#"})
	x.Subscribe("one", packets.Subscription{Filter: "d/dev1/telemetry", Qos: 2})
	x.Subscribe("ids", packets.Subscription{Filter: "d/dev2/+", Identifier: 9})
	x.Subscribe("sys", packets.Subscription{Filter: "$SYS/#"})
	x.Subscribe("w1", packets.Subscription{Filter: "$share/g/s/+/events"})
	x.InlineSubscribe(InlineSubscription{Subscription: packets.Subscription{Filter: "i/x", Identifier: 7},
		Handler: func(*Client, packets.Subscription, packets.Packet) {}})
	for i := 0; i <= maxPlainMatches; i++ {
		x.Subscribe(fmt.Sprintf("many%d", i), packets.Subscription{Filter: "m/+"})
	}

	tests := []struct {
		topic string
		plain bool
	}{
		{"d/dev1/telemetry", true},
		{"d/dev2/telemetry", true},
		{"d/dev2/twin/reported", true},
		{"d", true},
		{"x/y/z", true},
		{"$SYS/broker/uptime", true},
		{"s/a/events", false}, // shared
		{"i/x", false},        // inline
		{"m/1", false},        // more clients than the list holds
	}
	for _, tt := range tests {
		got, ok := x.plainSubscribers(tt.topic, nil)
		if ok != tt.plain {
			t.Errorf("%s: plain = %v, want %v", tt.topic, ok, tt.plain)
			continue
		}
		if !ok {
			continue
		}
		// Zero identifiers are never sent (properties.go), so they are
		// left out of the comparison.
		norm := func(s packets.Subscription) packets.Subscription {
			ids := map[string]int{}
			for f, id := range s.Identifiers {
				if id > 0 {
					ids[f] = id
				}
			}
			s.Identifiers = ids
			return s
		}
		want := map[string]packets.Subscription{}
		for c, s := range x.Subscribers(tt.topic).Subscriptions {
			want[c] = norm(s)
		}
		gotMap := map[string]packets.Subscription{}
		for _, m := range got {
			gotMap[m.client] = norm(m.sub)
		}
		if len(got) != len(gotMap) || len(want) != len(gotMap) || (len(want) > 0 && !reflect.DeepEqual(gotMap, want)) {
			t.Errorf("%s: plain match %+v, Subscribers %+v", tt.topic, gotMap, want)
		}
	}
}
