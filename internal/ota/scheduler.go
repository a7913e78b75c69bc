package ota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota/tufmeta"
	"github.com/steward-iot/steward/internal/store"
)

// The scheduler moves running campaigns on: it checks the gates, starts
// the next wave when the one in progress passed, aborts (or pauses) when
// too many failed, and completes a campaign whose devices all finished.
// Every node may run it: each step is conditional on the campaign's rev,
// so a wave is started once however many nodes try.

// SystemActor is who the scheduler acts as in the audit log.
const SystemActor = "system:campaigns"

func (s *Service) inWindow(c *model.Campaign) bool {
	return c.Window == nil || c.Window.Contains(s.now())
}

// RunScheduler steps the open campaigns every interval (and when kicked)
// until ctx ends.
func (s *Service) RunScheduler(ctx context.Context, every time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.StepCampaigns(ctx); err != nil && ctx.Err() == nil {
			log.Error("update campaigns: a scheduler round failed; retrying at the next", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// StepCampaigns runs one round over every open campaign.
func (s *Service) StepCampaigns(ctx context.Context) error {
	cs, err := s.st.OpenCampaigns(ctx, "")
	if err != nil {
		return err
	}
	var errs []error
	for i := range cs {
		if cs[i].State != model.CampaignRunning {
			continue
		}
		if err := s.step(ctx, &cs[i]); err != nil && !errors.Is(err, store.ErrStale) {
			errs = append(errs, fmt.Errorf("campaign %s: %w", cs[i].ID, err))
		}
	}
	return errors.Join(errs...)
}

// told counts the devices told to install: in a started wave and past
// pending (an unanswered consent is still pending).
func told(counts map[model.UpdateStatus]int64) int64 {
	var n int64
	for st, k := range counts {
		if st != model.UpdatePending && st != model.UpdateRefused && st != model.UpdateCancelled {
			n += k
		}
	}
	return n
}

// failureGate counts the failures and the devices told since the gate's
// baseline (see ResumeCampaign) and reports whether the failures are over
// the threshold.
func failureGate(c *model.Campaign, counts map[model.UpdateStatus]int64) (failures, n int64, over bool) {
	failures = counts[model.UpdateFailed] + counts[model.UpdateRolledBack] - c.GateFailed
	n = told(counts) - c.GateTold
	return failures, n, n > 0 && float64(failures)/float64(n) > c.MaxFailureRatio
}

func (s *Service) step(ctx context.Context, c *model.Campaign) error {
	counts, err := s.st.CampaignCounts(ctx, c.TenantID, c.ID, 0)
	if err != nil {
		return err
	}
	if failures, n, over := failureGate(c, counts); over {
		return s.trip(ctx, c, failures, n)
	}
	if !s.inWindow(c) {
		return nil
	}
	if err := s.tellReady(ctx, c); err != nil {
		return err
	}
	// A wave the operator accepted on resuming (GateWave) needs no success
	// gate: its failures would hold it back for good.
	if c.Wave > c.GateWave {
		wave, err := s.st.CampaignCounts(ctx, c.TenantID, c.ID, c.Wave)
		if err != nil {
			return err
		}
		var size int64
		for st, k := range wave {
			if st != model.UpdateRefused && st != model.UpdateCancelled {
				size += k
			}
		}
		if size > 0 && float64(wave[model.UpdateSucceeded])/float64(size) < c.SuccessRatio {
			return nil // the wave in progress has not passed its gate yet
		}
	}
	if c.WaveStartedAt != nil && s.now().Before(c.WaveStartedAt.Add(c.WaveInterval)) {
		return nil
	}
	waiting, err := s.st.CampaignWaiting(ctx, c.TenantID, c.ID)
	if err != nil {
		return err
	}
	if waiting == 0 {
		return s.maybeComplete(ctx, c, counts)
	}
	return s.startWave(ctx, c)
}

// trip handles the failure gate: abort (or pause).
func (s *Service) trip(ctx context.Context, c *model.Campaign, failures, n int64) error {
	since := ""
	if c.GateTold > 0 {
		since = " since the campaign was last resumed"
	}
	reason := fmt.Sprintf("failure threshold crossed: %d of %d devices failed or rolled back%s (more than %.0f%%)", failures, n,
		since, c.MaxFailureRatio*100)
	return s.st.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.GetCampaign(ctx, c.TenantID, c.ID)
		if err != nil {
			return err
		}
		if cur.Rev != c.Rev || cur.State != model.CampaignRunning {
			return store.ErrStale
		}
		from, evType, action := c.State, EventCampaignAborted, "ota.campaign_abort"
		if c.PauseOnFailure {
			c.State, c.Reason, evType, action = model.CampaignPaused, reason, EventCampaignPaused, "ota.campaign_pause"
		} else if err := s.endCampaign(ctx, tx, SystemActor, c, model.CampaignAborted, reason); err != nil {
			return err
		}
		c.UpdatedAt = s.now()
		if err := tx.UpdateCampaign(ctx, c); err != nil {
			return err
		}
		return auditEmit(ctx, tx, c.TenantID, SystemActor, action, c.ID, evType,
			map[string]any{"campaign_id": c.ID, "from": from, "to": c.State, "reason": reason, "failed": failures, "told": n,
				"gate_failed": c.GateFailed, "gate_told": c.GateTold}, c.UpdatedAt)
	})
}

func (s *Service) maybeComplete(ctx context.Context, c *model.Campaign, counts map[model.UpdateStatus]int64) error {
	if c.Dynamic {
		return nil // stays open for devices that come to match
	}
	for st, k := range counts {
		if k > 0 && !st.Final() {
			return nil
		}
	}
	return s.st.Update(ctx, func(tx store.Tx) error {
		now := s.now()
		from := c.State
		c.State, c.FinishedAt, c.UpdatedAt = model.CampaignCompleted, &now, now
		if err := tx.UpdateCampaign(ctx, c); err != nil {
			return err
		}
		return auditEmit(ctx, tx, c.TenantID, SystemActor, "ota.campaign_complete", c.ID, EventCampaignCompleted,
			map[string]any{"campaign_id": c.ID, "from": from, "to": c.State, "counts": counts}, now)
	})
}

// startWave takes the next devices into a new wave and tells them (or asks
// their owners first).
func (s *Service) startWave(ctx context.Context, c *model.Campaign) error {
	n := c.WaveSize
	if c.Wave == 0 && c.Canary > 0 {
		n = c.Canary
	}
	consent := model.ConsentNone
	if c.RequireConsent {
		consent = model.ConsentAsked
	}
	var taken []string
	err := s.st.Update(ctx, func(tx store.Tx) error {
		now := s.now()
		c.Wave++
		c.WaveStartedAt, c.UpdatedAt = &now, now
		if err := tx.UpdateCampaign(ctx, c); err != nil {
			return err
		}
		var err error
		if taken, err = tx.TakeWave(ctx, c.TenantID, c.ID, c.Wave, n, consent, now); err != nil {
			return err
		}
		// The wave's record names its devices (the first thousand: a record
		// stays small), so each assignment is traceable to it.
		named := taken[:min(len(taken), 1000)]
		if err := auditEmit(ctx, tx, c.TenantID, SystemActor, "ota.campaign_wave", c.ID, EventCampaignWave,
			map[string]any{"campaign_id": c.ID, "wave": c.Wave, "devices": len(taken), "device_ids": named,
				"canary": c.Wave == 1 && c.Canary > 0}, now); err != nil {
			return err
		}
		if c.RequireConsent {
			return emit(ctx, tx, c.TenantID, c.ID, EventConsentRequested, map[string]any{"campaign_id": c.ID, "wave": c.Wave,
				"version": c.Version, "device_ids": taken}, now)
		}
		return nil
	})
	if err != nil || c.RequireConsent {
		return err
	}
	return s.tellReady(ctx, c)
}

// tellReady assigns the devices of started waves that are still to be told
// (a new wave; a consent given while paused or outside the window; a
// device that joined), a batch per transaction.
func (s *Service) tellReady(ctx context.Context, c *model.Campaign) error {
	for {
		ready, err := s.st.ReadyCampaignDevices(ctx, c.TenantID, c.ID, assignBatch)
		if err != nil || len(ready) == 0 {
			return err
		}
		if err := s.st.Update(ctx, func(tx store.Tx) error {
			cur, err := tx.GetCampaign(ctx, c.TenantID, c.ID)
			if err != nil {
				return err
			}
			if cur.State != model.CampaignRunning {
				return store.ErrStale // paused or ended meanwhile
			}
			for i := range ready {
				if err := s.assignInCampaign(ctx, tx, c, &ready[i]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			if errors.Is(err, store.ErrConflict) {
				// Another node's scheduler told these devices meanwhile
				// (every node steps every campaign): nothing was written.
				return store.ErrStale
			}
			return err
		}
		if len(ready) < assignBatch {
			return nil
		}
	}
}

// assignInCampaign signs the device's assignment and marks it notified; a
// device the image cannot go to (other hardware, device gone) fails with
// the reason, and counts against the gate.
func (s *Service) assignInCampaign(ctx context.Context, tx store.Tx, c *model.Campaign, cd *model.CampaignDevice) error {
	cd.UpdatedAt = s.now()
	if cd.Wave == 0 {
		cd.Wave = c.Wave
	}
	_, err := s.assign(ctx, tx, SystemActor, c.TenantID, cd.DeviceID, c.ArtifactID, c.ID)
	var me *MetadataError
	switch {
	case err == nil:
		cd.Status, cd.Detail = model.UpdateNotified, ""
	case errors.As(err, &me), errors.Is(err, store.ErrNotFound), errors.Is(err, ErrInvalidated):
		cd.Status, cd.Detail = model.UpdateFailed, "not assigned: "+err.Error()
	default:
		return err
	}
	if err := tx.SetCampaignDevice(ctx, cd); err != nil {
		return err
	}
	if cd.Status == model.UpdateFailed {
		return emit(ctx, tx, c.TenantID, cd.DeviceID, EventDeviceStatus, map[string]any{"device_id": cd.DeviceID,
			"campaign_id": c.ID, "artifact_id": c.ArtifactID, "status": cd.Status, "detail": cd.Detail}, cd.UpdatedAt)
	}
	return nil
}

// assign is Assign inside a transaction: it checks that the image may go to
// the device, signs the device's next director targets and stores them.
func (s *Service) assign(ctx context.Context, tx store.Tx, actor, tenantID, deviceID, artifactID, campaignID string) (*model.Assignment, error) {
	if s.director == nil {
		return nil, ErrNoDirector
	}
	d, err := tx.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return nil, err
	}
	art, err := usableArtifact(ctx, tx, tenantID, artifactID)
	if err != nil {
		return nil, err
	}
	vt, err := tx.LatestVendorTargets(ctx, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &MetadataError{errors.New("the vendor has not signed any image yet")}
	} else if err != nil {
		return nil, err
	}
	target, err := tufmeta.FindTarget(vt.Body, art.SHA256)
	if err != nil {
		return nil, &MetadataError{err}
	}
	var prod *model.Product
	if p, err := tx.GetProduct(ctx, tenantID, d.ProductID); err == nil {
		prod = p
	}
	hw := HardwareID(d, prod)
	if !slices.Contains(target.Info.HardwareIDs, hw) {
		return nil, &MetadataError{fmt.Errorf("%w: image %s fits %v, device %s is %s", tufmeta.ErrHardware, target.Name,
			target.Info.HardwareIDs, d.ID, hw)}
	}
	next := int64(1)
	if cur, err := tx.GetAssignment(ctx, tenantID, deviceID); err == nil {
		next = cur.DirectorVersion + 1
		if err := s.supersede(ctx, tx, cur, campaignID); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	now := s.now()
	out := &model.Assignment{DeviceID: d.ID, TenantID: tenantID, ArtifactID: art.ID, TargetName: target.Name,
		Version: target.Info.Version, HardwareID: hw, CampaignID: campaignID, DirectorVersion: next, Status: model.UpdatePending,
		CreatedAt: now, CreatedBy: actor}
	if err := s.signAssignment(out, target); err != nil {
		return nil, err
	}
	if err := tx.PutAssignment(ctx, out); err != nil {
		return nil, err
	}
	data := map[string]any{"device_id": d.ID, "artifact_id": art.ID, "version": out.Version, "director_version": next,
		"campaign_id": campaignID}
	if campaignID != "" {
		// One audit record per wave (the campaign's), not per device.
		return out, emit(ctx, tx, tenantID, d.ID, EventAssigned, data, now)
	}
	return out, auditEmit(ctx, tx, tenantID, actor, "ota.assign", d.ID, EventAssigned, data, now)
}

// HandleEvent joins a device to the open dynamic campaigns it has come to
// match (a new device, a changed tag, a new group member) and, when the
// campaign is past its first wave, tells it at once in the wave in
// progress. It is meant for a durable event consumer: it is idempotent.
func (s *Service) HandleEvent(ctx context.Context, ev model.Event) error {
	var devices []string
	switch ev.Type {
	case "device.created", "device.updated", "device.state_changed", "device.claimed":
		devices = []string{ev.Subject}
	case "group.members_changed":
		var d struct {
			Add []string `json:"add"`
		}
		if json.Unmarshal(ev.Data, &d) == nil {
			devices = d.Add
		}
	}
	if len(devices) == 0 || ev.TenantID == "" {
		return nil
	}
	cs, err := s.st.OpenCampaigns(ctx, ev.TenantID)
	if err != nil {
		return err
	}
	for i := range cs {
		c := &cs[i]
		if !c.Dynamic {
			continue
		}
		for _, dev := range devices {
			if err := s.join(ctx, c, dev); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

func (s *Service) join(ctx context.Context, c *model.Campaign, deviceID string) error {
	return s.st.Update(ctx, func(tx store.Tx) error {
		art, err := tx.GetArtifact(ctx, c.TenantID, c.ArtifactID)
		if err != nil {
			return err
		}
		now := s.now()
		joined, err := tx.JoinCampaign(ctx, c, art.ProductIDs, deviceID, c.Wave, now)
		if err != nil || !joined {
			return err
		}
		if err := auditEmit(ctx, tx, c.TenantID, SystemActor, "ota.campaign_join", c.ID, "campaign.device_joined",
			map[string]any{"campaign_id": c.ID, "device_id": deviceID, "wave": c.Wave}, now); err != nil {
			return err
		}
		if c.Wave == 0 {
			return nil // the first wave takes it
		}
		// It is in the wave in progress: ask its owner, or tell it now
		// (the scheduler tells it later when paused or outside the window).
		cd, err := tx.GetCampaignDevice(ctx, c.TenantID, c.ID, deviceID)
		if err != nil {
			return err
		}
		if c.RequireConsent {
			cd.Consent, cd.UpdatedAt = model.ConsentAsked, now
			if err := tx.SetCampaignDevice(ctx, cd); err != nil {
				return err
			}
			return emit(ctx, tx, c.TenantID, c.ID, EventConsentRequested, map[string]any{"campaign_id": c.ID, "wave": c.Wave,
				"version": c.Version, "device_ids": []string{deviceID}}, now)
		}
		if c.State != model.CampaignRunning || !s.inWindow(c) {
			return nil
		}
		return s.assignInCampaign(ctx, tx, c, cd)
	})
}

// supersede ends the device's part in the campaign of its current
// assignment when a new one replaces it unfinished: the device will only
// report on the new one, and the old campaign must not wait for it.
func (s *Service) supersede(ctx context.Context, tx store.Tx, cur *model.Assignment, campaignID string) error {
	if cur.CampaignID == "" || cur.CampaignID == campaignID || cur.Status.Final() {
		return nil
	}
	cd, err := tx.GetCampaignDevice(ctx, cur.TenantID, cur.CampaignID, cur.DeviceID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if cd.Status.Final() {
		return nil
	}
	by := "a direct assignment"
	if campaignID != "" {
		by = "campaign " + campaignID
	}
	cd.Status, cd.Detail, cd.UpdatedAt = model.UpdateCancelled, "superseded by "+by, s.now()
	return tx.SetCampaignDevice(ctx, cd)
}
