package config

import (
	"errors"
	"testing"
	"time"
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

func TestBusDurations(t *testing.T) {
	cases := []struct {
		name  string
		set   func(*Config)
		field string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"a day of events", func(c *Config) { c.Bus.EventRetention = 24 * time.Hour }, ""},
		{"events for a minute", func(c *Config) { c.Bus.EventRetention = time.Minute }, "bus.event_retention"},
		{"telemetry kept 2h", func(c *Config) { c.Bus.TelemetryRetention = 2 * time.Hour }, ""},
		{"telemetry kept 10s", func(c *Config) { c.Bus.TelemetryRetention = 10 * time.Second }, "bus.telemetry_retention"},
		{"negative telemetry retention", func(c *Config) { c.Bus.TelemetryRetention = -time.Hour }, "bus.telemetry_retention"},
		{"ack wait 30s", func(c *Config) { c.Bus.TelemetryAckWait = 30 * time.Second }, ""},
		{"ack wait 100ms", func(c *Config) { c.Bus.TelemetryAckWait = 100 * time.Millisecond }, "bus.telemetry_ack_wait"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			cfg.Store.URL = "sqlite:/tmp/x.db"
			c.set(&cfg)
			err := cfg.Validate()
			var fe *FieldError
			if c.field == "" && err != nil || c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field) {
				t.Errorf("%v, want a problem with %q", err, c.field)
			}
		})
	}
}
