// Package alarm keeps behaviour alarms and acts on them: it stores the
// detector's decisions as alarms (one open alarm per device and kind,
// raised, acknowledged by operators, cleared when the metric is back to
// normal), mitigates automatically as the tenant chose (quarantine,
// disconnect, revoke the certificate, suspend, update, notify), and audits
// every step with the alarm as evidence. Events alarm.raised,
// alarm.acknowledged, alarm.cleared and device.mitigated go through the
// outbox, so webhooks and the event stream see them.
package alarm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Event types.
const (
	EventRaised       = "alarm.raised"
	EventAcknowledged = "alarm.acknowledged"
	EventCleared      = "alarm.cleared"
	EventMitigated    = "device.mitigated"
)

// Actor names the detector in audit records.
const Actor = "system:detect"

// Enforcer applies a mitigation to a device's live connection on this node
// at once (the broker). Other nodes follow the device.state_changed and
// device.mitigated events.
type Enforcer interface {
	// Quarantine reduces a connected device to its ota/ topics; false when
	// it is not connected here.
	Quarantine(tenantID, deviceID string) bool
	// Disconnect ends a device's connection; false when not connected here.
	Disconnect(tenantID, deviceID, reason string) bool
}

// Revoker revokes a device's current certificate (the identity service).
type Revoker interface {
	RevokeDeviceCertificate(ctx context.Context, tenantID, deviceID, note string) (serial string, err error)
}

// Updater starts an update for one device: the extension point of the
// update action (an OTA campaign for the affected device).
type Updater interface {
	UpdateDevice(ctx context.Context, actor, tenantID, deviceID, reason string) (detail string, err error)
}

// Service stores alarms and mitigates.
type Service struct {
	st  store.Store
	log *slog.Logger
	now func() time.Time

	enforcer atomic.Pointer[Enforcer]
	// Revoker and Updater are optional; set them before the detector runs.
	Revoker Revoker
	Updater Updater
	// OnSettings, when set, learns that a tenant's detection settings
	// changed (the detector reads them again).
	OnSettings func(ctx context.Context, tenantID string)
	// OnMitigated, when set, is told of each mitigation after it committed
	// and was enforced (measurements, tests).
	OnMitigated func(a *model.Alarm)
}

// New returns a service over st.
func New(st store.Store, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, log: log, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// SetEnforcer sets the broker once it runs.
func (s *Service) SetEnforcer(e Enforcer) { s.enforcer.Store(&e) }

func (s *Service) enforce() Enforcer {
	if p := s.enforcer.Load(); p != nil {
		return *p
	}
	return nil
}

// SettingsChanged tells the detector to read a tenant's settings again.
func (s *Service) SettingsChanged(ctx context.Context, tenantID string) {
	if s.OnSettings != nil {
		s.OnSettings(ctx, tenantID)
	}
}

// Handle takes one decision of the detector (its Decide).
func (s *Service) Handle(dec detect.Decision) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var err error
	if dec.Raise {
		_, err = s.Raise(ctx, dec)
	} else {
		_, err = s.Clear(ctx, dec.TenantID, dec.DeviceID, dec.Kind, dec.Evidence)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("alarm: handling a detection", "device", dec.DeviceID, "kind", dec.Kind, "raise", dec.Raise, "err", err)
	}
}

// Raise opens an alarm, or counts an open one up, and mitigates as the
// tenant's settings say if it has not been mitigated yet. Quarantine,
// suspend, disconnect and notify commit with the alarm itself.
func (s *Service) Raise(ctx context.Context, dec detect.Decision) (*model.Alarm, error) {
	settings, err := s.st.GetSecuritySettings(ctx, dec.TenantID)
	if err != nil {
		return nil, err
	}
	action := settings.Detection.Mitigations[dec.Kind]
	ev, err := json.Marshal(dec.Evidence)
	if err != nil {
		return nil, err
	}
	if string(ev) == "null" {
		ev = []byte("{}")
	}
	now := s.now()
	var a *model.Alarm
	var m *model.Mitigation
	err = s.st.Update(ctx, func(tx store.Tx) error {
		m = nil
		open, err := tx.OpenAlarm(ctx, dec.TenantID, dec.DeviceID, dec.Kind)
		switch {
		case err == nil:
			open.Count++
			open.LastRaised, open.Evidence, open.Title = now, ev, dec.Title
			a = open
			if err := tx.UpdateAlarm(ctx, open); err != nil {
				return err
			}
		case errors.Is(err, store.ErrNotFound):
			if _, err := tx.GetDevice(ctx, dec.TenantID, dec.DeviceID); err != nil {
				return err // deleted meanwhile: no alarm
			}
			a = &model.Alarm{ID: ids.New("alm"), TenantID: dec.TenantID, DeviceID: dec.DeviceID, Kind: dec.Kind,
				Severity: dec.Kind.Severity(), State: model.AlarmActive, Title: dec.Title, FirstRaised: now, LastRaised: now,
				Count: 1, Evidence: ev}
			if err := tx.CreateAlarm(ctx, a); err != nil {
				return err
			}
			if err := auditEmit(ctx, tx, a.TenantID, Actor, "alarm.raise", a.DeviceID,
				map[string]any{"alarm_id": a.ID, "kind": a.Kind, "severity": a.Severity, "title": a.Title, "evidence": a.Evidence},
				EventRaised, a.ID, a, now); err != nil {
				return err
			}
		default:
			return err
		}
		if action != "" && a.Mitigation == nil && inTx(action) {
			if m, err = s.mitigateTx(ctx, tx, Actor, a, action, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if m != nil {
		s.enforceNow(a, m)
		return a, nil
	}
	if action != "" && a.Mitigation == nil {
		return s.Mitigate(ctx, Actor, a, action)
	}
	return a, nil
}

// Clear clears the device's open alarm of a kind.
func (s *Service) Clear(ctx context.Context, tenantID, deviceID string, kind model.AlarmKind, evidence map[string]any) (*model.Alarm, error) {
	now := s.now()
	var a *model.Alarm
	err := s.st.Update(ctx, func(tx store.Tx) error {
		var err error
		if a, err = tx.OpenAlarm(ctx, tenantID, deviceID, kind); err != nil {
			return err
		}
		a.State, a.ClearedAt = model.AlarmCleared, &now
		if err := tx.UpdateAlarm(ctx, a); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, Actor, "alarm.clear", deviceID,
			map[string]any{"alarm_id": a.ID, "kind": a.Kind, "count": a.Count, "detail": evidence}, EventCleared, a.ID, a, now)
	})
	return a, err
}

// StateError refuses a change the alarm's state does not allow.
type StateError struct{ Message string }

func (e *StateError) Error() string { return e.Message }

// InvalidError names a bad input field.
type InvalidError struct{ Field, Message string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

// Acknowledge records that an operator has seen an active alarm. It stays
// open (acknowledged) until its metric is normal again.
func (s *Service) Acknowledge(ctx context.Context, actor, tenantID, id, note string) (*model.Alarm, error) {
	note = strings.TrimSpace(note)
	if len(note) > 1024 {
		return nil, &InvalidError{"note", "at most 1024 characters"}
	}
	now := s.now()
	var a *model.Alarm
	err := s.st.Update(ctx, func(tx store.Tx) error {
		var err error
		if a, err = tx.GetAlarm(ctx, tenantID, id); err != nil {
			return err
		}
		switch a.State {
		case model.AlarmAcknowledged:
			return &StateError{fmt.Sprintf("alarm %s was already acknowledged by %s at %s", id, a.AcknowledgedBy,
				a.AcknowledgedAt.Format(time.RFC3339))}
		case model.AlarmCleared:
			return &StateError{fmt.Sprintf("alarm %s cleared at %s; there is nothing to acknowledge", id, a.ClearedAt.Format(time.RFC3339))}
		}
		a.State, a.AcknowledgedBy, a.AcknowledgedAt, a.AckNote = model.AlarmAcknowledged, actor, &now, note
		if err := tx.UpdateAlarm(ctx, a); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "alarm.acknowledge", a.DeviceID,
			map[string]any{"alarm_id": a.ID, "kind": a.Kind, "note": note}, EventAcknowledged, a.ID, a, now)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Adopt hands the open alarms of every tenant to a starting detector, so
// that they clear when their metric is normal.
func (s *Service) Adopt(ctx context.Context, d *detect.Detector) error {
	after := ""
	for {
		page, err := s.st.OpenAlarms(ctx, after, 1000)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		d.Adopt(page)
		after = page[len(page)-1].ID
	}
}

func auditEmit(ctx context.Context, tx store.Tx, tenantID, actor, action, target string, summary any, evType, subject string,
	data any, now time.Time) error {
	if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: action, Target: target, Summary: summary}); err != nil {
		return fmt.Errorf("writing the audit record: %w", err)
	}
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: evType, Subject: subject, Time: now, Data: b})
}
