package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/steward-iot/steward/internal/store"
)

// maxBaselineDoc bounds one saved detection state (its sets are capped far
// below this).
const maxBaselineDoc = 1 << 20

func (r reader) GetDetectionBaseline(ctx context.Context, tenantID, deviceID string) (*store.DetectionBaseline, error) {
	b := store.DetectionBaseline{TenantID: tenantID, DeviceID: deviceID}
	var doc string
	var updated int64
	err := r.row(ctx, `SELECT doc, updated_at FROM detection_baselines WHERE tenant_id = ? AND device_id = ?`,
		tenantID, deviceID).Scan(&doc, &updated)
	if err != nil {
		return nil, mapErr(err, "")
	}
	b.Doc, b.UpdatedAt = []byte(doc), fromMicro(updated)
	return &b, nil
}

// PutDetectionBaselines checks the whole batch first, so a bad entry
// writes nothing; the device must be in the row's tenant at the time of
// writing (a device released to another tenant meanwhile is skipped).
func (db *DB) PutDetectionBaselines(ctx context.Context, bs []store.DetectionBaseline) error {
	for i, b := range bs {
		switch {
		case b.TenantID == "" || b.DeviceID == "":
			return fmt.Errorf("detection baseline %d: tenant and device are required", i)
		case len(b.Doc) == 0 || len(b.Doc) > maxBaselineDoc || !json.Valid(b.Doc):
			return fmt.Errorf("detection baseline of device %s: the document must be JSON of at most %d bytes", b.DeviceID, maxBaselineDoc)
		case b.UpdatedAt.IsZero():
			return fmt.Errorf("detection baseline of device %s: updated_at is required", b.DeviceID)
		}
	}
	if len(bs) == 0 {
		return nil
	}
	return db.Update(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		for _, b := range bs {
			_, err := t.exec(ctx, `INSERT INTO detection_baselines (tenant_id, device_id, doc, updated_at)
				SELECT ?, ?, ?, CAST(? AS BIGINT) WHERE EXISTS (SELECT 1 FROM devices WHERE tenant_id = ? AND id = ?)
				ON CONFLICT (tenant_id, device_id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at`,
				b.TenantID, b.DeviceID, string(b.Doc), toMicro(b.UpdatedAt), b.TenantID, b.DeviceID)
			if err != nil {
				return err
			}
		}
		return nil
	})
}
