package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// ---- MUD profiles ----

const mudCols = `m.tenant_id, m.product_id, m.mud_url, m.systeminfo, m.mfg_name, m.model_name, m.last_update, m.flows,
	m.document, m.sha256, m.imported_at, m.imported_by`

func scanMUD(s scanner) (*model.MUDProfile, error) {
	var p model.MUDProfile
	var flows, doc string
	var last, imported int64
	if err := s.Scan(&p.TenantID, &p.ProductID, &p.MUDURL, &p.SystemInfo, &p.MfgName, &p.ModelName, &last, &flows, &doc,
		&p.SHA256, &imported, &p.ImportedBy); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(flows), &p.Flows); err != nil {
		return nil, fmt.Errorf("MUD profile of %s: stored flows: %w", p.ProductID, err)
	}
	if p.Flows == nil {
		p.Flows = []model.AllowedFlow{}
	}
	p.Document = json.RawMessage(doc)
	p.LastUpdate, p.ImportedAt = ptrFromMicro(last), fromMicro(imported)
	return &p, nil
}

func (r reader) GetMUDProfile(ctx context.Context, tenantID, productID string) (*model.MUDProfile, error) {
	p, err := scanMUD(r.row(ctx, `SELECT `+mudCols+` FROM mud_profiles m WHERE m.tenant_id = ? AND m.product_id = ?`,
		tenantID, productID))
	return p, mapErr(err, "")
}

func (r reader) DeviceMUDProfile(ctx context.Context, tenantID, deviceID string) (*model.MUDProfile, error) {
	p, err := scanMUD(r.row(ctx, `SELECT `+mudCols+` FROM devices d JOIN mud_profiles m ON m.product_id = d.product_id
		WHERE d.tenant_id = ? AND d.id = ?`, tenantID, deviceID))
	return p, mapErr(err, "")
}

func (t *tx) PutMUDProfile(ctx context.Context, p *model.MUDProfile) error {
	if _, err := t.GetProduct(ctx, p.TenantID, p.ProductID); err != nil {
		return err
	}
	flows, err := json.Marshal(p.Flows)
	if err != nil {
		return err
	}
	if _, err := t.exec(ctx, `DELETE FROM mud_profiles WHERE tenant_id = ? AND product_id = ?`, p.TenantID, p.ProductID); err != nil {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO mud_profiles (tenant_id, product_id, mud_url, systeminfo, mfg_name, model_name, last_update,
		flows, document, sha256, imported_at, imported_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.TenantID, p.ProductID, p.MUDURL, p.SystemInfo, p.MfgName, p.ModelName, ptrMicro(p.LastUpdate), string(flows),
		string(p.Document), p.SHA256, toMicro(p.ImportedAt), p.ImportedBy)
	return mapErr(err, "MUD profile")
}

func (t *tx) DeleteMUDProfile(ctx context.Context, tenantID, productID string) error {
	res, err := t.exec(ctx, `DELETE FROM mud_profiles WHERE tenant_id = ? AND product_id = ?`, tenantID, productID)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

// ---- observed flows ----

const flowCols = `tenant_id, device_id, flow_key, direction, protocol, remote_host, remote_address, remote_port, local_port,
	first_seen, last_seen, reports, bytes, packets, verdict`

func scanFlow(s scanner) (*model.ObservedFlow, error) {
	var f model.ObservedFlow
	var first, last int64
	if err := s.Scan(&f.TenantID, &f.DeviceID, &f.Key, &f.Direction, &f.Protocol, &f.RemoteHost, &f.RemoteAddress, &f.RemotePort,
		&f.LocalPort, &first, &last, &f.Reports, &f.Bytes, &f.Packets, &f.Verdict); err != nil {
		return nil, err
	}
	f.FirstSeen, f.LastSeen = fromMicro(first), fromMicro(last)
	return &f, nil
}

func (r reader) ListObservedFlows(ctx context.Context, tenantID, deviceID string, o store.ListOptions) ([]model.ObservedFlow, string, error) {
	if _, err := r.GetDevice(ctx, tenantID, deviceID); err != nil {
		return nil, "", err
	}
	return pageByKey(ctx, r, `SELECT `+flowCols+` FROM observed_flows WHERE tenant_id = ? AND device_id = ?`, "flow_key",
		"observed_flows", []any{tenantID, deviceID}, o, scanFlow, func(f model.ObservedFlow) string { return f.Key })
}

func (r reader) RecentFlows(ctx context.Context, tenantID, deviceID string, since time.Time) ([]model.ObservedFlow, error) {
	q := `SELECT ` + flowCols + ` FROM observed_flows WHERE tenant_id = ? AND last_seen >= ?`
	args := []any{tenantID, toMicro(since)}
	if deviceID != "" {
		q += ` AND device_id = ?`
		args = append(args, deviceID)
	}
	rows, err := r.query(ctx, q+` ORDER BY device_id, flow_key`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []model.ObservedFlow
	for rows.Next() {
		f, err := scanFlow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *f)
	}
	return out, rows.Err()
}

func (t *tx) PutObservedFlows(ctx context.Context, tenantID, deviceID string, flows []model.ObservedFlow) error {
	if _, err := t.GetDevice(ctx, tenantID, deviceID); err != nil {
		return err
	}
	for _, f := range flows {
		_, err := t.exec(ctx, `INSERT INTO observed_flows (`+flowCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, device_id, flow_key) DO UPDATE SET
				first_seen = CASE WHEN excluded.first_seen < observed_flows.first_seen THEN excluded.first_seen ELSE observed_flows.first_seen END,
				last_seen = CASE WHEN excluded.last_seen > observed_flows.last_seen THEN excluded.last_seen ELSE observed_flows.last_seen END,
				reports = observed_flows.reports + excluded.reports,
				bytes = observed_flows.bytes + excluded.bytes,
				packets = observed_flows.packets + excluded.packets,
				remote_host = CASE WHEN excluded.remote_host <> '' THEN excluded.remote_host ELSE observed_flows.remote_host END,
				remote_address = CASE WHEN excluded.remote_address <> '' THEN excluded.remote_address ELSE observed_flows.remote_address END,
				verdict = excluded.verdict`,
			tenantID, deviceID, f.Key, f.Direction, f.Protocol, f.RemoteHost, f.RemoteAddress, f.RemotePort, f.LocalPort,
			toMicro(f.FirstSeen), toMicro(f.LastSeen), f.Reports, f.Bytes, f.Packets, f.Verdict)
		if err != nil {
			return mapErr(err, "flow "+f.Key)
		}
	}
	return nil
}

func (t *tx) PruneObservedFlows(ctx context.Context, tenantID string, before time.Time) (int64, error) {
	res, err := t.exec(ctx, `DELETE FROM observed_flows WHERE tenant_id = ? AND last_seen < ?`, tenantID, toMicro(before))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
