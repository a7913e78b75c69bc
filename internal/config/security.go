package config

import (
	"os"
	"time"
)

// SecurityConfig is the security engine (see docs/security.md).
type SecurityConfig struct {
	// AuditInterval is how often every tenant's audit checks run (1h; at
	// least 1m, at most 7 days).
	AuditInterval time.Duration `yaml:"audit_interval" env:"STEWARD_SECURITY_AUDIT_INTERVAL"`
	// AuditFirstRun is how long after start the first scheduled run
	// starts (10m).
	AuditFirstRun time.Duration `yaml:"audit_first_run" env:"STEWARD_SECURITY_AUDIT_FIRST_RUN"`
	// MUDDir is a local MUD file store: the MUD URL a device's certificate
	// carries (https://host/path) is read from <mud_dir>/host/path and
	// imported for its product when the product has no MUD profile yet.
	// Empty: off.
	MUDDir string `yaml:"mud_dir" env:"STEWARD_SECURITY_MUD_DIR"`
}

// validateSecurity checks the security section and fills its defaults.
func (c *Config) validateSecurity() error {
	s := &c.Security
	if s.AuditInterval == 0 {
		s.AuditInterval = time.Hour
	}
	if s.AuditInterval < time.Minute || s.AuditInterval > 7*24*time.Hour {
		return &FieldError{"security.audit_interval", "must be between 1m and 168h"}
	}
	if s.AuditFirstRun == 0 {
		s.AuditFirstRun = 10 * time.Minute
	}
	if s.AuditFirstRun < 0 || s.AuditFirstRun > 24*time.Hour {
		return &FieldError{"security.audit_first_run", "must be between 0s and 24h"}
	}
	if s.MUDDir != "" {
		if fi, err := os.Stat(s.MUDDir); err != nil || !fi.IsDir() {
			return &FieldError{"security.mud_dir", s.MUDDir + " is not a directory; create it or leave mud_dir empty"}
		}
	}
	return nil
}
