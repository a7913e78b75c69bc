package sim

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/steward-iot/steward/internal/identity"
)

// Identities can be kept in a file (Config.IdentityFile) so that a
// simulation started again reuses its devices instead of enrolling new
// ones: one JSON object, serial → key and certificate (DER).

type savedIdentity struct {
	Key  []byte `json:"key"`  // PKCS#8
	Cert []byte `json:"cert"` // X.509
}

// loadIdentities gives every device found in the file its identity back;
// certificates that have expired are dropped (the device enrolls again).
func (s *Sim) loadIdentities() error {
	if s.cfg.IdentityFile == "" {
		return nil
	}
	b, err := os.ReadFile(s.cfg.IdentityFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var saved map[string]savedIdentity
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("sim: %s: %w", s.cfg.IdentityFile, err)
	}
	for _, d := range s.devs {
		si, ok := saved[d.serial]
		if !ok {
			continue
		}
		cert, err1 := x509.ParseCertificate(si.Cert)
		key, err2 := x509.ParsePKCS8PrivateKey(si.Key)
		if err1 != nil || err2 != nil || s.now().After(cert.NotAfter) {
			continue
		}
		d.id = identity.DeviceIDOf(cert)
		d.tlsCert = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
		s.st.enrolled.Add(1)
	}
	return nil
}

// saveIdentities writes the identities of all enrolled devices (0600).
func (s *Sim) saveIdentities() error {
	if s.cfg.IdentityFile == "" {
		return nil
	}
	saved := map[string]savedIdentity{}
	for _, d := range s.devs {
		if d.id == "" {
			continue
		}
		key, err := x509.MarshalPKCS8PrivateKey(d.tlsCert.PrivateKey)
		if err != nil {
			return err
		}
		saved[d.serial] = savedIdentity{Key: key, Cert: d.tlsCert.Certificate[0]}
	}
	b, err := json.Marshal(saved)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.IdentityFile), 0o700); err != nil {
		return err
	}
	tmp := s.cfg.IdentityFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.cfg.IdentityFile)
}
