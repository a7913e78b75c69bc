package platform

import (
	"context"
	"time"

	"github.com/steward-iot/steward/internal/discovery"
	"github.com/steward-iot/steward/internal/httpapi"
	"github.com/steward-iot/steward/internal/netpolicy"
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
	if dir := s.Config.Security.MUDDir; dir != "" {
		// A device's certificate names its MUD file; a product without a
		// profile gets it from the local store.
		r := &netpolicy.MUDResolver{Policy: s.Policy, Store: s.Store, Dir: dir}
		log := s.Log.With("component", "mud-store")
		s.Identity.SetMUDHook(func(productTenant, productID, mudURL string) {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				p, imported, err := r.Resolve(ctx, productTenant, productID, mudURL)
				switch {
				case err != nil:
					log.Warn("MUD URL not resolved from the MUD store", "product", productID, "mud_url", mudURL, "err", err)
				case imported:
					log.Info("MUD profile imported from the MUD store", "product", productID, "mud_url", mudURL, "sha256", p.SHA256)
				}
			}()
		})
	}
}

func (s *Server) lifecycleDeps() httpapi.Lifecycle {
	return httpapi.Lifecycle{Retire: s.Retire, Discovery: s.Discovery}
}
