package platform

import (
	"context"
	"crypto/x509"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/defender"
	"github.com/steward-iot/steward/internal/httpapi"
	"github.com/steward-iot/steward/internal/netpolicy"
	"github.com/steward-iot/steward/internal/vuln"
)

// connWatchFlush is how often connection observations are written.
const connWatchFlush = 10 * time.Second

// securityParts are the security engine's pieces: vulnerabilities, network
// policy and the audit checks with their scheduler.
type securityParts struct {
	Vulns    *vuln.Service
	Policy   *netpolicy.Service
	Defender *defender.Engine

	detectionParts // Detector, Alarms (detection.go)
	// ConnWatch counts the broker's connection events for the
	// connection checks.
	ConnWatch *defender.ConnWatch

	secCancel context.CancelFunc
	secWG     sync.WaitGroup
}

// openSecurity builds the services (the API needs them). A flow report
// re-checks the reporting device's flows at once.
func (s *Server) openSecurity() {
	s.Vulns = vuln.New(s.Store)
	s.Policy = netpolicy.New(s.Store)
	s.Defender = defender.NewEngine(s.Store, s.Log.With("component", "defender"))
	s.Defender.Register(defender.Standard(s.Vulns)...)
	s.Defender.Register(defender.ConnectionChecks(func() []*x509.Certificate { return s.Identity.CA().Chain })...)
	s.ConnWatch = defender.NewConnWatch(s.Store, s.Log.With("component", "defender"))
	s.openDetection()
	s.Policy.AfterReport = func(ctx context.Context, tenantID, deviceID string) error {
		_, err := s.Defender.RunScoped(ctx, defender.SystemActor, tenantID, defender.CheckFlowOutside, []string{deviceID})
		return err
	}
}

func (s *Server) securityDeps() httpapi.Security {
	return httpapi.Security{Vulns: s.Vulns, Policy: s.Policy, Defender: s.Defender, Alarms: s.Alarms}
}

// startSecurity starts the per-tenant audit check scheduler.
func (s *Server) startSecurity(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	s.secCancel = cancel
	s.startDetection(ctx)
	s.secWG.Add(2)
	go func() {
		defer s.secWG.Done()
		s.Defender.Schedule(ctx, s.Config.Security.AuditFirstRun, s.Config.Security.AuditInterval)
	}()
	go func() {
		defer s.secWG.Done()
		s.ConnWatch.Run(ctx, connWatchFlush)
	}()
}

// stopSecurity stops the scheduler and waits for a running round.
func (s *Server) stopSecurity() {
	if s.secCancel != nil {
		s.secCancel()
		s.secWG.Wait()
	}
}
