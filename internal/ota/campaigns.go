package ota

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota/tufmeta"
	"github.com/steward-iot/steward/internal/store"
)

// Campaign events (the per-device ones carry device_id in their data).
const (
	EventCampaignCreated   = "campaign.created"
	EventCampaignWave      = "campaign.wave_started"
	EventCampaignPaused    = "campaign.paused"
	EventCampaignResumed   = "campaign.resumed"
	EventCampaignCancelled = "campaign.cancelled"
	EventCampaignAborted   = "campaign.aborted"
	EventCampaignCompleted = "campaign.completed"
	EventConsentRequested  = "campaign.consent_requested"
	EventConsentGiven      = "campaign.consent"
	EventAssigned          = "ota.assigned"
	EventWithdrawn         = "ota.withdrawn"
	EventDeviceStatus      = "ota.device_status"
	EventInvalidated       = "artifact.invalidated"
)

// Campaign defaults and limits.
const (
	DefaultWaveSize        = 100
	DefaultSuccessRatio    = 0.9
	DefaultMaxFailureRatio = 0.1
	MaxWaveSize            = 100000
	// assignBatch is how many devices one transaction assigns: a wave of
	// thousands does not hold the database's writer for long.
	assignBatch = 200
)

var (
	// ErrInvalidated: the release was found bad; nobody may install it.
	ErrInvalidated = errors.New("the artifact was invalidated")
	// ErrCampaignState: the campaign is not in a state that allows this.
	ErrCampaignState = errors.New("the campaign cannot do this in its current state")
	// ErrNoConsentAsked: the device's consent is not being asked.
	ErrNoConsentAsked = errors.New("this device's consent is not being asked in this campaign")
)

// CampaignInput describes a new campaign. Nil pointers take the defaults.
type CampaignInput struct {
	Name            string
	ArtifactID      string
	Query           model.DeviceQuery
	Dynamic         bool
	Canary          int
	WaveSize        int
	WaveInterval    time.Duration
	SuccessRatio    *float64
	MaxFailureRatio *float64
	PauseOnFailure  bool
	Window          *model.MaintenanceWindow
	// RequireConsent defaults to true for household tenants.
	RequireConsent *bool
}

func ratio(field string, v *float64, def float64) (float64, error) {
	if v == nil {
		return def, nil
	}
	if math.IsNaN(*v) || *v < 0 || *v > 1 {
		return 0, &InvalidError{field, "must be between 0 and 1"}
	}
	return *v, nil
}

func (in *CampaignInput) build() (*model.Campaign, error) {
	name := strings.TrimSpace(in.Name)
	if name == "" || len(name) > 200 {
		return nil, &InvalidError{"name", "must be 1 to 200 characters"}
	}
	if in.ArtifactID == "" {
		return nil, &InvalidError{"artifact_id", "is required"}
	}
	if err := in.Query.Validate(); err != nil {
		return nil, &InvalidError{"query", err.Error()}
	}
	if in.Canary < 0 || in.Canary > MaxWaveSize {
		return nil, &InvalidError{"canary", fmt.Sprintf("must be between 0 and %d", MaxWaveSize)}
	}
	if in.WaveSize == 0 {
		in.WaveSize = DefaultWaveSize
	}
	if in.WaveSize < 1 || in.WaveSize > MaxWaveSize {
		return nil, &InvalidError{"wave_size", fmt.Sprintf("must be between 1 and %d", MaxWaveSize)}
	}
	if in.WaveInterval < 0 || in.WaveInterval > 30*24*time.Hour {
		return nil, &InvalidError{"wave_interval", "must be between 0 and 30 days"}
	}
	sr, err := ratio("success_ratio", in.SuccessRatio, DefaultSuccessRatio)
	if err != nil {
		return nil, err
	}
	fr, err := ratio("max_failure_ratio", in.MaxFailureRatio, DefaultMaxFailureRatio)
	if err != nil {
		return nil, err
	}
	if in.Window != nil {
		if err := in.Window.Validate(); err != nil {
			return nil, &InvalidError{"maintenance_window", err.Error()}
		}
	}
	return &model.Campaign{Name: name, ArtifactID: in.ArtifactID, Query: in.Query, Dynamic: in.Dynamic, Canary: in.Canary,
		WaveSize: in.WaveSize, WaveInterval: in.WaveInterval, SuccessRatio: sr, MaxFailureRatio: fr, PauseOnFailure: in.PauseOnFailure,
		Window: in.Window}, nil
}

// usableArtifact loads an artifact a campaign or assignment may hand out.
func usableArtifact(ctx context.Context, tx store.Tx, tenantID, id string) (*model.Artifact, error) {
	art, err := tx.GetArtifact(ctx, tenantID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &InvalidError{"artifact_id", "artifact " + id + " does not exist in this tenant"}
	} else if err != nil {
		return nil, err
	}
	if !art.Uploaded() {
		return nil, ErrNoContent
	}
	if art.InvalidatedAt != nil {
		return nil, fmt.Errorf("%w (%s): create a campaign with a fixed release", ErrInvalidated, art.InvalidatedReason)
	}
	return art, nil
}

// CreateCampaign targets every device of the query (one statement, however
// large the fleet) and lets the scheduler start the first wave.
func (s *Service) CreateCampaign(ctx context.Context, actor, tenantID string, in CampaignInput) (*model.Campaign, error) {
	c, err := in.build()
	if err != nil {
		return nil, err
	}
	err = s.st.Update(ctx, func(tx store.Tx) error {
		art, err := usableArtifact(ctx, tx, tenantID, c.ArtifactID)
		if err != nil {
			return err
		}
		vt, err := tx.LatestVendorTargets(ctx, tenantID)
		if errors.Is(err, store.ErrNotFound) {
			return &MetadataError{errors.New("the vendor has not signed any image yet: sign the artifact (steward ota sign) first")}
		} else if err != nil {
			return err
		}
		if _, err := tufmeta.FindTarget(vt.Body, art.SHA256); err != nil {
			return &MetadataError{fmt.Errorf("%w: sign the artifact (steward ota sign) before starting a campaign", err)}
		}
		consent := in.RequireConsent
		if consent == nil {
			t, err := tx.GetTenant(ctx, tenantID)
			if err != nil {
				return err
			}
			household := t.Kind == model.TenantHousehold
			consent = &household
		}
		now := s.now()
		c.ID, c.TenantID, c.Version, c.RequireConsent = ids.New("cmp"), tenantID, art.Version, *consent
		c.State, c.Rev, c.CreatedAt, c.UpdatedAt, c.CreatedBy = model.CampaignRunning, 1, now, now, actor
		if err := tx.CreateCampaign(ctx, c, art.ProductIDs); err != nil {
			if errors.Is(err, store.ErrBadQuery) || errors.Is(err, store.ErrNotFound) {
				return &InvalidError{"query", err.Error()}
			}
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "ota.campaign_create", c.ID, EventCampaignCreated,
			map[string]any{"campaign_id": c.ID, "name": c.Name, "artifact_id": c.ArtifactID, "version": c.Version, "total": c.Total,
				"dynamic": c.Dynamic, "canary": c.Canary, "wave_size": c.WaveSize, "require_consent": c.RequireConsent}, now)
	})
	if err != nil {
		return nil, err
	}
	s.Kick()
	return c, nil
}

// GetCampaign reads a campaign with its devices per status (Count).
func (s *Service) GetCampaign(ctx context.Context, tenantID, id string) (*model.Campaign, error) {
	c, err := s.st.GetCampaign(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	return c, s.Count(ctx, c)
}

// Count fills c.Counts with its devices per status. Devices not yet in a
// wave are counted from the total (no scan of the rows still waiting,
// however large the campaign): pending while it is open, cancelled once
// it ended.
func (s *Service) Count(ctx context.Context, c *model.Campaign) error {
	counts, err := s.st.CampaignCounts(ctx, c.TenantID, c.ID, 0)
	if err != nil {
		return err
	}
	rest := c.Total
	for _, n := range counts {
		rest -= n
	}
	if rest > 0 {
		if c.State.Open() {
			counts[model.UpdatePending] += rest
		} else {
			counts[model.UpdateCancelled] += rest
		}
	}
	c.Counts = counts
	return nil
}

// Kick makes the scheduler look at the campaigns now.
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// ---- operator actions ----

// PauseCampaign stops new waves and notifications; devices already told
// go on.
func (s *Service) PauseCampaign(ctx context.Context, actor, tenantID, id, reason string) (*model.Campaign, error) {
	return s.changeCampaign(ctx, actor, tenantID, id, "ota.campaign_pause", EventCampaignPaused, func(tx store.Tx, c *model.Campaign, _ map[string]any) error {
		if c.State != model.CampaignRunning {
			return fmt.Errorf("%w: it is %s (only a running campaign can be paused)", ErrCampaignState, c.State)
		}
		c.State, c.Reason = model.CampaignPaused, reason
		return nil
	})
}

// ResumeCampaign runs a paused campaign again. When its failure gate is
// over the threshold (it tripped, or would at once) the operator accepts
// what happened so far: the gates are re-armed, counting only failures
// and devices told from now on, and the wave in progress is taken as
// passed, so the next wave may start after the wave interval. A campaign
// paused while healthy resumes as it was.
func (s *Service) ResumeCampaign(ctx context.Context, actor, tenantID, id string) (*model.Campaign, error) {
	c, err := s.changeCampaign(ctx, actor, tenantID, id, "ota.campaign_resume", EventCampaignResumed, func(tx store.Tx, c *model.Campaign, data map[string]any) error {
		if c.State != model.CampaignPaused {
			return fmt.Errorf("%w: it is %s (only a paused campaign can be resumed)", ErrCampaignState, c.State)
		}
		art, err := tx.GetArtifact(ctx, tenantID, c.ArtifactID)
		if err != nil {
			return err
		}
		if art.InvalidatedAt != nil {
			return fmt.Errorf("%w (%s)", ErrInvalidated, art.InvalidatedReason)
		}
		counts, err := tx.CampaignCounts(ctx, tenantID, c.ID, 0)
		if err != nil {
			return err
		}
		if failures, n, over := failureGate(c, counts); over {
			c.GateFailed, c.GateTold, c.GateWave = c.GateFailed+failures, c.GateTold+n, c.Wave
			data["gates_rearmed"] = map[string]any{"gate_failed": c.GateFailed, "gate_told": c.GateTold, "gate_wave": c.GateWave,
				"failed": failures, "told": n}
		}
		c.State, c.Reason = model.CampaignRunning, ""
		return nil
	})
	if err == nil {
		s.Kick()
	}
	return c, err
}

// CancelCampaign ends a campaign: devices that have not finished are
// cancelled and their assignments withdrawn.
func (s *Service) CancelCampaign(ctx context.Context, actor, tenantID, id, reason string) (*model.Campaign, error) {
	return s.changeCampaign(ctx, actor, tenantID, id, "ota.campaign_cancel", EventCampaignCancelled, func(tx store.Tx, c *model.Campaign, _ map[string]any) error {
		if !c.State.Open() {
			return fmt.Errorf("%w: it already ended (%s)", ErrCampaignState, c.State)
		}
		if reason == "" {
			reason = "cancelled by " + actor
		}
		return s.endCampaign(ctx, tx, actor, c, model.CampaignCancelled, reason)
	})
}

// endCampaign closes c in tx with state and reason, cancelling what its
// devices have not finished.
func (s *Service) endCampaign(ctx context.Context, tx store.Tx, actor string, c *model.Campaign, state model.CampaignState, reason string) error {
	now := s.now()
	told, err := tx.EndCampaignDevices(ctx, c.TenantID, c.ID, model.UpdateCancelled, reason, now)
	if err != nil {
		return err
	}
	for _, dev := range told {
		if err := s.withdraw(ctx, tx, actor, c.TenantID, dev, c.ArtifactID, reason); err != nil {
			return err
		}
	}
	c.State, c.Reason, c.FinishedAt = state, reason, &now
	return nil
}

// withdraw takes back a device's assignment of artifactID if it has not
// finished: the director serves no metadata for it any more and the
// device is told.
func (s *Service) withdraw(ctx context.Context, tx store.Tx, actor, tenantID, deviceID, artifactID, reason string) error {
	as, err := tx.GetAssignment(ctx, tenantID, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if as.ArtifactID != artifactID || as.Status.Final() {
		return nil
	}
	now := s.now()
	if err := tx.SetAssignmentStatus(ctx, tenantID, deviceID, artifactID, model.UpdateCancelled, reason, now); err != nil {
		return err
	}
	return emit(ctx, tx, tenantID, deviceID, EventWithdrawn, map[string]any{"device_id": deviceID, "artifact_id": artifactID,
		"campaign_id": as.CampaignID, "reason": reason}, now)
}

func (s *Service) changeCampaign(ctx context.Context, actor, tenantID, id, action, evType string, fn changeFunc) (*model.Campaign, error) {
	var c *model.Campaign
	// The scheduler may move the campaign on between the read and the
	// write (its steps are guarded by rev too): read again and retry.
	err := retryStale(func() error {
		return s.st.Update(ctx, func(tx store.Tx) error {
			var err error
			if c, err = tx.GetCampaign(ctx, tenantID, id); err != nil {
				return err
			}
			return s.changeOne(ctx, tx, actor, action, evType, c, fn)
		})
	})
	return c, err
}

func retryStale(fn func() error) error {
	var err error
	for range 5 {
		if err = fn(); !errors.Is(err, store.ErrStale) {
			return err
		}
	}
	return err
}

// changeFunc changes a campaign in tx; what it adds to data goes into the
// audit record and event.
type changeFunc func(tx store.Tx, c *model.Campaign, data map[string]any) error

// changeOne applies fn to c in tx, saves it and audits the change.
func (s *Service) changeOne(ctx context.Context, tx store.Tx, actor, action, evType string, c *model.Campaign, fn changeFunc) error {
	from := c.State
	data := map[string]any{}
	if err := fn(tx, c, data); err != nil {
		return err
	}
	c.UpdatedAt = s.now()
	if err := tx.UpdateCampaign(ctx, c); err != nil {
		return err
	}
	data["campaign_id"], data["from"], data["to"], data["reason"] = c.ID, from, c.State, c.Reason
	return auditEmit(ctx, tx, c.TenantID, actor, action, c.ID, evType, data, c.UpdatedAt)
}

// Consent records an owner's answer for one device. A yes notifies the
// device at once when the campaign runs; a no is final for this campaign
// (the next release asks again).
func (s *Service) Consent(ctx context.Context, actor, tenantID, campaignID, deviceID string, grant bool) (*model.CampaignDevice, error) {
	var cd *model.CampaignDevice
	err := retryStale(func() error {
		return s.st.Update(ctx, func(tx store.Tx) error {
			c, err := tx.GetCampaign(ctx, tenantID, campaignID)
			if err != nil {
				return err
			}
			if cd, err = tx.GetCampaignDevice(ctx, tenantID, campaignID, deviceID); err != nil {
				return err
			}
			if !c.State.Open() || cd.Consent != model.ConsentAsked || cd.Status != model.UpdatePending {
				return ErrNoConsentAsked
			}
			now := s.now()
			cd.UpdatedAt = now
			if grant {
				cd.Consent = model.ConsentGranted
			} else {
				cd.Consent, cd.Status, cd.Detail = model.ConsentRefused, model.UpdateRefused, "the owner declined this update"
			}
			if err := tx.SetCampaignDevice(ctx, cd); err != nil {
				return err
			}
			if err := auditEmit(ctx, tx, tenantID, actor, "ota.consent", deviceID, EventConsentGiven,
				map[string]any{"campaign_id": campaignID, "device_id": deviceID, "consent": cd.Consent, "version": c.Version}, now); err != nil {
				return err
			}
			if grant && c.State == model.CampaignRunning && s.inWindow(c) {
				return s.assignInCampaign(ctx, tx, c, cd)
			}
			return nil
		})
	})
	return cd, err
}

// InvalidationResult is what invalidating a release did.
type InvalidationResult struct {
	Artifact           *model.Artifact `json:"artifact"`
	CancelledCampaigns []string        `json:"cancelled_campaigns"`
	Withdrawn          int             `json:"withdrawn" doc:"Direct assignments withdrawn."`
	// Installed counts the devices already running the release: the
	// follow-up campaign's query selects them.
	Installed     int64             `json:"installed"`
	FollowUpQuery model.DeviceQuery `json:"follow_up_query" doc:"A fleet query for the devices on this release, for a follow-up campaign."`
}

// Invalidate marks a release bad: its open campaigns are cancelled, open
// assignments withdrawn, nobody may install it any more, and the devices
// already on it are counted for a follow-up campaign.
func (s *Service) Invalidate(ctx context.Context, actor, tenantID, artifactID, reason string) (*InvalidationResult, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > 500 {
		return nil, &InvalidError{"reason", "must be 1 to 500 characters: say why the release is bad"}
	}
	out := &InvalidationResult{CancelledCampaigns: []string{}}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		now := s.now()
		if err := tx.InvalidateArtifact(ctx, tenantID, artifactID, reason, now); err != nil {
			if errors.Is(err, store.ErrStale) {
				return fmt.Errorf("%w: it already is", ErrInvalidated)
			}
			return err
		}
		art, err := tx.GetArtifact(ctx, tenantID, artifactID)
		if err != nil {
			return err
		}
		out.Artifact = art
		cs, err := tx.CampaignsOfArtifact(ctx, tenantID, artifactID)
		if err != nil {
			return err
		}
		why := "release invalidated: " + reason
		for i := range cs {
			c := &cs[i]
			if !c.State.Open() {
				continue
			}
			if err := s.endCampaign(ctx, tx, actor, c, model.CampaignCancelled, why); err != nil {
				return err
			}
			c.UpdatedAt = now
			if err := tx.UpdateCampaign(ctx, c); err != nil {
				return err
			}
			if err := emit(ctx, tx, tenantID, c.ID, EventCampaignCancelled, map[string]any{"campaign_id": c.ID, "reason": why}, now); err != nil {
				return err
			}
			out.CancelledCampaigns = append(out.CancelledCampaigns, c.ID)
		}
		open, err := tx.OpenAssignmentsOf(ctx, tenantID, artifactID)
		if err != nil {
			return err
		}
		for _, as := range open {
			if err := s.withdraw(ctx, tx, actor, tenantID, as.DeviceID, artifactID, why); err != nil {
				return err
			}
			out.Withdrawn++
		}
		out.FollowUpQuery = model.DeviceQuery{FirmwareVersion: art.Version}
		if len(art.ProductIDs) == 1 {
			out.FollowUpQuery.ProductID = art.ProductIDs[0]
		}
		if out.Installed, err = tx.CountDevices(ctx, tenantID, out.FollowUpQuery); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "ota.invalidate", artifactID, EventInvalidated,
			map[string]any{"artifact_id": artifactID, "version": art.Version, "reason": reason, "cancelled_campaigns": out.CancelledCampaigns,
				"withdrawn": out.Withdrawn, "installed": out.Installed}, now)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
