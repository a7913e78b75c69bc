package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"ok", func(*Config) {}, ""},
		{"listen", func(c *Config) { c.HTTP.Listen = "8080" }, "http.listen"},
		{"cert without key", func(c *Config) { c.HTTP.CertFile = "x.pem" }, "http.cert_file"},
		{"store url", func(c *Config) { c.Store.URL = "mysql://x" }, "store.url"},
		{"bus url", func(c *Config) { c.Bus.URL = "http://x" }, "bus.url"},
		{"bus prefix", func(c *Config) { c.Bus.Prefix = "a.b" }, "bus.prefix"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{"data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"public url", func(c *Config) { c.HTTP.PublicURL = "example.com" }, "http.public_url"},
		{"shutdown", func(c *Config) { c.HTTP.ShutdownTimeout = 0 }, "http.shutdown_timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if !strings.HasPrefix(c.Store.URL, "sqlite:") {
					t.Fatalf("default store URL = %q", c.Store.URL)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("error %v does not name field %s", err, tc.field)
			}
		})
	}
}

func TestLoadFileRejectsUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("data_dir: /var/lib/steward\nhttp:\n  listen: \":8443\"\n  shutdown_timeout: 5s\nlog:\n  level: debug\n"), 0o600)
	c := Default()
	if err := c.LoadFile(good); err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/steward" || c.HTTP.Listen != ":8443" || c.Log.Level != "debug" || c.HTTP.ShutdownTimeout.Seconds() != 5 {
		t.Fatalf("file not applied: %+v", c)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("http:\n  listne: \":8443\"\n"), 0o600)
	c = Default()
	err := c.LoadFile(bad)
	if err == nil || !strings.Contains(err.Error(), "listne") {
		t.Fatalf("typo not reported by name: %v", err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	if err := c.LoadFile(empty); err != nil {
		t.Fatalf("empty file: %v", err)
	}
	if err := c.LoadFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestLoadEnv(t *testing.T) {
	env := map[string]string{"STEWARD_HTTP_LISTEN": ":9000", "STEWARD_DEV": "true", "STEWARD_STORE_URL": "postgres://x/y",
		"STEWARD_HTTP_SHUTDOWN_TIMEOUT": "3s"}
	c := Default()
	if err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != ":9000" || !c.Dev || c.Store.URL != "postgres://x/y" || c.HTTP.ShutdownTimeout.Seconds() != 3 {
		t.Fatalf("env not applied: %+v", c)
	}
	err := c.LoadEnv(func(k string) (string, bool) {
		if k == "STEWARD_DEV" {
			return "maybe", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "STEWARD_DEV") || !strings.Contains(err.Error(), "dev") {
		t.Fatalf("bad env value not named: %v", err)
	}
}
