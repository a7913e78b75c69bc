package platform

import (
	"context"
	"io"

	"github.com/steward-iot/steward/internal/deviceapi"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
)

// mountDeviceAPI serves the certificate-authenticated device routes
// (/device/v1/…) on the enrollment listener.
func (s *Server) mountDeviceAPI() {
	s.EST.Handle(deviceapi.Prefix, deviceapi.New(s.Authenticator, deviceOTA{s.OTA}, s.Store, s.Log.With("component", "device-api")))
}

// deviceOTA is the update service as the device routes see it.
type deviceOTA struct{ *ota.Service }

func (o deviceOTA) Open(ctx context.Context, tenantID, id string) (*model.Artifact, io.ReadSeekCloser, error) {
	art, content, err := o.Service.Open(ctx, tenantID, id)
	if err != nil {
		return nil, nil, err
	}
	return art, content, nil
}
