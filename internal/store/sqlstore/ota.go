package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

const artifactCols = `id, tenant_id, name, version, product_ids, hardware_ids, sbom_ref, release_notes, sha256, length,
	uploaded_at, created_at, created_by, invalidated_at, invalidated_reason`

func scanArtifact(s scanner) (*model.Artifact, error) {
	var a model.Artifact
	var products, hardware string
	var uploaded, created, invalidated int64
	if err := s.Scan(&a.ID, &a.TenantID, &a.Name, &a.Version, &products, &hardware, &a.SBOMRef, &a.ReleaseNotes,
		&a.SHA256, &a.Length, &uploaded, &created, &a.CreatedBy, &invalidated, &a.InvalidatedReason); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(products), &a.ProductIDs); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(hardware), &a.HardwareIDs); err != nil {
		return nil, err
	}
	if a.ProductIDs == nil {
		a.ProductIDs = []string{}
	}
	if a.HardwareIDs == nil {
		a.HardwareIDs = []string{}
	}
	a.UploadedAt, a.CreatedAt, a.InvalidatedAt = ptrFromMicro(uploaded), fromMicro(created), ptrFromMicro(invalidated)
	return &a, nil
}

func (r reader) GetArtifact(ctx context.Context, tenantID, id string) (*model.Artifact, error) {
	a, err := scanArtifact(r.row(ctx, `SELECT `+artifactCols+` FROM artifacts WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return a, mapErr(err, "")
}

func (r reader) ListArtifacts(ctx context.Context, tenantID string, o store.ListOptions) ([]model.Artifact, string, error) {
	// Newest first: IDs are time-ordered.
	return keysetPage(ctx, r, page{query: `SELECT ` + artifactCols + ` FROM artifacts WHERE tenant_id = ?`, keyCol: "id", kind: "artifacts", desc: true, defLimit: 50},
		[]any{tenantID}, o, scanArtifact, func(v model.Artifact) string { return v.ID })
}

func (r reader) ArtifactDigestInUse(ctx context.Context, sha256 string) (bool, error) {
	var n int
	if err := r.row(ctx, `SELECT COUNT(*) FROM artifacts WHERE sha256 = ?`, sha256).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

func jsonList(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (t *tx) CreateArtifact(ctx context.Context, a *model.Artifact) error {
	_, err := t.exec(ctx, `INSERT INTO artifacts (`+artifactCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.ID, a.TenantID, a.Name, a.Version, jsonList(a.ProductIDs), jsonList(a.HardwareIDs), a.SBOMRef, a.ReleaseNotes,
		a.SHA256, a.Length, ptrMicro(a.UploadedAt), toMicro(a.CreatedAt), a.CreatedBy, ptrMicro(a.InvalidatedAt), a.InvalidatedReason)
	return mapErr(err, "artifact "+a.ID)
}

func (t *tx) SetArtifactContent(ctx context.Context, a *model.Artifact) error {
	res, err := t.exec(ctx, `UPDATE artifacts SET sha256 = ?, length = ?, uploaded_at = ?
		WHERE tenant_id = ? AND id = ? AND uploaded_at = 0`, a.SHA256, a.Length, ptrMicro(a.UploadedAt), a.TenantID, a.ID)
	if err != nil {
		return mapErr(err, "")
	}
	return affectedOrStale(ctx, res, func() error {
		_, err := t.GetArtifact(ctx, a.TenantID, a.ID)
		return err
	})
}

func (t *tx) DeleteArtifact(ctx context.Context, tenantID, id string) error {
	res, err := t.exec(ctx, `DELETE FROM artifacts WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return mapErr(err, "")
	}
	return mustAffect(res)
}

func (r reader) ArtifactsByDigest(ctx context.Context, tenantID, sha256 string) ([]model.Artifact, error) {
	return queryAll(ctx, r, scanArtifact, `SELECT `+artifactCols+` FROM artifacts WHERE tenant_id = ? AND sha256 = ? ORDER BY id`, tenantID, sha256)
}

// ---- vendor metadata ----

func (r reader) VendorRoots(ctx context.Context, tenantID string, afterVersion int64) ([]model.VendorRoot, error) {
	return queryAll(ctx, r, scanVendorRoot, `SELECT tenant_id, version, expires, body, created_at, created_by FROM ota_vendor_roots
		WHERE tenant_id = ? AND version > ? ORDER BY version LIMIT 1000`, tenantID, afterVersion)
}

func scanVendorRoot(s scanner) (*model.VendorRoot, error) {
	var v model.VendorRoot
	var exp, created int64
	if err := s.Scan(&v.TenantID, &v.Version, &exp, &v.Body, &created, &v.CreatedBy); err != nil {
		return nil, err
	}
	v.Expires, v.CreatedAt = fromMicro(exp), fromMicro(created)
	return &v, nil
}

func (r reader) LatestVendorRoot(ctx context.Context, tenantID string) (*model.VendorRoot, error) {
	v, err := scanVendorRoot(r.row(ctx, `SELECT tenant_id, version, expires, body, created_at, created_by FROM ota_vendor_roots
		WHERE tenant_id = ? ORDER BY version DESC LIMIT 1`, tenantID))
	return v, mapErr(err, "")
}

func (r reader) LatestVendorTargets(ctx context.Context, tenantID string) (*model.VendorTargets, error) {
	var v model.VendorTargets
	var exp, created int64
	err := r.row(ctx, `SELECT tenant_id, version, expires, targets, body, created_at, created_by FROM ota_vendor_targets
		WHERE tenant_id = ? ORDER BY version DESC LIMIT 1`, tenantID).Scan(&v.TenantID, &v.Version, &exp, &v.Targets, &v.Body, &created, &v.CreatedBy)
	if err != nil {
		return nil, mapErr(err, "")
	}
	v.Expires, v.CreatedAt = fromMicro(exp), fromMicro(created)
	return &v, nil
}

func (t *tx) AddVendorRoot(ctx context.Context, v *model.VendorRoot) error {
	_, err := t.exec(ctx, `INSERT INTO ota_vendor_roots (tenant_id, version, expires, body, created_at, created_by)
		VALUES (?, ?, ?, ?, ?, ?)`, v.TenantID, v.Version, toMicro(v.Expires), v.Body, toMicro(v.CreatedAt), v.CreatedBy)
	return mapErr(err, "vendor root version "+strconv.FormatInt(v.Version, 10))
}

func (t *tx) AddVendorTargets(ctx context.Context, v *model.VendorTargets) error {
	_, err := t.exec(ctx, `INSERT INTO ota_vendor_targets (tenant_id, version, expires, targets, body, created_at, created_by)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, v.TenantID, v.Version, toMicro(v.Expires), v.Targets, v.Body, toMicro(v.CreatedAt), v.CreatedBy)
	return mapErr(err, "vendor targets version "+strconv.FormatInt(v.Version, 10))
}

// ---- director assignments ----

const assignmentCols = `device_id, tenant_id, artifact_id, target_name, version, hardware_id, campaign_id, director_version,
	body, expires, created_at, created_by, status, detail, status_at`

func scanAssignment(s scanner) (*model.Assignment, error) {
	var a model.Assignment
	var exp, created, statusAt int64
	if err := s.Scan(&a.DeviceID, &a.TenantID, &a.ArtifactID, &a.TargetName, &a.Version, &a.HardwareID, &a.CampaignID, &a.DirectorVersion,
		&a.Body, &exp, &created, &a.CreatedBy, &a.Status, &a.Detail, &statusAt); err != nil {
		return nil, err
	}
	a.Expires, a.CreatedAt, a.StatusAt = fromMicro(exp), fromMicro(created), ptrFromMicro(statusAt)
	return &a, nil
}

func (r reader) GetAssignment(ctx context.Context, tenantID, deviceID string) (*model.Assignment, error) {
	a, err := scanAssignment(r.row(ctx, `SELECT `+assignmentCols+` FROM ota_assignments WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID))
	return a, mapErr(err, "")
}

func (t *tx) SetAssignmentStatus(ctx context.Context, tenantID, deviceID, artifactID string, s model.UpdateStatus, detail string, at time.Time) error {
	res, err := t.exec(ctx, `UPDATE ota_assignments SET status = ?, detail = ?, status_at = ?
		WHERE tenant_id = ? AND device_id = ? AND artifact_id = ?`, string(s), detail, toMicro(at), tenantID, deviceID, artifactID)
	if err != nil {
		return mapErr(err, "")
	}
	return mustAffect(res)
}

func (t *tx) PutAssignment(ctx context.Context, a *model.Assignment) error {
	if a.Status == "" {
		a.Status = model.UpdatePending
	}
	res, err := t.exec(ctx, `UPDATE ota_assignments SET artifact_id = ?, target_name = ?, version = ?, hardware_id = ?,
		campaign_id = ?, director_version = ?, body = ?, expires = ?, created_at = ?, created_by = ?, status = ?, detail = ?, status_at = ?
		WHERE tenant_id = ? AND device_id = ? AND director_version < ?`,
		a.ArtifactID, a.TargetName, a.Version, a.HardwareID, a.CampaignID, a.DirectorVersion, a.Body, toMicro(a.Expires),
		toMicro(a.CreatedAt), a.CreatedBy, string(a.Status), a.Detail, ptrMicro(a.StatusAt), a.TenantID, a.DeviceID, a.DirectorVersion)
	if err != nil {
		return mapErr(err, "")
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	if _, err := t.GetAssignment(ctx, a.TenantID, a.DeviceID); err == nil {
		return store.ErrStale
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO ota_assignments (`+assignmentCols+`)
		SELECT id, tenant_id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM devices WHERE tenant_id = ? AND id = ?`,
		a.ArtifactID, a.TargetName, a.Version, a.HardwareID, a.CampaignID, a.DirectorVersion, a.Body, toMicro(a.Expires),
		toMicro(a.CreatedAt), a.CreatedBy, string(a.Status), a.Detail, ptrMicro(a.StatusAt), a.TenantID, a.DeviceID)
	if err != nil {
		return mapErr(err, "")
	}
	return t.mustExist(ctx, `SELECT 1 FROM ota_assignments WHERE tenant_id = ? AND device_id = ?`, a.TenantID, a.DeviceID)
}
