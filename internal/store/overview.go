package store

import (
	"context"

	"github.com/steward-iot/steward/internal/model"
)

// VersionCount is how many devices run one firmware version.
type VersionCount struct {
	Version string // "" for devices that never reported one
	Count   int64
}

// Overview holds the reads that summarise a tenant for people: aggregate
// counts and the audit trail of one record.
type Overview interface {
	// CountDevicesByFirmware returns the limit most common firmware
	// versions of the tenant's devices, most devices first (ties: newest
	// version first). Versions that compare equal ("1.2" and "1.2.0") are
	// counted together under one of their spellings.
	CountDevicesByFirmware(ctx context.Context, tenantID string, limit int) ([]VersionCount, error)
	// ListAuditByTarget returns the tenant's audit records about target
	// with Seq < beforeSeq (0 = from the newest), newest first.
	ListAuditByTarget(ctx context.Context, tenantID, target string, beforeSeq int64, limit int) ([]model.AuditRecord, error)
	// GetAuditHead returns the last link of one tenant's chain; a chain
	// without records has Seq 0.
	GetAuditHead(ctx context.Context, tenantID string) (AuditHead, error)
}
