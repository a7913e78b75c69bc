// Package config is the server's one configuration struct: defaults, then a
// YAML file, then STEWARD_* environment variables, then flags; validated as
// a whole before anything starts, with errors that name the field.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is everything `steward server` can be told.
type Config struct {
	// DataDir holds the SQLite database, the embedded bus's store, keys and
	// the first admin's credentials.
	DataDir string `yaml:"data_dir" env:"STEWARD_DATA_DIR"`
	// Dev: zero-config local run (plain HTTP on loopback, http webhooks allowed).
	Dev   bool       `yaml:"dev" env:"STEWARD_DEV"`
	HTTP  HTTPConfig `yaml:"http"`
	Store struct {
		// URL: sqlite:PATH or postgres://… (default: SQLite in DataDir).
		URL string `yaml:"url" env:"STEWARD_STORE_URL"`
	} `yaml:"store"`
	Bus struct {
		// URL of an external NATS cluster with JetStream; empty = embedded.
		URL string `yaml:"url" env:"STEWARD_BUS_URL"`
		// Prefix keeps deployments sharing one NATS apart.
		Prefix string `yaml:"prefix" env:"STEWARD_BUS_PREFIX"`
		// Replicas of the events stream on a clustered NATS (0 = 1).
		Replicas int `yaml:"replicas" env:"STEWARD_BUS_REPLICAS"`
		// EventRetention is how long domain events stay in the stream
		// (live views and webhooks catch up from it; 0 = 7 days).
		EventRetention time.Duration `yaml:"event_retention" env:"STEWARD_BUS_EVENT_RETENTION"`
		// TelemetryRetention bounds how long telemetry may wait in the
		// stream for a node to store it (external bus only; 0 = 24 h).
		TelemetryRetention time.Duration `yaml:"telemetry_retention" env:"STEWARD_BUS_TELEMETRY_RETENTION"`
		// TelemetryAckWait is how long a node may hold telemetry it took
		// from the stream before another node gets it (0 = 10 s).
		TelemetryAckWait time.Duration `yaml:"telemetry_ack_wait" env:"STEWARD_BUS_TELEMETRY_ACK_WAIT"`
	} `yaml:"bus"`
	Log struct {
		Level  string `yaml:"level" env:"STEWARD_LOG_LEVEL"`   // debug, info, warn, error
		Format string `yaml:"format" env:"STEWARD_LOG_FORMAT"` // text or json
	} `yaml:"log"`
	Webhooks struct {
		// AllowHTTP permits http:// endpoints (always on in dev mode).
		AllowHTTP bool `yaml:"allow_http" env:"STEWARD_WEBHOOKS_ALLOW_HTTP"`
	} `yaml:"webhooks"`
	// PKI and EST: the device CA and the enrollment listener (identity.go).
	PKI PKIConfig `yaml:"pki"`
	EST ESTConfig `yaml:"est"`
	// MQTT and Telemetry: the device broker and measurements (mqtt.go).
	MQTT      MQTTConfig      `yaml:"mqtt"`
	Telemetry TelemetryConfig `yaml:"telemetry"`
	// Security: audit check schedule (security.go).
	Security SecurityConfig `yaml:"security"`
	// OTA: where artifact content is stored (ota.go).
	OTA OTAConfig `yaml:"ota"`
}

// HTTPConfig is the API and dashboard listener.
type HTTPConfig struct {
	Listen string `yaml:"listen" env:"STEWARD_HTTP_LISTEN"`
	// TLS certificate and key files; when both are empty outside dev mode a
	// self-signed certificate is made in the data folder.
	CertFile string `yaml:"cert_file" env:"STEWARD_HTTP_CERT_FILE"`
	KeyFile  string `yaml:"key_file" env:"STEWARD_HTTP_KEY_FILE"`
	// Insecure serves plain HTTP outside dev mode (behind a TLS proxy).
	Insecure bool `yaml:"insecure" env:"STEWARD_HTTP_INSECURE"`
	// PublicURL is how clients reach this server (for printed links).
	PublicURL string `yaml:"public_url" env:"STEWARD_HTTP_PUBLIC_URL"`
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" env:"STEWARD_HTTP_SHUTDOWN_TIMEOUT"`
}

// Default is the configuration before file, environment and flags.
func Default() Config {
	var c Config
	c.DataDir = "./steward-data"
	c.HTTP.Listen = "127.0.0.1:8080"
	c.HTTP.ShutdownTimeout = 15 * time.Second
	c.Bus.Prefix = "steward"
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.PKI.DeviceCertValidity = 90 * 24 * time.Hour
	return c
}

// LoadFile merges a YAML file into c. Unknown keys are errors: a typo must
// not silently fall back to a default.
func (c *Config) LoadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty file decodes to io.EOF: nothing to merge.
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// LoadEnv applies STEWARD_* variables named in the struct tags.
func (c *Config) LoadEnv(lookup func(string) (string, bool)) error {
	return walkEnv(reflect.ValueOf(c).Elem(), "", lookup)
}

func walkEnv(v reflect.Value, path string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("yaml")
		if path != "" {
			name = path + "." + name
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := walkEnv(fv, name, lookup); err != nil {
				return err
			}
			continue
		}
		env := f.Tag.Get("env")
		if env == "" {
			continue
		}
		s, ok := lookup(env)
		if !ok {
			continue
		}
		if err := setValue(fv, s); err != nil {
			return fmt.Errorf("environment %s (%s): %w", env, name, err)
		}
	}
	return nil
}

func setValue(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case string:
		v.SetString(s)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 15s", s)
		}
		v.SetInt(int64(d))
	case int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(int64(n))
	case float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// FieldError names the configuration field that is wrong.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return "config: " + e.Field + ": " + e.Message }

// Validate checks everything and fills derived defaults (the store URL).
// It reports the first bad field.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return &FieldError{"data_dir", "must not be empty"}
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		return &FieldError{"http.listen", fmt.Sprintf("%q is not host:port (e.g. 127.0.0.1:8080 or :8443)", c.HTTP.Listen)}
	}
	if (c.HTTP.CertFile == "") != (c.HTTP.KeyFile == "") {
		return &FieldError{"http.cert_file", "cert_file and key_file go together; set both or neither"}
	}
	for _, f := range []struct{ name, path string }{{"http.cert_file", c.HTTP.CertFile}, {"http.key_file", c.HTTP.KeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return &FieldError{f.name, fmt.Sprintf("cannot read %s: %v", f.path, err)}
			}
		}
	}
	if c.HTTP.Insecure && c.HTTP.CertFile != "" {
		return &FieldError{"http.insecure", "cannot be set together with a certificate"}
	}
	if c.HTTP.ShutdownTimeout <= 0 {
		return &FieldError{"http.shutdown_timeout", "must be positive"}
	}
	if c.Store.URL == "" {
		c.Store.URL = "sqlite:" + filepath.Join(c.DataDir, "steward.db")
	}
	if !strings.HasPrefix(c.Store.URL, "sqlite:") && !strings.HasPrefix(c.Store.URL, "postgres://") &&
		!strings.HasPrefix(c.Store.URL, "postgresql://") {
		return &FieldError{"store.url", "must start with sqlite: or postgres://"}
	}
	if c.Bus.URL != "" && !strings.HasPrefix(c.Bus.URL, "nats://") && !strings.HasPrefix(c.Bus.URL, "tls://") {
		return &FieldError{"bus.url", "must be nats://host:port (or tls://), several separated by commas"}
	}
	if c.Bus.Prefix == "" || strings.IndexFunc(c.Bus.Prefix, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return &FieldError{"bus.prefix", fmt.Sprintf("%q must be letters, digits, - and _", c.Bus.Prefix)}
	}
	if c.Bus.Replicas < 0 || c.Bus.Replicas > 5 || (c.Bus.Replicas > 1 && c.Bus.URL == "") {
		return &FieldError{"bus.replicas", fmt.Sprintf("%d must be 0 to 5, and more than 1 only with an external bus.url", c.Bus.Replicas)}
	}
	for _, d := range []struct {
		field    string
		v, least time.Duration
	}{
		{"bus.event_retention", c.Bus.EventRetention, time.Hour},
		{"bus.telemetry_retention", c.Bus.TelemetryRetention, time.Minute},
		{"bus.telemetry_ack_wait", c.Bus.TelemetryAckWait, time.Second},
	} {
		if d.v != 0 && d.v < d.least {
			return &FieldError{d.field, fmt.Sprintf("%s is too short: at least %s (or 0 for the default)", d.v, d.least)}
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &FieldError{"log.level", fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level)}
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return &FieldError{"log.format", fmt.Sprintf("%q is not text or json", c.Log.Format)}
	}
	if c.HTTP.PublicURL != "" && !strings.HasPrefix(c.HTTP.PublicURL, "http://") && !strings.HasPrefix(c.HTTP.PublicURL, "https://") {
		return &FieldError{"http.public_url", "must start with http:// or https://"}
	}
	if err := c.validateIdentity(); err != nil {
		return err
	}
	if err := c.validateSecurity(); err != nil {
		return err
	}
	if err := c.validateOTA(); err != nil {
		return err
	}
	return c.validateConnectivity()
}

// TLS reports whether the listener serves HTTPS.
func (c *Config) TLS() bool { return !c.Dev && !c.HTTP.Insecure }
