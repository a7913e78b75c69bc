package registry

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/lifecycle"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// DeviceInput registers a device.
type DeviceInput struct {
	ProductID       string
	Serial          string
	Name            string
	State           model.State // default manufactured
	Tags            []string
	Attributes      map[string]string
	FirmwareVersion string
}

// DevicePatch changes a device's descriptive fields; nil fields stay.
type DevicePatch struct {
	Name            *string
	Tags            *[]string
	Attributes      *map[string]string
	FirmwareVersion *string
}

func (s *Service) CreateDevice(ctx context.Context, p *authz.Principal, tenantID string, in DeviceInput) (*model.Device, error) {
	if in.ProductID == "" {
		return nil, invalid("product_id", "is required")
	}
	if err := checkSerial(in.Serial); err != nil {
		return nil, err
	}
	if err := checkName("name", in.Name, 0, 128); err != nil {
		return nil, err
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	if err := checkAttrs(in.Attributes); err != nil {
		return nil, err
	}
	if err := checkVersion("firmware_version", in.FirmwareVersion); err != nil {
		return nil, err
	}
	if in.State == "" {
		in.State = model.StateManufactured
	}
	if !slices.Contains(lifecycle.Initial, in.State) {
		return nil, invalid("state", "a new device may start in %s, not %q", joinStates(lifecycle.Initial), in.State)
	}
	now := s.now()
	d := &model.Device{ID: ids.New("dev"), TenantID: tenantID, ProductID: in.ProductID, Serial: in.Serial, Name: in.Name,
		State: in.State, Tags: in.Tags, Attributes: in.Attributes, FirmwareVersion: in.FirmwareVersion,
		CreatedAt: now, UpdatedAt: now, Version: 1}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.GetProduct(ctx, tenantID, in.ProductID); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return invalid("product_id", "product %s does not exist in this tenant", in.ProductID)
			}
			return err
		}
		if err := tx.CreateDevice(ctx, d); err != nil {
			return err
		}
		return s.auditEmit(ctx, tx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "device.create", Target: d.ID, Summary: d},
			"device.created", d.ID, d)
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// UpdateDevice applies a patch. ifVersion > 0 makes it conditional on the
// device's version (optimistic concurrency: ErrStale when it moved on).
func (s *Service) UpdateDevice(ctx context.Context, p *authz.Principal, tenantID, id string, patch DevicePatch, ifVersion int64) (*model.Device, error) {
	if patch.Name != nil {
		if err := checkName("name", *patch.Name, 0, 128); err != nil {
			return nil, err
		}
	}
	if patch.Tags != nil {
		if err := checkTags(*patch.Tags); err != nil {
			return nil, err
		}
	}
	if patch.Attributes != nil {
		if err := checkAttrs(*patch.Attributes); err != nil {
			return nil, err
		}
	}
	if patch.FirmwareVersion != nil {
		if err := checkVersion("firmware_version", *patch.FirmwareVersion); err != nil {
			return nil, err
		}
	}
	var d *model.Device
	err := s.st.Update(ctx, func(tx store.Tx) error {
		old, err := tx.GetDevice(ctx, tenantID, id)
		if err != nil {
			return err
		}
		if ifVersion > 0 && old.Version != ifVersion {
			return store.ErrStale
		}
		if old.State == model.StateDecommissioned {
			return invalid("state", "device %s is decommissioned and can no longer change", id)
		}
		nd := *old
		if patch.Name != nil {
			nd.Name = *patch.Name
		}
		if patch.Tags != nil {
			nd.Tags = *patch.Tags
		}
		if patch.Attributes != nil {
			nd.Attributes = *patch.Attributes
		}
		if patch.FirmwareVersion != nil {
			nd.FirmwareVersion = *patch.FirmwareVersion
		}
		nd.UpdatedAt = s.now()
		if err := tx.UpdateDevice(ctx, &nd); err != nil {
			return err
		}
		d = &nd
		return s.auditEmit(ctx, tx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "device.update", Target: id,
			Summary: map[string]any{"changes": patchSummary(old, &nd)}}, "device.updated", id, d)
	})
	return d, err
}

// patchSummary lists only what changed, for the audit trail.
func patchSummary(a, b *model.Device) map[string][2]any {
	out := map[string][2]any{}
	if a.Name != b.Name {
		out["name"] = [2]any{a.Name, b.Name}
	}
	if !slices.Equal(a.Tags, b.Tags) {
		out["tags"] = [2]any{a.Tags, b.Tags}
	}
	if !mapsEqual(a.Attributes, b.Attributes) {
		out["attributes"] = [2]any{a.Attributes, b.Attributes}
	}
	if a.FirmwareVersion != b.FirmwareVersion {
		out["firmware_version"] = [2]any{a.FirmwareVersion, b.FirmwareVersion}
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Transition moves a device to another lifecycle state. The check and the
// write happen in one transaction, and the write is conditional on the
// state read, so two concurrent transitions cannot both pass.
func (s *Service) Transition(ctx context.Context, p *authz.Principal, tenantID, id string, to model.State, reason string) (*model.Device, *model.Transition, error) {
	if err := checkName("reason", reason, 1, 1024); err != nil {
		return nil, nil, err
	}
	var d *model.Device
	var tr *model.Transition
	err := s.st.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.GetDevice(ctx, tenantID, id)
		if err != nil {
			return err
		}
		if err := lifecycle.Check(cur.State, to); err != nil {
			return err
		}
		tr = &model.Transition{DeviceID: id, From: cur.State, To: to, Actor: p.Actor(), Reason: reason, At: s.now()}
		if err := tx.SetDeviceState(ctx, tenantID, tr); err != nil {
			return err
		}
		if d, err = tx.GetDevice(ctx, tenantID, id); err != nil {
			return err
		}
		return s.auditEmit(ctx, tx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "device.transition", Target: id,
			Summary: map[string]any{"from": tr.From, "to": tr.To, "reason": reason}}, "device.state_changed", id,
			map[string]any{"device_id": id, "from": tr.From, "to": tr.To, "reason": reason, "actor": tr.Actor})
	})
	if err != nil {
		return nil, nil, err
	}
	return d, tr, nil
}

// DeleteDevice erases a device's registry row. Only devices that never left
// the factory or that are decommissioned may be erased; the audit trail stays.
func (s *Service) DeleteDevice(ctx context.Context, p *authz.Principal, tenantID, id string) error {
	return s.st.Update(ctx, func(tx store.Tx) error {
		d, err := tx.GetDevice(ctx, tenantID, id)
		if err != nil {
			return err
		}
		if d.State != model.StateManufactured && d.State != model.StateDecommissioned {
			return invalid("state", "device %s is %s; decommission it before deleting it", id, d.State)
		}
		if err := tx.DeleteDevice(ctx, tenantID, id); err != nil {
			return err
		}
		return s.auditEmit(ctx, tx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "device.delete", Target: id,
			Summary: map[string]any{"serial": d.Serial, "product_id": d.ProductID, "state": d.State}}, "device.deleted", id,
			map[string]any{"device_id": id})
	})
}

func joinStates(ss []model.State) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}
