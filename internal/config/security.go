package config

import "time"

// SecurityConfig is the security engine (see docs/security.md).
type SecurityConfig struct {
	// AuditInterval is how often every tenant's audit checks run (1h; at
	// least 1m, at most 7 days).
	AuditInterval time.Duration `yaml:"audit_interval" env:"STEWARD_SECURITY_AUDIT_INTERVAL"`
	// AuditFirstRun is how long after start the first scheduled run
	// starts (10m).
	AuditFirstRun time.Duration `yaml:"audit_first_run" env:"STEWARD_SECURITY_AUDIT_FIRST_RUN"`
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
	return nil
}
