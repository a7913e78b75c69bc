package sqlstore

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

const alarmCols = `id, tenant_id, device_id, kind, severity, state, title, first_raised, last_raised, raised_count, evidence,
	acknowledged_by, acknowledged_at, ack_note, cleared_at, mitigation`

func scanAlarm(s scanner) (*model.Alarm, error) {
	var a model.Alarm
	var evidence, mitigation string
	var first, last, acked, cleared int64
	if err := s.Scan(&a.ID, &a.TenantID, &a.DeviceID, &a.Kind, &a.Severity, &a.State, &a.Title, &first, &last, &a.Count,
		&evidence, &a.AcknowledgedBy, &acked, &a.AckNote, &cleared, &mitigation); err != nil {
		return nil, err
	}
	a.Evidence = json.RawMessage(evidence)
	a.FirstRaised, a.LastRaised = fromMicro(first), fromMicro(last)
	a.AcknowledgedAt, a.ClearedAt = ptrFromMicro(acked), ptrFromMicro(cleared)
	if mitigation != "" {
		var m model.Mitigation
		if err := json.Unmarshal([]byte(mitigation), &m); err != nil {
			return nil, err
		}
		a.Mitigation = &m
	}
	return &a, nil
}

func (r reader) GetAlarm(ctx context.Context, tenantID, id string) (*model.Alarm, error) {
	a, err := scanAlarm(r.row(ctx, `SELECT `+alarmCols+` FROM alarms WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return a, mapErr(err, "")
}

func (r reader) ListAlarms(ctx context.Context, tenantID string, q model.AlarmQuery, o store.ListOptions) ([]model.Alarm, string, error) {
	where := []string{"tenant_id = ?"}
	args := []any{tenantID}
	switch q.State {
	case "":
	case "open":
		where, args = append(where, "state IN (?, ?)"), append(args, string(model.AlarmActive), string(model.AlarmAcknowledged))
	default:
		where, args = append(where, "state = ?"), append(args, q.State)
	}
	if q.DeviceID != "" {
		where, args = append(where, "device_id = ?"), append(args, q.DeviceID)
	}
	if q.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, string(q.Kind))
	}
	return keysetPage(ctx, r, page{query: `SELECT ` + alarmCols + ` FROM alarms WHERE ` + strings.Join(where, " AND "),
		keyCol: "id", kind: "alarms", desc: true, defLimit: 100}, args, o, scanAlarm, func(a model.Alarm) string { return a.ID })
}

func (r reader) OpenAlarm(ctx context.Context, tenantID, deviceID string, kind model.AlarmKind) (*model.Alarm, error) {
	a, err := scanAlarm(r.row(ctx, `SELECT `+alarmCols+` FROM alarms WHERE tenant_id = ? AND device_id = ? AND kind = ?
		AND state <> ?`, tenantID, deviceID, string(kind), string(model.AlarmCleared)))
	return a, mapErr(err, "")
}

func (r reader) OpenAlarms(ctx context.Context, afterID string, limit int) ([]model.Alarm, error) {
	rows, err := r.query(ctx, `SELECT `+alarmCols+` FROM alarms WHERE state <> ? AND id > ? ORDER BY id LIMIT ?`,
		string(model.AlarmCleared), afterID, clampLimit(limit, 1000, 10000))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.Alarm
	for rows.Next() {
		a, err := scanAlarm(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, rows.Err()
}

func alarmMitigation(a *model.Alarm) string {
	if a.Mitigation == nil {
		return ""
	}
	b, _ := json.Marshal(a.Mitigation)
	return string(b)
}

func alarmEvidence(a *model.Alarm) string {
	if len(a.Evidence) == 0 {
		return "{}"
	}
	return string(a.Evidence)
}

func (t *tx) CreateAlarm(ctx context.Context, a *model.Alarm) error {
	_, err := t.exec(ctx, `INSERT INTO alarms (`+alarmCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.TenantID, a.DeviceID, string(a.Kind), string(a.Severity), string(a.State), a.Title, toMicro(a.FirstRaised),
		toMicro(a.LastRaised), a.Count, alarmEvidence(a), a.AcknowledgedBy, ptrMicro(a.AcknowledgedAt), a.AckNote,
		ptrMicro(a.ClearedAt), alarmMitigation(a))
	return mapErr(err, "open "+string(a.Kind)+" alarm of device "+a.DeviceID)
}

func (t *tx) UpdateAlarm(ctx context.Context, a *model.Alarm) error {
	res, err := t.exec(ctx, `UPDATE alarms SET severity = ?, state = ?, title = ?, last_raised = ?, raised_count = ?, evidence = ?,
		acknowledged_by = ?, acknowledged_at = ?, ack_note = ?, cleared_at = ?, mitigation = ? WHERE tenant_id = ? AND id = ?`,
		string(a.Severity), string(a.State), a.Title, toMicro(a.LastRaised), a.Count, alarmEvidence(a), a.AcknowledgedBy,
		ptrMicro(a.AcknowledgedAt), a.AckNote, ptrMicro(a.ClearedAt), alarmMitigation(a), a.TenantID, a.ID)
	if err != nil {
		return mapErr(err, "open "+string(a.Kind)+" alarm of device "+a.DeviceID)
	}
	return mustAffect(res)
}
