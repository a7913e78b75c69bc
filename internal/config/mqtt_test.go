package config

import (
	"testing"
	"time"
)

func TestMQTTDefaults(t *testing.T) {
	cases := []struct {
		name       string
		dev        bool
		http, mqtt string
		want       string
	}{
		{"dev", true, "127.0.0.1:8080", "", "127.0.0.1:8883"},
		{"all interfaces", false, ":8443", "", ":8883"},
		{"ephemeral HTTP port", true, "127.0.0.1:0", "", "127.0.0.1:0"},
		{"explicit", false, ":8443", "10.0.0.1:1884", "10.0.0.1:1884"},
		{"off", false, ":8443", "off", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			cfg.Dev, cfg.HTTP.Listen, cfg.MQTT.Listen = c.dev, c.http, c.mqtt
			cfg.Store.URL = "sqlite:/tmp/x.db"
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if cfg.MQTT.Listen != c.want {
				t.Fatalf("mqtt.listen = %q, want %q", cfg.MQTT.Listen, c.want)
			}
			if cfg.MQTT.PlainListen != "" || cfg.MQTT.TokenListen != "" || cfg.MQTT.AppListen != "" {
				t.Fatalf("a listener other than the certificate one is on by default: %+v", cfg.MQTT)
			}
			if cfg.MQTT.MaxPayload != 64<<10 || cfg.Telemetry.Retention.Hours() != 720 || cfg.MQTT.IdleAfter != 2*time.Second {
				t.Fatalf("defaults: %+v %+v", cfg.MQTT, cfg.Telemetry)
			}
		})
	}
	for field, set := range map[string]func(*Config){
		"mqtt.plain_listen":   func(c *Config) { c.MQTT.PlainListen = "nope" },
		"mqtt.max_payload":    func(c *Config) { c.MQTT.MaxPayload = 10 },
		"mqtt.rate_limit":     func(c *Config) { c.MQTT.RateLimit = -1 },
		"mqtt.idle_after":     func(c *Config) { c.MQTT.IdleAfter = time.Millisecond },
		"telemetry.retention": func(c *Config) { c.Telemetry.Retention = 1 },
	} {
		cfg := Default()
		cfg.Dev = true
		set(&cfg)
		err := cfg.Validate()
		var fe *FieldError
		if err == nil || !asField(err, &fe) || fe.Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
}

func asField(err error, fe **FieldError) bool {
	f, ok := err.(*FieldError)
	*fe = f
	return ok
}
