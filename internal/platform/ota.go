package platform

import (
	"path/filepath"

	"github.com/steward-iot/steward/internal/httpapi"
	"github.com/steward-iot/steward/internal/ota"
)

// otaParts are the update service's pieces.
type otaParts struct {
	// OTA keeps artifacts (content in <data_dir>/artifacts) and signs
	// as the director (key in <data_dir>/pki/director.key).
	OTA *ota.Service
}

// openOTA opens the artifact storage and builds the service.
func (s *Server) openOTA() error {
	blobs, err := ota.OpenBlobs(filepath.Join(s.Config.DataDir, "artifacts"))
	if err != nil {
		return err
	}
	s.OTA = ota.New(s.Store, blobs)
	d, err := ota.OpenDirector(filepath.Join(s.Config.DataDir, PKIDir))
	if err != nil {
		return err
	}
	s.OTA.UseDirector(d)
	return nil
}

func (s *Server) otaDeps() httpapi.OTA {
	return httpapi.OTA{Artifacts: s.OTA}
}
