package sqlstore

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// ---- connection observations ----

// RecordConnections adds observations up per (tenant, kind, device, key,
// hour) in one transaction.
func (db *DB) RecordConnections(ctx context.Context, obs []model.ConnectionObservation) error {
	if len(obs) == 0 {
		return nil
	}
	return db.Update(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		for _, o := range obs {
			detail := string(o.Detail)
			if detail == "" {
				detail = "{}"
			}
			_, err := t.exec(ctx, `INSERT INTO connection_observations (tenant_id, device_id, kind, obs_key, hour, count,
				first_seen, last_seen, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (tenant_id, kind, device_id, obs_key, hour) DO UPDATE SET
					count = connection_observations.count + excluded.count,
					first_seen = CASE WHEN excluded.first_seen < connection_observations.first_seen THEN excluded.first_seen ELSE connection_observations.first_seen END,
					last_seen = CASE WHEN excluded.last_seen > connection_observations.last_seen THEN excluded.last_seen ELSE connection_observations.last_seen END,
					detail = excluded.detail`,
				o.TenantID, o.DeviceID, o.Kind, o.Key, toMicro(o.Hour), o.Count, toMicro(o.FirstSeen), toMicro(o.LastSeen), detail)
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (r reader) ConnectionObservations(ctx context.Context, tenantID, kind string, since time.Time) ([]model.ConnectionObservation, error) {
	rows, err := r.query(ctx, `SELECT tenant_id, device_id, kind, obs_key, hour, count, first_seen, last_seen, detail
		FROM connection_observations WHERE tenant_id = ? AND kind = ? AND last_seen >= ?
		ORDER BY device_id, obs_key, hour`, tenantID, kind, toMicro(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.ConnectionObservation
	for rows.Next() {
		var o model.ConnectionObservation
		var hour, first, last int64
		var detail string
		if err := rows.Scan(&o.TenantID, &o.DeviceID, &o.Kind, &o.Key, &hour, &o.Count, &first, &last, &detail); err != nil {
			return nil, err
		}
		o.Hour, o.FirstSeen, o.LastSeen, o.Detail = fromMicro(hour), fromMicro(first), fromMicro(last), json.RawMessage(detail)
		out = append(out, o)
	}
	return out, rows.Err()
}

// ---- neighbours ----

const neighbourCols = `tenant_id, mac, site, ip, hostname, sources, services, vendor, reported_by, reports, first_seen, last_seen,
	status, note, device_id, changed_by, changed_at`

func scanNeighbour(s scanner) (*model.Neighbour, error) {
	var n model.Neighbour
	var sources, services string
	var first, last, changed int64
	if err := s.Scan(&n.TenantID, &n.MAC, &n.Site, &n.IP, &n.Hostname, &sources, &services, &n.Vendor, &n.ReportedBy, &n.Reports,
		&first, &last, &n.Status, &n.Note, &n.DeviceID, &n.ChangedBy, &changed); err != nil {
		return nil, err
	}
	n.Sources, n.Services = []string{}, []string{}
	_ = json.Unmarshal([]byte(sources), &n.Sources)
	_ = json.Unmarshal([]byte(services), &n.Services)
	n.FirstSeen, n.LastSeen, n.ChangedAt = fromMicro(first), fromMicro(last), ptrFromMicro(changed)
	return &n, nil
}

func (r reader) GetNeighbour(ctx context.Context, tenantID, mac string) (*model.Neighbour, error) {
	n, err := scanNeighbour(r.row(ctx, `SELECT `+neighbourCols+` FROM neighbours WHERE tenant_id = ? AND mac = ?`, tenantID, mac))
	return n, mapErr(err, "")
}

func (r reader) ListNeighbours(ctx context.Context, tenantID string, q model.NeighbourQuery, o store.ListOptions) ([]model.Neighbour, string, error) {
	where := []string{"tenant_id = ?"}
	args := []any{tenantID}
	if q.Status != "" {
		where = append(where, "status = ?")
		args = append(args, string(q.Status))
	}
	if q.Site != "" {
		where = append(where, "site = ?")
		args = append(args, q.Site)
	}
	if q.SeenAfter != nil {
		where = append(where, "last_seen >= ?")
		args = append(args, toMicro(*q.SeenAfter))
	}
	return pageByKey(ctx, r, `SELECT `+neighbourCols+` FROM neighbours WHERE `+strings.Join(where, " AND "), "mac", "neighbours",
		args, o, scanNeighbour, func(n model.Neighbour) string { return n.MAC })
}

func (r reader) ManagedMACs(ctx context.Context, tenantID string, macs []string) (map[string]string, error) {
	out := map[string]string{}
	for len(macs) > 0 {
		batch := macs[:min(len(macs), 200)]
		macs = macs[len(batch):]
		// Attribute values are stored as the user typed them: ask for both cases.
		args := []any{tenantID}
		for _, m := range batch {
			args = append(args, m)
		}
		for _, m := range batch {
			args = append(args, strings.ToUpper(m))
		}
		rows, err := r.query(ctx, `SELECT value, device_id FROM device_attrs WHERE tenant_id = ? AND key = 'mac' AND value IN (`+
			placeholders(2*len(batch))+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var v, id string
			if err := rows.Scan(&v, &id); err != nil {
				rows.Close()
				return nil, err
			}
			out[strings.ToLower(v)] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t *tx) PutNeighbours(ctx context.Context, tenantID string, ns []model.Neighbour) error {
	for _, n := range ns {
		sources, _ := json.Marshal(nonNil(n.Sources))
		services, _ := json.Marshal(nonNil(n.Services))
		_, err := t.exec(ctx, `INSERT INTO neighbours (`+neighbourCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, '', '', '', 0)
			ON CONFLICT (tenant_id, mac) DO UPDATE SET site = excluded.site,
				ip = CASE WHEN excluded.ip <> '' THEN excluded.ip ELSE neighbours.ip END,
				hostname = CASE WHEN excluded.hostname <> '' THEN excluded.hostname ELSE neighbours.hostname END,
				sources = excluded.sources, services = excluded.services, vendor = excluded.vendor,
				reported_by = excluded.reported_by, reports = neighbours.reports + 1,
				last_seen = CASE WHEN excluded.last_seen > neighbours.last_seen THEN excluded.last_seen ELSE neighbours.last_seen END`,
			tenantID, n.MAC, n.Site, n.IP, n.Hostname, string(sources), string(services), n.Vendor, n.ReportedBy,
			toMicro(n.FirstSeen), toMicro(n.LastSeen), string(model.NeighbourUnmanaged))
		if err != nil {
			return mapErr(err, "neighbour "+n.MAC)
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (t *tx) SetNeighbourStatus(ctx context.Context, tenantID, mac string, status model.NeighbourStatus, note, deviceID, by string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE neighbours SET status = ?, note = ?, device_id = ?, changed_by = ?, changed_at = ?
		WHERE tenant_id = ? AND mac = ?`, string(status), note, deviceID, by, toMicro(at), tenantID, mac)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

// ---- erasing a device's data ----

func (t *tx) EraseDeviceData(ctx context.Context, tenantID, deviceID string) (model.DeviceDataCounts, error) {
	var c model.DeviceDataCounts
	steps := []struct {
		n *int64
		q string
	}{
		{&c.TelemetryPoints, `DELETE FROM telemetry WHERE series_id IN (SELECT id FROM telemetry_series WHERE tenant_id = ? AND device_id = ?)`},
		{nil, `DELETE FROM telemetry_series WHERE tenant_id = ? AND device_id = ?`},
		{&c.Commands, `DELETE FROM commands WHERE tenant_id = ? AND device_id = ?`},
		{&c.Twin, `DELETE FROM twins WHERE tenant_id = ? AND device_id = ?`},
		{&c.Findings, `DELETE FROM findings WHERE tenant_id = ? AND resource_id = ?`},
		{&c.Flows, `DELETE FROM observed_flows WHERE tenant_id = ? AND device_id = ?`},
		{&c.Observations, `DELETE FROM connection_observations WHERE tenant_id = ? AND device_id = ?`},
		{nil, `DELETE FROM detection_baselines WHERE tenant_id = ? AND device_id = ?`},
	}
	for _, s := range steps {
		res, err := t.exec(ctx, s.q, tenantID, deviceID)
		if err != nil {
			return c, err
		}
		if s.n != nil {
			*s.n, _ = res.RowsAffected()
		}
	}
	return c, nil
}

func (t *tx) KeepRevokedCertificates(ctx context.Context, movedTo, previousOwner, deviceID string) error {
	_, err := t.exec(ctx, `UPDATE device_certificates SET tenant_id = ? WHERE tenant_id = ? AND device_id = ? AND revoked_at <> 0`,
		previousOwner, movedTo, deviceID)
	return err
}
