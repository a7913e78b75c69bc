package config

import (
	"errors"
	"testing"
)

func TestBusReplicas(t *testing.T) {
	cases := []struct {
		url      string
		replicas int
		ok       bool
	}{
		{"", 0, true},
		{"", 1, true},
		{"", 3, false}, // the embedded server is a single node
		{"nats://a:4222,nats://b:4222,nats://c:4222", 3, true},
		{"nats://a:4222", 6, false},
		{"nats://a:4222", -1, false},
	}
	for _, c := range cases {
		cfg := Default()
		cfg.Store.URL = "sqlite:/tmp/x.db"
		cfg.Bus.URL, cfg.Bus.Replicas = c.url, c.replicas
		err := cfg.Validate()
		var fe *FieldError
		if c.ok && err != nil || !c.ok && (!errors.As(err, &fe) || fe.Field != "bus.replicas") {
			t.Errorf("url %q replicas %d: %v", c.url, c.replicas, err)
		}
	}
}
