package config

import (
	"fmt"
	"net"
	"time"
)

// MQTTConfig is the device broker (see docs/protocol.md).
type MQTTConfig struct {
	// Listen is MQTT over TLS with client certificates. Empty: the host of
	// http.listen with port 8883 (127.0.0.1:8883 in dev mode), or any free
	// port when http.listen uses port 0; "off": no such listener.
	Listen string `yaml:"listen" env:"STEWARD_MQTT_LISTEN"`
	// TokenListen is MQTT over TLS with device tokens ("" = off).
	TokenListen string `yaml:"token_listen" env:"STEWARD_MQTT_TOKEN_LISTEN"`
	// WSListen is MQTT over WebSocket over TLS, path /mqtt ("" = off).
	WSListen string `yaml:"ws_listen" env:"STEWARD_MQTT_WS_LISTEN"`
	// PlainListen is MQTT without TLS, device tokens only ("" = off).
	PlainListen string `yaml:"plain_listen" env:"STEWARD_MQTT_PLAIN_LISTEN"`
	// AppListen is MQTT over TLS for applications reading device traffic
	// with an API key ("" = off).
	AppListen string `yaml:"app_listen" env:"STEWARD_MQTT_APP_LISTEN"`
	// MaxPayload is the largest accepted payload in bytes (64 KiB).
	MaxPayload int `yaml:"max_payload" env:"STEWARD_MQTT_MAX_PAYLOAD"`
	// RateLimit and RateBurst: messages per second and burst per device
	// (50, 200); ByteRate and ByteBurst the same in bytes (256 KiB, 1 MiB).
	RateLimit float64 `yaml:"rate_limit" env:"STEWARD_MQTT_RATE_LIMIT"`
	RateBurst int     `yaml:"rate_burst" env:"STEWARD_MQTT_RATE_BURST"`
	ByteRate  float64 `yaml:"byte_rate" env:"STEWARD_MQTT_BYTE_RATE"`
	ByteBurst int     `yaml:"byte_burst" env:"STEWARD_MQTT_BYTE_BURST"`
	// MaxSessionExpiry caps how long a persistent session is kept (1h).
	MaxSessionExpiry time.Duration `yaml:"max_session_expiry" env:"STEWARD_MQTT_MAX_SESSION_EXPIRY"`
	// IdleAfter is how long a TLS device connection waits for data with a
	// goroutine of its own before it waits without one (2s; a negative
	// value: never). Shorter saves memory on devices that send rarely;
	// longer saves CPU on devices that send every few seconds.
	IdleAfter time.Duration `yaml:"idle_after" env:"STEWARD_MQTT_IDLE_AFTER"`
}

// DefaultMQTTPort is the certificate listener's port when none is configured.
const DefaultMQTTPort = "8883"

// TelemetryConfig is how device measurements are kept.
type TelemetryConfig struct {
	// Retention is how long points are kept unless a tenant sets its own (30 days).
	Retention time.Duration `yaml:"retention" env:"STEWARD_TELEMETRY_RETENTION"`
	// PruneEvery is how often old points are deleted (1h).
	PruneEvery time.Duration `yaml:"prune_every" env:"STEWARD_TELEMETRY_PRUNE_EVERY"`
}

// validateConnectivity checks the mqtt and telemetry sections and fills
// their defaults.
func (c *Config) validateConnectivity() error {
	m := &c.MQTT
	switch m.Listen {
	case "":
		host, port, _ := net.SplitHostPort(c.HTTP.Listen)
		if port != "0" {
			port = DefaultMQTTPort
		}
		m.Listen = net.JoinHostPort(host, port)
	case "off":
		m.Listen = ""
	}
	for _, f := range []struct{ name, v string }{{"mqtt.listen", m.Listen}, {"mqtt.token_listen", m.TokenListen},
		{"mqtt.ws_listen", m.WSListen}, {"mqtt.plain_listen", m.PlainListen}, {"mqtt.app_listen", m.AppListen}} {
		if f.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.v); err != nil {
			return &FieldError{f.name, fmt.Sprintf("%q is not host:port (e.g. :8883 or 127.0.0.1:8883)", f.v)}
		}
	}
	if m.MaxPayload == 0 {
		m.MaxPayload = 64 << 10
	}
	if m.MaxPayload < 1024 || m.MaxPayload > 16<<20 {
		return &FieldError{"mqtt.max_payload", "must be between 1024 and 16777216 bytes"}
	}
	if m.RateLimit < 0 || m.ByteRate < 0 || m.RateBurst < 0 || m.ByteBurst < 0 {
		return &FieldError{"mqtt.rate_limit", "rates and bursts must not be negative"}
	}
	if m.RateLimit > 0 && m.RateBurst == 0 {
		m.RateBurst = int(4 * m.RateLimit)
	}
	if m.ByteRate > 0 && m.ByteBurst == 0 {
		m.ByteBurst = int(4 * m.ByteRate)
	}
	if m.MaxSessionExpiry < 0 {
		return &FieldError{"mqtt.max_session_expiry", "must not be negative"}
	}
	if m.IdleAfter == 0 {
		m.IdleAfter = 2 * time.Second
	}
	if m.IdleAfter > 0 && (m.IdleAfter < 100*time.Millisecond || m.IdleAfter > 10*time.Minute) {
		return &FieldError{"mqtt.idle_after", "must be between 100ms and 10m, or negative (e.g. -1s) to keep every connection's goroutine"}
	}
	t := &c.Telemetry
	if t.Retention == 0 {
		t.Retention = 30 * 24 * time.Hour
	}
	if t.Retention < time.Hour {
		return &FieldError{"telemetry.retention", "must be at least 1h"}
	}
	if t.PruneEvery == 0 {
		t.PruneEvery = time.Hour
	}
	if t.PruneEvery < time.Second {
		return &FieldError{"telemetry.prune_every", "must be at least 1s"}
	}
	return nil
}
