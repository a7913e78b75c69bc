package platform

import (
	"github.com/steward-iot/steward/internal/discovery"
	"github.com/steward-iot/steward/internal/httpapi"
	"github.com/steward-iot/steward/internal/retire"
)

// lifecycleParts take devices out of service and keep what the tenant's
// networks hold besides its managed devices.
type lifecycleParts struct {
	Retire    *retire.Service
	Discovery *discovery.Service
}

// openLifecycle builds the services (after identity and connectivity).
func (s *Server) openLifecycle() {
	s.Retire = retire.New(s.Store, s.Identity, s.Commands, s.Log.With("component", "retire"))
	conn := s.connectivityDeps().Connection
	s.Retire.Connected = func(tenantID, deviceID string) bool { return conn(tenantID, deviceID).Connected }
	s.Discovery = discovery.New(s.Store, s.Registry, s.Identity)
}

func (s *Server) lifecycleDeps() httpapi.Lifecycle {
	return httpapi.Lifecycle{Retire: s.Retire, Discovery: s.Discovery}
}
