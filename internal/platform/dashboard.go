package platform

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/web"
)

// AdminCredentialsFile is where --dev writes the first admin user's email
// and password (mode 0600) for signing in to the dashboard.
const AdminCredentialsFile = "admin-credentials"

// DevAdminEmail is the sign-in of the first admin user --dev creates.
const DevAdminEmail = "admin@localhost"

// dashboardParts are the server's web dashboard pieces.
type dashboardParts struct {
	Web *web.Dashboard
	// AdminCredentialsPath is set when this start created the first admin
	// user (dev mode) and wrote its credentials there.
	AdminCredentialsPath string
}

// openDashboard builds the dashboard and mounts it beside the API.
func (s *Server) openDashboard() error {
	d, err := web.New(web.Deps{Registry: s.Registry, Store: s.Store, Bus: s.Bus, Log: s.Log.With("component", "web"),
		Identity: s.Identity, Twin: s.Twin, Commands: s.Commands, Telemetry: s.Telemetry, Defender: s.Defender, Vulns: s.Vulns,
		OTA: s.OTA, Retire: s.Retire, Discovery: s.Discovery, Alarms: s.Alarms, Version: s.Version, SecureCookies: s.Config.TLS() || strings.HasPrefix(s.Config.HTTP.PublicURL, "https://"),
		AllowHTTPWebhooks: s.Config.Dev || s.Config.Webhooks.AllowHTTP})
	if err != nil {
		return fmt.Errorf("building the dashboard: %w", err)
	}
	d.Mount(s.API.Router())
	s.Web = d
	return nil
}

// startDashboard creates the first admin user in dev mode and starts the
// sweep of expired sessions.
func (s *Server) startDashboard(ctx context.Context) error {
	if s.Config.Dev {
		u, password, err := s.Registry.BootstrapUser(ctx, DevAdminEmail)
		if err != nil {
			return fmt.Errorf("creating the first admin user: %w", err)
		}
		if u != nil {
			p := filepath.Join(s.Config.DataDir, AdminCredentialsFile)
			body := fmt.Sprintf("# Steward dashboard: the first platform admin, created %s.\n"+
				"# Sign in at the dashboard's address (the server prints it), then change the password under \"Your account\".\n"+
				"email: %s\npassword: %s\n", time.Now().UTC().Format(time.RFC3339), u.Email, password)
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				return fmt.Errorf("writing the admin credentials file: %w", err)
			}
			s.AdminCredentialsPath = p
		}
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.Web.SweepSessions(ctx, 10*time.Minute) }()
	return nil
}

// stopDashboard ends the dashboard's live streams, so a graceful shutdown
// does not wait for open browser tabs.
func (s *Server) stopDashboard() {
	if s.Web != nil {
		s.Web.Close()
	}
}
