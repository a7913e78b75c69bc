package platform

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/steward-iot/steward/internal/est"
	"github.com/steward-iot/steward/internal/identity"
)

// PKIDir is where the platform CA lives inside the data folder.
const PKIDir = "pki"

// identityParts are the device PKI's pieces the platform owns.
type identityParts struct {
	// Identity is the device PKI: CA, enrollment, claims, tokens, revocation.
	Identity *identity.Service
	// Authenticator answers the broker's "who is this device" at connect
	// and tells it (OnCutOff) when sessions must be dropped.
	Authenticator *identity.DeviceAuthenticator
	// EST is the enrollment listener (RFC 7030 over TLS).
	EST *est.Server

	identityStops []func()
}

// openIdentity loads (or creates, on first start) the CA and builds the
// identity service and its authenticator, which starts following the bus.
func (s *Server) openIdentity(ctx context.Context) error {
	log := s.Log.With("component", "identity")
	ca, err := identity.LoadOrCreateCA(identity.PKIConfig{Dir: filepath.Join(s.Config.DataDir, PKIDir),
		Passphrase: s.Config.PKI.Passphrase, ImportCert: s.Config.PKI.ImportCert, ImportKey: s.Config.PKI.ImportKey, Log: log})
	if err != nil {
		return err
	}
	if err := identity.BindCA(ctx, s.Store, ca); err != nil {
		return err
	}
	crlURL := ""
	if u := s.Config.HTTP.PublicURL; u != "" {
		crlURL = strings.TrimSuffix(u, "/") + "/pki/crl"
	}
	s.Identity = identity.NewService(s.Store, ca, identity.Options{CertValidity: s.Config.PKI.DeviceCertValidity,
		CRLURL: crlURL, Log: log})
	s.Authenticator = s.Identity.Authenticator()
	stop, err := s.Authenticator.Watch(context.WithoutCancel(ctx), s.Bus)
	if err != nil {
		return fmt.Errorf("identity: following the event bus: %w", err)
	}
	s.identityStops = append(s.identityStops, stop)
	s.EST = est.New(s.Identity, s.Log.With("component", "est"))
	return nil
}

// startIdentity opens the enrollment listener and the worker that retires
// the identity of decommissioned devices.
func (s *Server) startIdentity(ctx context.Context) error {
	stop, err := s.Bus.ConsumeEvents(ctx, "identity", s.Identity.HandleEvent)
	if err != nil {
		return fmt.Errorf("identity: lifecycle worker: %w", err)
	}
	s.identityStops = append(s.identityStops, stop)
	return s.EST.Start(s.Config.EST.Listen, s.Config.ESTHosts())
}

// stopIdentity closes the enrollment listener and the workers.
func (s *Server) stopIdentity(ctx context.Context) error {
	var err error
	if s.EST != nil {
		err = s.EST.Shutdown(ctx)
	}
	for _, stop := range s.identityStops {
		stop()
	}
	s.identityStops = nil
	return err
}

// ESTURL is the base URL of the enrollment listener (https://host:port).
func (s *Server) ESTURL() string {
	if s.EST == nil || s.EST.Addr() == "" {
		return ""
	}
	return "https://" + hostPortForClients(s.EST.Addr())
}

// hostPortForClients turns a bound address into one a client can dial
// (an unspecified host becomes localhost).
func hostPortForClients(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
