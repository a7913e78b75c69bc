package mqtt

import (
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
