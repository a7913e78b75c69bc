package platform

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/httpapi"
	"github.com/steward-iot/steward/internal/ota"
)

// otaParts are the update service's pieces.
type otaParts struct {
	// OTA keeps artifacts (content in <data_dir>/artifacts or the bucket
	// of ota.storage_url) and signs as the director (key in
	// <data_dir>/pki/director.key).
	OTA *ota.Service
	// artifactStore holds the artifacts' content.
	artifactStore ota.BlobStore

	// CampaignTick is how often the campaign scheduler looks at the open
	// campaigns besides when something happens (default 5 s).
	CampaignTick time.Duration

	otaCancel   context.CancelFunc
	otaWG       sync.WaitGroup
	stopJoining func()
}

// openOTA opens the artifact storage and builds the service.
func (s *Server) openOTA() error {
	var blobs ota.BlobStore
	if u := s.Config.OTA.StorageURL; u != "" {
		// The bucket must answer now: a node that cannot reach it would
		// accept artifacts it cannot store or serve.
		b, err := ota.OpenBucket(context.Background(), u)
		if err != nil {
			return fmt.Errorf("config: ota.storage_url: %w", err)
		}
		blobs = b
	} else {
		b, err := ota.OpenBlobs(filepath.Join(s.Config.DataDir, "artifacts"))
		if err != nil {
			return err
		}
		blobs = b
	}
	s.artifactStore = blobs
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

// startCampaigns runs the campaign scheduler and the consumer that joins
// devices to dynamic campaigns (a durable consumer: in a cluster each
// event is handled by one node).
func (s *Server) startCampaigns(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	s.otaCancel = cancel
	stop, err := s.Bus.ConsumeEvents(ctx, "ota-campaigns", s.OTA.HandleEvent)
	if err != nil {
		cancel()
		return err
	}
	s.stopJoining = stop
	tick := s.CampaignTick
	if tick <= 0 {
		tick = 5 * time.Second
	}
	s.otaWG.Add(1)
	go func() {
		defer s.otaWG.Done()
		s.OTA.RunScheduler(ctx, tick, s.Log.With("component", "campaigns"))
	}()
	return nil
}

func (s *Server) stopCampaigns() {
	if s.artifactStore != nil {
		defer s.artifactStore.Close()
	}
	if s.otaCancel == nil {
		return
	}
	s.otaCancel()
	if s.stopJoining != nil {
		s.stopJoining()
	}
	s.otaWG.Wait()
}
