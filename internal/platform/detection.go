package platform

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/steward-iot/steward/internal/alarm"
	"github.com/steward-iot/steward/internal/broker"
	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/netpolicy"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/store"
)

// detectionParts are behaviour detection and its alarms: the detector runs
// in-process beside the broker, so a decision is made on the node that
// sees the traffic and a quarantine is enforced there at once.
type detectionParts struct {
	Detector *detect.Detector
	Alarms   *alarm.Service
}

func (s *Server) openDetection() {
	s.Alarms = alarm.New(s.Store, s.Log.With("component", "alarms"))
	s.Alarms.Revoker = certRevoker{s}
	s.Alarms.Updater = releaseUpdater{s}
	s.Detector = detect.New(detect.Options{
		Settings: func(ctx context.Context, tenantID string) (model.DetectionSettings, error) {
			st, err := s.Store.GetSecuritySettings(ctx, tenantID)
			return st.Detection, err
		},
		Decide: s.Alarms.Handle,
		Load:   s.loadBaseline,
		Save:   s.saveBaselines,
		Log:    s.Log.With("component", "detect"),
	})
	s.Alarms.OnSettings = s.Detector.Reload
}

// loadBaseline and saveBaselines keep what detection learned in the store,
// which the nodes of a cluster share: a device that reconnects to another
// node finds there what the last node saved (at most the save interval old).
func (s *Server) loadBaseline(ctx context.Context, tenantID, deviceID string) ([]byte, error) {
	b, err := s.Store.GetDetectionBaseline(ctx, tenantID, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return b.Doc, nil
}

func (s *Server) saveBaselines(ctx context.Context, states []detect.Saved) error {
	now := time.Now().UTC()
	bs := make([]store.DetectionBaseline, len(states))
	for i, st := range states {
		bs[i] = store.DetectionBaseline{TenantID: st.TenantID, DeviceID: st.DeviceID, Doc: st.Doc, UpdatedAt: now}
	}
	return s.Store.PutDetectionBaselines(ctx, bs)
}

// brokerDetection gives the broker the detector and the flow recorder.
func (s *Server) brokerDetection(d *broker.Deps) {
	d.Detect = s.Detector
	d.OnSecurityMetrics = s.recordOutbound
}

// startDetection hands open alarms to the detector and runs it.
func (s *Server) startDetection(ctx context.Context) {
	if b := s.Broker; b != nil {
		s.Alarms.SetEnforcer(b)
	}
	if err := s.Alarms.Adopt(ctx, s.Detector); err != nil {
		s.Log.Error("detect: taking over the open alarms", "err", err)
	}
	s.secWG.Add(1)
	go func() { defer s.secWG.Done(); s.Detector.Run(ctx) }()
}

// recordOutbound records a report's outbound destinations as observed flows
// (checked against the device's MUD profile) and tells the detector which
// fall outside the profile.
func (s *Server) recordOutbound(ctx context.Context, tenantID, deviceID string, m *detect.Metrics, dv *detect.Device) error {
	flows := make([]model.ObservedFlow, len(m.Outbound))
	for i, o := range m.Outbound {
		f := model.ObservedFlow{Direction: "from-device", Protocol: o.Proto, RemotePort: o.Port}
		if o.IsAddress() {
			f.RemoteAddress = o.Host
		} else {
			f.RemoteHost = o.Host
		}
		if m.TS != nil {
			f.LastSeen = *m.TS
		}
		flows[i] = f
	}
	res, err := s.Policy.ReportFlows(ctx, "device:"+deviceID, tenantID, deviceID, flows)
	if err != nil {
		var in *netpolicy.InputError
		if errors.As(err, &in) || errors.Is(err, store.ErrNotFound) {
			s.Log.Warn("detect: outbound destinations not recorded as flows", "device", deviceID, "err", err)
			return nil
		}
		return err
	}
	if dv != nil {
		var outside []string
		for _, f := range res.Flows {
			if f.Verdict == netpolicy.VerdictOutside {
				host := f.RemoteHost
				if host == "" {
					host = f.RemoteAddress
				}
				outside = append(outside, f.Protocol+"/"+host+":"+strconv.Itoa(f.RemotePort))
			}
		}
		dv.OutsideProfile(outside)
	}
	return nil
}

// certRevoker revokes a device's current certificate (the revoke action).
type certRevoker struct{ s *Server }

func (r certRevoker) RevokeDeviceCertificate(ctx context.Context, tenantID, deviceID, note string) (string, error) {
	certs, _, err := r.s.Store.ListCertificates(ctx, tenantID, deviceID, store.ListOptions{Limit: 100})
	if err != nil {
		return "", err
	}
	for _, c := range certs {
		if !c.Revoked() && c.Successor == "" {
			if _, err := r.s.Identity.RevokeCertificate(ctx, nil, tenantID, c.Serial, model.ReasonKeyCompromise, note); err != nil {
				return "", err
			}
			return c.Serial, nil
		}
	}
	return "", fmt.Errorf("device %s has no certificate in force", deviceID)
}

// releaseUpdater starts a one-device campaign of the newest release (by
// version) of a misbehaving device's product that is newer than what it
// runs (the update action): no consent asked, audited and visible like any
// campaign, signed by the director like any assignment.
type releaseUpdater struct{ s *Server }

func (u releaseUpdater) UpdateDevice(ctx context.Context, actor, tenantID, deviceID, reason string) (string, error) {
	if u.s.OTA == nil {
		return "", errors.New("the update service is not running")
	}
	d, err := u.s.Store.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return "", err
	}
	running, _ := model.VersionKey(d.FirmwareVersion)
	var best *model.Artifact
	var bestKey string
	cursor := ""
	for range 10 { // the newest 1000 artifacts
		arts, next, err := u.s.Store.ListArtifacts(ctx, tenantID, store.ListOptions{Limit: 100, Cursor: cursor})
		if err != nil {
			return "", err
		}
		for i := range arts {
			a := &arts[i]
			k, err := model.VersionKey(a.Version)
			if err != nil || a.InvalidatedAt != nil || !a.Uploaded() || !slices.Contains(a.ProductIDs, d.ProductID) ||
				(running != "" && k <= running) || (best != nil && k <= bestKey) {
				continue
			}
			best, bestKey = a, k
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if best == nil {
		return "", fmt.Errorf("no release of product %s newer than the running %q to update to", d.ProductID, d.FirmwareVersion)
	}
	no, all := false, 1.0
	c, err := u.s.OTA.CreateCampaign(ctx, actor, tenantID, ota.CampaignInput{Name: "mitigation: " + reason, ArtifactID: best.ID,
		Query: model.DeviceQuery{DeviceIDs: []string{deviceID}}, WaveSize: 1, RequireConsent: &no, MaxFailureRatio: &all})
	if err != nil {
		return "", fmt.Errorf("starting a campaign of release %s (%s): %w", best.ID, best.Version, err)
	}
	return fmt.Sprintf("started campaign %s of release %s (version %s)", c.ID, best.ID, best.Version), nil
}
