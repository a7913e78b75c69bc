package config

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// PKIConfig is the platform CA that issues device certificates.
type PKIConfig struct {
	// Passphrase encrypts the CA private keys in <data_dir>/pki at rest.
	Passphrase string `yaml:"passphrase" env:"STEWARD_PKI_PASSPHRASE"`
	// ImportCert and ImportKey (PEM files) make an external intermediate
	// the issuing CA instead of a built-in one (first start only).
	ImportCert string `yaml:"import_cert" env:"STEWARD_PKI_IMPORT_CERT"`
	ImportKey  string `yaml:"import_key" env:"STEWARD_PKI_IMPORT_KEY"`
	// DeviceCertValidity is how long device certificates are valid.
	DeviceCertValidity time.Duration `yaml:"device_cert_validity" env:"STEWARD_PKI_DEVICE_CERT_VALIDITY"`
}

// ESTConfig is the device enrollment listener (RFC 7030, always TLS).
type ESTConfig struct {
	// Listen is host:port. Empty: the host of http.listen with port 8443
	// (9443 when http.listen is on 8443), or port 0 (any free port) when
	// http.listen uses port 0.
	Listen string `yaml:"listen" env:"STEWARD_EST_LISTEN"`
	// Hostnames are extra DNS names or IP addresses for the listener's
	// certificate (comma separated); localhost, the loopback addresses and
	// the machine's host name are always in it.
	Hostnames string `yaml:"hostnames" env:"STEWARD_EST_HOSTNAMES"`
}

// DefaultESTPort is the enrollment listener's port when none is
// configured; AlternateESTPort when the API itself listens on 8443.
const (
	DefaultESTPort   = "8443"
	AlternateESTPort = "9443"
)

// ESTHosts lists the names the enrollment certificate is valid for.
func (c *Config) ESTHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	if h, _, err := net.SplitHostPort(c.EST.Listen); err == nil && h != "" && net.ParseIP(h) != nil && !net.ParseIP(h).IsUnspecified() {
		hosts = append(hosts, h)
	}
	for _, h := range strings.Split(c.EST.Hostnames, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

func (c *Config) validateIdentity() error {
	if (c.PKI.ImportCert == "") != (c.PKI.ImportKey == "") {
		return &FieldError{"pki.import_cert", "import_cert and import_key go together; set both or neither"}
	}
	for _, f := range []struct{ name, path string }{{"pki.import_cert", c.PKI.ImportCert}, {"pki.import_key", c.PKI.ImportKey}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return &FieldError{f.name, fmt.Sprintf("cannot read %s: %v", f.path, err)}
			}
		}
	}
	if c.PKI.DeviceCertValidity < time.Hour || c.PKI.DeviceCertValidity > 5*365*24*time.Hour {
		return &FieldError{"pki.device_cert_validity", fmt.Sprintf("%s must be between 1h and 43800h (5 years)", c.PKI.DeviceCertValidity)}
	}
	if c.EST.Listen == "" {
		host, port, _ := net.SplitHostPort(c.HTTP.Listen)
		switch port {
		case "0":
		case DefaultESTPort:
			port = AlternateESTPort
		default:
			port = DefaultESTPort
		}
		c.EST.Listen = net.JoinHostPort(host, port)
	}
	if _, port, err := net.SplitHostPort(c.EST.Listen); err != nil {
		return &FieldError{"est.listen", fmt.Sprintf("%q is not host:port (e.g. 127.0.0.1:8443 or :8443)", c.EST.Listen)}
	} else if port != "0" && c.EST.Listen == c.HTTP.Listen {
		return &FieldError{"est.listen", fmt.Sprintf("%s is also http.listen; give the enrollment listener its own port (e.g. :9443)", c.EST.Listen)}
	}
	for _, h := range strings.Split(c.EST.Hostnames, ",") {
		if h = strings.TrimSpace(h); strings.ContainsAny(h, " /:") && net.ParseIP(h) == nil {
			return &FieldError{"est.hostnames", fmt.Sprintf("%q is not a host name or IP address", h)}
		}
	}
	return nil
}
