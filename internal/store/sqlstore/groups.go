package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

const groupCols = `id, tenant_id, name, kind, query, description, created_at`

func scanGroup(s scanner) (*model.Group, error) {
	var g model.Group
	var q string
	var created int64
	if err := s.Scan(&g.ID, &g.TenantID, &g.Name, &g.Kind, &q, &g.Description, &created); err != nil {
		return nil, err
	}
	if q != "" {
		g.Query = new(model.DeviceQuery)
		if err := json.Unmarshal([]byte(q), g.Query); err != nil {
			return nil, fmt.Errorf("group %s: stored query: %w", g.ID, err)
		}
	}
	g.CreatedAt = fromMicro(created)
	return &g, nil
}

func (r reader) GetGroup(ctx context.Context, tenantID, id string) (*model.Group, error) {
	g, err := scanGroup(r.row(ctx, `SELECT `+groupCols+` FROM device_groups WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return g, mapErr(err, "")
}

func (r reader) ListGroups(ctx context.Context, tenantID string, o ListOptions) ([]model.Group, string, error) {
	return listByID(ctx, r, groupCols, "device_groups", "tenant_id = ?", []any{tenantID}, o, scanGroup,
		func(v model.Group) string { return v.ID })
}

func (t *tx) CreateGroup(ctx context.Context, g *model.Group) error {
	q := ""
	if g.Query != nil {
		b, err := json.Marshal(g.Query)
		if err != nil {
			return err
		}
		q = string(b)
	}
	_, err := t.exec(ctx, `INSERT INTO device_groups (`+groupCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.TenantID, g.Name, string(g.Kind), q, g.Description, toMicro(g.CreatedAt))
	return mapErr(err, "group named "+quote(g.Name))
}

func (t *tx) DeleteGroup(ctx context.Context, tenantID, id string) error {
	if _, err := t.exec(ctx, `DELETE FROM group_members WHERE tenant_id = ? AND group_id = ?`, tenantID, id); err != nil {
		return err
	}
	res, err := t.exec(ctx, `DELETE FROM device_groups WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return err
	}
	return mustAffect(res)
}

func (t *tx) AddGroupMembers(ctx context.Context, tenantID, groupID string, deviceIDs []string) error {
	// The foreign key only checks that the group exists in some tenant.
	if _, err := t.GetGroup(ctx, tenantID, groupID); err != nil {
		return fmt.Errorf("group %s: %w", groupID, err)
	}
	for _, id := range deviceIDs {
		// The tenant is checked on the device row itself, not trusted from
		// the caller: a device of another tenant is simply not found.
		res, err := t.exec(ctx, `INSERT INTO group_members (tenant_id, group_id, device_id)
			SELECT ?, ?, id FROM devices WHERE tenant_id = ? AND id = ?
			ON CONFLICT DO NOTHING`, tenantID, groupID, tenantID, id)
		if err != nil {
			return mapErr(err, "")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if _, err := t.GetDevice(ctx, tenantID, id); err != nil {
				return fmt.Errorf("device %s: %w", id, err)
			}
		}
	}
	return nil
}

func (t *tx) RemoveGroupMembers(ctx context.Context, tenantID, groupID string, deviceIDs []string) error {
	for _, id := range deviceIDs {
		res, err := t.exec(ctx, `DELETE FROM group_members WHERE tenant_id = ? AND group_id = ? AND device_id = ?`, tenantID, groupID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("device %s is not in group %s: %w", id, groupID, store.ErrNotFound)
		}
	}
	return nil
}
