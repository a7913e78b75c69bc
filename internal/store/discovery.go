package store

import (
	"context"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// DiscoveryReader reads connection observations and network neighbours.
type DiscoveryReader interface {
	// ConnectionObservations lists the tenant's observations of one kind
	// last seen at or after since.
	ConnectionObservations(ctx context.Context, tenantID, kind string, since time.Time) ([]model.ConnectionObservation, error)
	// ListNeighbours pages the tenant's neighbours matching q by MAC.
	ListNeighbours(ctx context.Context, tenantID string, q model.NeighbourQuery, o ListOptions) ([]model.Neighbour, string, error)
	GetNeighbour(ctx context.Context, tenantID, mac string) (*model.Neighbour, error)
	// ManagedMACs maps those of macs (lower case, colon separated) that
	// are the "mac" attribute of one of the tenant's devices to the device.
	ManagedMACs(ctx context.Context, tenantID string, macs []string) (map[string]string, error)
}

// DiscoveryWriter changes neighbours, erases device data and keeps a
// former owner's records inside a transaction.
type DiscoveryWriter interface {
	// PutNeighbours adds reports: first seen and status stay, the rest
	// moves on.
	PutNeighbours(ctx context.Context, tenantID string, ns []model.Neighbour) error
	// SetNeighbourStatus records a decision; ErrNotFound when the tenant
	// has no such neighbour.
	SetNeighbourStatus(ctx context.Context, tenantID, mac string, status model.NeighbourStatus, note, deviceID, by string, at time.Time) error
	// EraseDeviceData deletes what the tenant holds about a device besides
	// its registry row, lifecycle history and identity records: telemetry,
	// commands, twin, findings, observed flows, connection observations and
	// what detection learned about it (not counted).
	EraseDeviceData(ctx context.Context, tenantID, deviceID string) (model.DeviceDataCounts, error)
	// KeepRevokedCertificates gives a device's revoked certificates (its
	// identity under an earlier owner) back to that owner's tenant after
	// MoveDevice took them along, so the next owner does not see them.
	KeepRevokedCertificates(ctx context.Context, movedTo, previousOwner, deviceID string) error
}

// ConnectionRecorder stores connection observations outside any
// transaction (they are not changes of record): counts add up per hour.
type ConnectionRecorder interface {
	RecordConnections(ctx context.Context, obs []model.ConnectionObservation) error
}
