package alarm

import (
	"context"
	"errors"
	"fmt"

	"github.com/steward-iot/steward/internal/lifecycle"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Mitigation results.
const (
	ResultApplied = "applied"
	ResultSkipped = "skipped"
	ResultFailed  = "failed"
)

// Mitigate takes action about an alarm and records what happened on it,
// with an audit record (the alarm as evidence) and device.mitigated.
//
// Quarantine and suspend are lifecycle transitions made in the same
// transaction as that record; the broker on this node then applies them
// to the live connection at once, without waiting for the event (other
// nodes follow device.state_changed). A quarantined device is released
// with the ordinary transition back to active.
func (s *Service) Mitigate(ctx context.Context, actor string, a *model.Alarm, action model.MitigationAction) (*model.Alarm, error) {
	if !action.Valid() {
		return nil, &InvalidError{"action", fmt.Sprintf("%q is not a mitigation action", action)}
	}
	reason := fmt.Sprintf("alarm %s: %s", a.ID, a.Title)
	m := &model.Mitigation{Action: action, Result: ResultApplied}
	var transition model.State
	switch action {
	case model.MitigateQuarantine:
		transition = model.StateQuarantined
	case model.MitigateSuspend:
		transition = model.StateSuspended
	case model.MitigateRevoke:
		if s.Revoker == nil {
			m.Result, m.Detail = ResultFailed, "certificate revocation is not available on this server"
		} else if serial, err := s.Revoker.RevokeDeviceCertificate(ctx, a.TenantID, a.DeviceID, reason); err != nil {
			m.Result, m.Detail = ResultFailed, err.Error()
		} else {
			m.Detail = "revoked certificate " + serial
		}
	case model.MitigateUpdate:
		if s.Updater == nil {
			m.Result, m.Detail = ResultSkipped, "no automatic update is configured: start a campaign for the device (docs/security.md)"
		} else if detail, err := s.Updater.UpdateDevice(ctx, actor, a.TenantID, a.DeviceID, reason); err != nil {
			m.Result, m.Detail = ResultFailed, err.Error()
		} else {
			m.Detail = detail
		}
	case model.MitigateDisconnect:
		// Enforced below (and by the broker of the node the device is on,
		// from device.mitigated).
	case model.MitigateNotify:
		m.Detail = "notified through device.mitigated"
	}
	now := s.now()
	m.At = now
	var out *model.Alarm
	err := s.st.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.GetAlarm(ctx, a.TenantID, a.ID)
		if err != nil {
			return err
		}
		if transition != "" {
			d, err := tx.GetDevice(ctx, a.TenantID, a.DeviceID)
			if err != nil {
				return err
			}
			if d.State == transition {
				m.Result, m.Detail = ResultSkipped, fmt.Sprintf("device is already %s", d.State)
			} else if err := lifecycle.Check(d.State, transition); err != nil {
				m.Result, m.Detail = ResultSkipped, err.Error()
			} else {
				tr := &model.Transition{DeviceID: d.ID, From: d.State, To: transition, Actor: actor, Reason: reason, At: now}
				if err := tx.SetDeviceState(ctx, a.TenantID, tr); err != nil {
					return err
				}
				if err := auditEmit(ctx, tx, a.TenantID, actor, "device.transition", d.ID,
					map[string]any{"from": tr.From, "to": tr.To, "reason": reason, "alarm_id": a.ID}, "device.state_changed", d.ID,
					map[string]any{"device_id": d.ID, "from": tr.From, "to": tr.To, "reason": reason, "actor": actor, "alarm_id": a.ID},
					now); err != nil {
					return err
				}
				m.Detail = fmt.Sprintf("%s → %s", tr.From, tr.To)
			}
		}
		cur.Mitigation = m
		if err := tx.UpdateAlarm(ctx, cur); err != nil {
			return err
		}
		out = cur
		return auditEmit(ctx, tx, a.TenantID, actor, "alarm.mitigate", a.DeviceID,
			map[string]any{"alarm_id": a.ID, "kind": a.Kind, "action": action, "result": m.Result, "detail": m.Detail,
				"evidence": cur.Evidence},
			EventMitigated, a.DeviceID,
			map[string]any{"device_id": a.DeviceID, "alarm_id": a.ID, "kind": a.Kind, "severity": a.Severity, "action": action,
				"result": m.Result, "detail": m.Detail, "title": a.Title},
			now)
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("recording the %s of alarm %s: %w", action, a.ID, err)
	}
	if m.Result == ResultApplied {
		if e := s.enforce(); e != nil {
			switch action {
			case model.MitigateQuarantine:
				e.Quarantine(a.TenantID, a.DeviceID)
			case model.MitigateSuspend, model.MitigateDisconnect:
				e.Disconnect(a.TenantID, a.DeviceID, reason)
			}
		}
	}
	s.log.Info("device mitigated", "device", a.DeviceID, "alarm", a.ID, "kind", a.Kind, "action", action, "result", m.Result,
		"detail", m.Detail)
	if s.OnMitigated != nil {
		s.OnMitigated(out)
	}
	return out, nil
}
