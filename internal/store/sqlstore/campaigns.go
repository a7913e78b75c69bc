package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

const campaignCols = `id, tenant_id, name, artifact_id, version, query, dynamic, state, reason, canary, wave_size, wave_interval,
	success_ratio, max_failure_ratio, pause_on_failure, maint_window, require_consent, wave, wave_started_at, total, rev,
	created_at, created_by, updated_at, finished_at, gate_failed, gate_told, gate_wave`

func scanCampaign(s scanner) (*model.Campaign, error) {
	var c model.Campaign
	var query, window string
	var dynamic, pause, consent int
	var interval, waveStarted, created, updated, finished int64
	if err := s.Scan(&c.ID, &c.TenantID, &c.Name, &c.ArtifactID, &c.Version, &query, &dynamic, &c.State, &c.Reason, &c.Canary,
		&c.WaveSize, &interval, &c.SuccessRatio, &c.MaxFailureRatio, &pause, &window, &consent, &c.Wave, &waveStarted, &c.Total,
		&c.Rev, &created, &c.CreatedBy, &updated, &finished, &c.GateFailed, &c.GateTold, &c.GateWave); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(query), &c.Query); err != nil {
		return nil, err
	}
	if window != "" {
		c.Window = &model.MaintenanceWindow{}
		if err := json.Unmarshal([]byte(window), c.Window); err != nil {
			return nil, err
		}
	}
	c.Dynamic, c.PauseOnFailure, c.RequireConsent = dynamic != 0, pause != 0, consent != 0
	c.WaveInterval = time.Duration(interval)
	c.WaveStartedAt, c.CreatedAt, c.UpdatedAt, c.FinishedAt = ptrFromMicro(waveStarted), fromMicro(created), fromMicro(updated), ptrFromMicro(finished)
	return &c, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func campaignArgs(c *model.Campaign) ([]any, error) {
	q, err := json.Marshal(c.Query)
	if err != nil {
		return nil, err
	}
	window := ""
	if c.Window != nil {
		b, err := json.Marshal(c.Window)
		if err != nil {
			return nil, err
		}
		window = string(b)
	}
	return []any{c.ID, c.TenantID, c.Name, c.ArtifactID, c.Version, string(q), boolInt(c.Dynamic), string(c.State), c.Reason, c.Canary,
		c.WaveSize, int64(c.WaveInterval), c.SuccessRatio, c.MaxFailureRatio, boolInt(c.PauseOnFailure), window, boolInt(c.RequireConsent),
		c.Wave, ptrMicro(c.WaveStartedAt), c.Total, c.Rev, toMicro(c.CreatedAt), c.CreatedBy, toMicro(c.UpdatedAt), ptrMicro(c.FinishedAt),
		c.GateFailed, c.GateTold, c.GateWave}, nil
}

func (r reader) GetCampaign(ctx context.Context, tenantID, id string) (*model.Campaign, error) {
	c, err := scanCampaign(r.row(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return c, mapErr(err, "")
}

func (r reader) ListCampaigns(ctx context.Context, tenantID string, o store.ListOptions) ([]model.Campaign, string, error) {
	return keysetPage(ctx, r, page{query: `SELECT ` + campaignCols + ` FROM campaigns WHERE tenant_id = ?`, keyCol: "id", kind: "campaigns",
		desc: true, defLimit: 50}, []any{tenantID}, o, scanCampaign, func(v model.Campaign) string { return v.ID })
}

func (r reader) campaigns(ctx context.Context, q string, args ...any) ([]model.Campaign, error) {
	return queryAll(ctx, r, scanCampaign, `SELECT `+campaignCols+` FROM campaigns WHERE `+q+` ORDER BY id`, args...)
}

func (r reader) OpenCampaigns(ctx context.Context, tenantID string) ([]model.Campaign, error) {
	if tenantID == "" {
		return r.campaigns(ctx, `state IN (?, ?)`, model.CampaignRunning, model.CampaignPaused)
	}
	return r.campaigns(ctx, `state IN (?, ?) AND tenant_id = ?`, model.CampaignRunning, model.CampaignPaused, tenantID)
}

func (r reader) CampaignsOfArtifact(ctx context.Context, tenantID, artifactID string) ([]model.Campaign, error) {
	return r.campaigns(ctx, `tenant_id = ? AND artifact_id = ?`, tenantID, artifactID)
}

func (r reader) CampaignCounts(ctx context.Context, tenantID, campaignID string, wave int) (map[model.UpdateStatus]int64, error) {
	q := `SELECT status, COUNT(*) FROM campaign_devices WHERE campaign_id = ? AND tenant_id = ? AND wave > 0 GROUP BY status`
	args := []any{campaignID, tenantID}
	if wave > 0 {
		q = `SELECT status, COUNT(*) FROM campaign_devices WHERE campaign_id = ? AND tenant_id = ? AND wave = ? AND wave > 0 GROUP BY status`
		args = append(args, wave)
	}
	rows, err := r.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[model.UpdateStatus]int64{}
	for rows.Next() {
		var s model.UpdateStatus
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

func (r reader) CampaignWaiting(ctx context.Context, tenantID, campaignID string) (int64, error) {
	// The rows still waiting are not in the wave index: count those that
	// are and take them from the total. Once the campaign ended nothing waits.
	var n int64
	err := r.row(ctx, `SELECT CASE WHEN c.state IN (?, ?) THEN c.total - (SELECT COUNT(*) FROM campaign_devices d
			WHERE d.campaign_id = c.id AND d.wave > 0) ELSE 0 END
		FROM campaigns c WHERE c.id = ? AND c.tenant_id = ?`, model.CampaignRunning, model.CampaignPaused, campaignID, tenantID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

const campaignDeviceCols = `campaign_id, tenant_id, device_id, wave, status, consent, detail, bytes, total, updated_at`

func scanCampaignDevice(s scanner) (*model.CampaignDevice, error) {
	var d model.CampaignDevice
	var updated int64
	if err := s.Scan(&d.CampaignID, &d.TenantID, &d.DeviceID, &d.Wave, &d.Status, &d.Consent, &d.Detail, &d.Bytes, &d.Total, &updated); err != nil {
		return nil, err
	}
	d.UpdatedAt = fromMicro(updated)
	return &d, nil
}

func (r reader) GetCampaignDevice(ctx context.Context, tenantID, campaignID, deviceID string) (*model.CampaignDevice, error) {
	d, err := scanCampaignDevice(r.row(ctx, `SELECT `+campaignDeviceCols+` FROM campaign_devices
		WHERE campaign_id = ? AND device_id = ? AND tenant_id = ?`, campaignID, deviceID, tenantID))
	return d, mapErr(err, "")
}

func (r reader) ReadyCampaignDevices(ctx context.Context, tenantID, campaignID string, limit int) ([]model.CampaignDevice, error) {
	return queryAll(ctx, r, scanCampaignDevice, `SELECT `+campaignDeviceCols+` FROM campaign_devices WHERE campaign_id = ? AND wave > 0
		AND status = ? AND consent IN ('', ?) AND tenant_id = ? ORDER BY device_id LIMIT ?`,
		campaignID, model.UpdatePending, model.ConsentGranted, tenantID, limit)
}

func (r reader) ListCampaignDevices(ctx context.Context, tenantID, campaignID string, status model.UpdateStatus, o store.ListOptions) ([]model.CampaignDevice, string, error) {
	q := `SELECT ` + campaignDeviceCols + ` FROM campaign_devices WHERE campaign_id = ? AND tenant_id = ?`
	args := []any{campaignID, tenantID}
	if status != "" {
		q += ` AND status = ?`
		args = append(args, status)
	}
	return keysetPage(ctx, r, page{query: q, keyCol: "device_id", kind: "campaign_devices", defLimit: 100}, args, o,
		scanCampaignDevice, func(v model.CampaignDevice) string { return v.DeviceID })
}

func finalStatuses() []any {
	var out []any
	for _, st := range model.UpdateStatuses {
		if st.Final() {
			out = append(out, string(st))
		}
	}
	return out
}

func (r reader) OpenAssignmentsOf(ctx context.Context, tenantID, artifactID string) ([]model.Assignment, error) {
	final := finalStatuses()
	return queryAll(ctx, r, scanAssignment, `SELECT `+assignmentCols+` FROM ota_assignments WHERE tenant_id = ? AND artifact_id = ?
		AND status NOT IN (`+placeholders(len(final))+`) ORDER BY device_id`, append([]any{tenantID, artifactID}, final...)...)
}

// ---- writes ----

func (t *tx) InvalidateArtifact(ctx context.Context, tenantID, id, reason string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE artifacts SET invalidated_at = ?, invalidated_reason = ? WHERE tenant_id = ? AND id = ? AND invalidated_at = 0`,
		toMicro(at), reason, tenantID, id)
	if err != nil {
		return mapErr(err, "")
	}
	return affectedOrStale(ctx, res, func() error {
		_, err := t.GetArtifact(ctx, tenantID, id)
		return err
	})
}

// updatable are the states a campaign targets unless its query names
// states: devices that exist in the field and may take an update (a
// quarantined device may: updates are what quarantine leaves it).
var updatable = []model.State{model.StateClaimed, model.StateProvisioned, model.StateActive, model.StateQuarantined, model.StateEndOfSupport}

// targets is the WHERE clause (over devices d) of a campaign's devices.
func (t *tx) targets(ctx context.Context, c *model.Campaign, products []string) (string, []any, error) {
	q := c.Query
	if len(q.States) == 0 {
		q.States = updatable
	}
	where, args, err := t.filter(ctx, c.TenantID, q, 0)
	if err != nil {
		return "", nil, err
	}
	where = append([]string{"d.tenant_id = ?"}, where...)
	args = append([]any{c.TenantID}, args...)
	if len(products) > 0 {
		where = append(where, "d.product_id IN ("+placeholders(len(products))+")")
		for _, p := range products {
			args = append(args, p)
		}
	}
	return strings.Join(where, " AND "), args, nil
}

func (t *tx) CreateCampaign(ctx context.Context, c *model.Campaign, products []string) error {
	args, err := campaignArgs(c)
	if err != nil {
		return err
	}
	if _, err := t.exec(ctx, `INSERT INTO campaigns (`+campaignCols+`) VALUES (`+placeholders(len(args))+`)`,
		args...); err != nil {
		return mapErr(err, "campaign "+c.ID)
	}
	where, wargs, err := t.targets(ctx, c, products)
	if err != nil {
		return err
	}
	// One statement for the whole fleet: the rows never leave the database.
	// (No ORDER BY: on SQLite it would make the planner walk every device
	// of the tenant in ID order even for a selective query; see the
	// campaign section of bench/README.md.)
	res, err := t.exec(ctx, `INSERT INTO campaign_devices (`+campaignDeviceCols+`)
		SELECT ?, d.tenant_id, d.id, 0, ?, '', '', 0, 0, ? FROM devices d WHERE `+where,
		append([]any{c.ID, model.UpdatePending, toMicro(c.CreatedAt)}, wargs...)...)
	if err != nil {
		return mapErr(err, "")
	}
	if c.Total, err = res.RowsAffected(); err != nil {
		return err
	}
	_, err = t.exec(ctx, `UPDATE campaigns SET total = ? WHERE id = ?`, c.Total, c.ID)
	return err
}

func (t *tx) UpdateCampaign(ctx context.Context, c *model.Campaign) error {
	args, err := campaignArgs(c)
	if err != nil {
		return err
	}
	// Every column but the ID and tenant, then the guard.
	sets := strings.Split(strings.NewReplacer("\n", "", "\t", "").Replace(campaignCols), ",")
	var assign []string
	for _, s := range sets[2:] {
		assign = append(assign, strings.TrimSpace(s)+" = ?")
	}
	vals := append([]any{}, args[2:]...)
	for i, s := range sets[2:] {
		if strings.TrimSpace(s) == "rev" {
			vals[i] = c.Rev + 1
		}
	}
	res, err := t.exec(ctx, `UPDATE campaigns SET `+strings.Join(assign, ", ")+` WHERE tenant_id = ? AND id = ? AND rev = ?`,
		append(vals, c.TenantID, c.ID, c.Rev)...)
	if err != nil {
		return mapErr(err, "")
	}
	if err := affectedOrStale(ctx, res, func() error {
		_, err := t.GetCampaign(ctx, c.TenantID, c.ID)
		return err
	}); err != nil {
		return err
	}
	c.Rev++
	return nil
}

func (t *tx) JoinCampaign(ctx context.Context, c *model.Campaign, products []string, deviceID string, wave int, at time.Time) (bool, error) {
	where, args, err := t.targets(ctx, c, products)
	if err != nil {
		return false, err
	}
	res, err := t.exec(ctx, `INSERT INTO campaign_devices (`+campaignDeviceCols+`)
		SELECT ?, d.tenant_id, d.id, ?, ?, '', '', 0, 0, ? FROM devices d WHERE d.id = ? AND `+where+`
		ON CONFLICT (campaign_id, device_id) DO NOTHING`,
		append([]any{c.ID, wave, model.UpdatePending, toMicro(at), deviceID}, args...)...)
	if err != nil {
		return false, mapErr(err, "")
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return false, err
	}
	_, err = t.exec(ctx, `UPDATE campaigns SET total = total + 1 WHERE tenant_id = ? AND id = ?`, c.TenantID, c.ID)
	return err == nil, err
}

func (t *tx) TakeWave(ctx context.Context, tenantID, campaignID string, wave, n int, consent model.Consent, at time.Time) ([]string, error) {
	var after string
	if err := t.row(ctx, `SELECT taken_to FROM campaigns WHERE id = ? AND tenant_id = ?`, campaignID, tenantID).Scan(&after); err != nil {
		return nil, mapErr(err, "")
	}
	// Walk the primary key on from the last device taken, so each wave
	// reads only its own rows however far the campaign is. A device that
	// joined below that point while the campaign started is found by one
	// walk from the start, when the walk on finds too few.
	ids, err := t.waitingFrom(ctx, campaignID, after, "", n)
	if err != nil {
		return nil, err
	}
	if len(ids) < n && after != "" {
		more, err := t.waitingFrom(ctx, campaignID, "", after, n-len(ids))
		if err != nil {
			return nil, err
		}
		ids = append(more, ids...)
	}
	for chunk := range slices.Chunk(ids, 500) {
		args := []any{wave, string(consent), toMicro(at), campaignID, tenantID}
		for _, id := range chunk {
			args = append(args, id)
		}
		if _, err := t.exec(ctx, `UPDATE campaign_devices SET wave = ?, consent = ?, updated_at = ?
			WHERE campaign_id = ? AND tenant_id = ? AND device_id IN (`+placeholders(len(chunk))+`)`, args...); err != nil {
			return nil, err
		}
	}
	if len(ids) > 0 && ids[len(ids)-1] > after {
		if _, err := t.exec(ctx, `UPDATE campaigns SET taken_to = ? WHERE id = ? AND tenant_id = ?`, ids[len(ids)-1], campaignID, tenantID); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// waitingFrom lists up to n devices of the campaign after the device ID
// from (and up to to, when set), still waiting (wave 0, pending), in ID
// order.
func (t *tx) waitingFrom(ctx context.Context, campaignID, from, to string, n int) ([]string, error) {
	q, args := `SELECT device_id FROM campaign_devices WHERE campaign_id = ? AND device_id > ?`, []any{campaignID, from}
	if to != "" {
		q += ` AND device_id <= ?`
		args = append(args, to)
	}
	return queryAll(ctx, t.reader, scanString, q+` AND wave = 0 AND status = ? ORDER BY device_id LIMIT ?`, append(args, model.UpdatePending, n)...)
}

func (t *tx) SetCampaignDevice(ctx context.Context, d *model.CampaignDevice) error {
	res, err := t.exec(ctx, `UPDATE campaign_devices SET wave = ?, status = ?, consent = ?, detail = ?, bytes = ?, total = ?, updated_at = ?
		WHERE campaign_id = ? AND device_id = ? AND tenant_id = ?`, d.Wave, string(d.Status), string(d.Consent), d.Detail, d.Bytes, d.Total,
		toMicro(d.UpdatedAt), d.CampaignID, d.DeviceID, d.TenantID)
	if err != nil {
		return mapErr(err, "")
	}
	return mustAffect(res)
}

func (t *tx) EndCampaignDevices(ctx context.Context, tenantID, campaignID string, s model.UpdateStatus, detail string, at time.Time) ([]string, error) {
	final := finalStatuses()
	ph := placeholders(len(final))
	told, err := queryAll(ctx, t.reader, scanString, `SELECT device_id FROM campaign_devices WHERE campaign_id = ? AND tenant_id = ? AND wave > 0
		AND status NOT IN (`+ph+`) ORDER BY device_id`, append([]any{campaignID, tenantID}, final...)...)
	if err != nil {
		return nil, err
	}
	_, err = t.exec(ctx, `UPDATE campaign_devices SET status = ?, detail = ?, updated_at = ?
		WHERE campaign_id = ? AND tenant_id = ? AND status NOT IN (`+ph+`)`,
		append([]any{string(s), detail, toMicro(at), campaignID, tenantID}, final...)...)
	return told, err
}
