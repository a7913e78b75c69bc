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

// inTx reports whether an action is made entirely in the alarm's own
// transaction (no other service involved): then the alarm, the transition
// and the mitigation record commit together, one write instead of two.
func inTx(a model.MitigationAction) bool {
	switch a {
	case model.MitigateQuarantine, model.MitigateSuspend, model.MitigateDisconnect, model.MitigateNotify:
		return true
	}
	return false
}

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
	reason := reasonOf(a)
	var pre *model.Mitigation
	switch action {
	case model.MitigateRevoke:
		pre = &model.Mitigation{Action: action, Result: ResultApplied}
		if s.Revoker == nil {
			pre.Result, pre.Detail = ResultFailed, "certificate revocation is not available on this server"
		} else if serial, err := s.Revoker.RevokeDeviceCertificate(ctx, a.TenantID, a.DeviceID, reason); err != nil {
			pre.Result, pre.Detail = ResultFailed, err.Error()
		} else {
			pre.Detail = "revoked certificate " + serial
		}
	case model.MitigateUpdate:
		pre = &model.Mitigation{Action: action, Result: ResultApplied}
		if s.Updater == nil {
			pre.Result, pre.Detail = ResultSkipped, "no automatic update is configured: start a campaign for the device (docs/security.md)"
		} else if detail, err := s.Updater.UpdateDevice(ctx, actor, a.TenantID, a.DeviceID, reason); err != nil {
			pre.Result, pre.Detail = ResultFailed, err.Error()
		} else {
			pre.Detail = detail
		}
	}
	var out *model.Alarm
	var m *model.Mitigation
	err := s.st.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.GetAlarm(ctx, a.TenantID, a.ID)
		if err != nil {
			return err
		}
		m, err = s.mitigateTx(ctx, tx, actor, cur, action, pre)
		out = cur
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("recording the %s of alarm %s: %w", action, a.ID, err)
	}
	s.enforceNow(out, m)
	return out, nil
}

func reasonOf(a *model.Alarm) string { return fmt.Sprintf("alarm %s: %s", a.ID, a.Title) }

// mitigateTx makes the transition an action needs (pre, when set, is the
// outcome of an action another service already took) and records the
// mitigation on a, with its audit record and device.mitigated.
func (s *Service) mitigateTx(ctx context.Context, tx store.Tx, actor string, a *model.Alarm, action model.MitigationAction,
	pre *model.Mitigation) (*model.Mitigation, error) {
	now := s.now()
	reason := reasonOf(a)
	m := &model.Mitigation{Action: action, Result: ResultApplied}
	if pre != nil {
		m = pre
	}
	m.At = now
	var transition model.State
	switch action {
	case model.MitigateQuarantine:
		transition = model.StateQuarantined
	case model.MitigateSuspend:
		transition = model.StateSuspended
	case model.MitigateNotify:
		m.Detail = "notified through device.mitigated"
	}
	if transition != "" {
		d, err := tx.GetDevice(ctx, a.TenantID, a.DeviceID)
		if err != nil {
			return nil, err
		}
		if d.State == transition {
			m.Result, m.Detail = ResultSkipped, fmt.Sprintf("device is already %s", d.State)
		} else if err := lifecycle.Check(d.State, transition); err != nil {
			m.Result, m.Detail = ResultSkipped, err.Error()
		} else {
			tr := &model.Transition{DeviceID: d.ID, From: d.State, To: transition, Actor: actor, Reason: reason, At: now}
			if err := tx.SetDeviceState(ctx, a.TenantID, tr); err != nil {
				return nil, err
			}
			if err := auditEmit(ctx, tx, a.TenantID, actor, "device.transition", d.ID,
				map[string]any{"from": tr.From, "to": tr.To, "reason": reason, "alarm_id": a.ID}, "device.state_changed", d.ID,
				map[string]any{"device_id": d.ID, "from": tr.From, "to": tr.To, "reason": reason, "actor": actor, "alarm_id": a.ID},
				now); err != nil {
				return nil, err
			}
			m.Detail = fmt.Sprintf("%s → %s", tr.From, tr.To)
		}
	}
	a.Mitigation = m
	if err := tx.UpdateAlarm(ctx, a); err != nil {
		return nil, err
	}
	err := auditEmit(ctx, tx, a.TenantID, actor, "alarm.mitigate", a.DeviceID,
		map[string]any{"alarm_id": a.ID, "kind": a.Kind, "action": action, "result": m.Result, "detail": m.Detail,
			"evidence": a.Evidence},
		EventMitigated, a.DeviceID,
		map[string]any{"device_id": a.DeviceID, "alarm_id": a.ID, "kind": a.Kind, "severity": a.Severity, "action": action,
			"result": m.Result, "detail": m.Detail, "title": a.Title},
		now)
	return m, err
}

// enforceNow applies a committed mitigation to the live connection on this
// node and reports it.
func (s *Service) enforceNow(a *model.Alarm, m *model.Mitigation) {
	if m == nil {
		return
	}
	if m.Result == ResultApplied {
		if e := s.enforce(); e != nil {
			switch m.Action {
			case model.MitigateQuarantine:
				e.Quarantine(a.TenantID, a.DeviceID)
			case model.MitigateSuspend, model.MitigateDisconnect:
				e.Disconnect(a.TenantID, a.DeviceID, reasonOf(a))
			}
		}
	}
	s.log.Info("device mitigated", "device", a.DeviceID, "alarm", a.ID, "kind", a.Kind, "action", m.Action, "result", m.Result,
		"detail", m.Detail)
	if s.OnMitigated != nil {
		s.OnMitigated(a)
	}
}
