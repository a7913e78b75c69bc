package platform

import "github.com/steward-iot/steward/internal/deviceapi"

// mountDeviceAPI serves the certificate-authenticated device routes
// (/device/v1/…) on the enrollment listener.
func (s *Server) mountDeviceAPI() {
	s.EST.Handle(deviceapi.Prefix, deviceapi.New(s.Authenticator, s.OTA, s.Store, s.Log.With("component", "device-api")))
}
