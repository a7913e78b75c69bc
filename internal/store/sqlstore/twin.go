package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

func (r reader) GetTwin(ctx context.Context, tenantID, deviceID string) (*model.Twin, error) {
	var desired, reported sql.NullString
	var dv, rv, dat, rat sql.NullInt64
	err := r.row(ctx, `SELECT t.desired, t.desired_version, t.desired_at, t.reported, t.reported_version, t.reported_at
		FROM devices d LEFT JOIN twins t ON t.device_id = d.id AND t.tenant_id = d.tenant_id
		WHERE d.tenant_id = ? AND d.id = ?`, tenantID, deviceID).Scan(&desired, &dv, &dat, &reported, &rv, &rat)
	if err != nil {
		return nil, mapErr(err, "")
	}
	tw := &model.Twin{TenantID: tenantID, DeviceID: deviceID, Desired: json.RawMessage(`{}`), Reported: json.RawMessage(`{}`)}
	if desired.Valid {
		tw.Desired = json.RawMessage(desired.String)
		tw.Reported = json.RawMessage(reported.String)
		tw.DesiredVersion, tw.ReportedVersion = dv.Int64, rv.Int64
		tw.DesiredAt, tw.ReportedAt = ptrFromMicro(dat.Int64), ptrFromMicro(rat.Int64)
	}
	return tw, nil
}

func (t *tx) PutTwinDesired(ctx context.Context, tenantID, deviceID string, doc json.RawMessage, fromVersion int64, at time.Time) error {
	return t.putTwin(ctx, "desired", tenantID, deviceID, doc, fromVersion, at)
}

func (t *tx) PutTwinReported(ctx context.Context, tenantID, deviceID string, doc json.RawMessage, fromVersion int64, at time.Time) error {
	return t.putTwin(ctx, "reported", tenantID, deviceID, doc, fromVersion, at)
}

// putTwin makes sure the row exists (for a device of the tenant), then
// updates one document conditionally on its version.
func (t *tx) putTwin(ctx context.Context, which, tenantID, deviceID string, doc json.RawMessage, fromVersion int64, at time.Time) error {
	if !json.Valid(doc) {
		return errors.New("twin: document is not valid JSON")
	}
	res, err := t.exec(ctx, `INSERT INTO twins (device_id, tenant_id)
		SELECT id, tenant_id FROM devices WHERE tenant_id = ? AND id = ?
		ON CONFLICT (device_id) DO NOTHING`, tenantID, deviceID)
	if err != nil {
		return mapErr(err, "")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Either the row existed or the device is not in the tenant.
		var one int
		if err := t.row(ctx, `SELECT 1 FROM twins WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID).Scan(&one); err != nil {
			return mapErr(err, "")
		}
	}
	res, err = t.exec(ctx, `UPDATE twins SET `+which+` = ?, `+which+`_version = ?, `+which+`_at = ?
		WHERE tenant_id = ? AND device_id = ? AND `+which+`_version = ?`,
		string(doc), fromVersion+1, toMicro(at), tenantID, deviceID, fromVersion)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return store.ErrStale
	}
	return nil
}
