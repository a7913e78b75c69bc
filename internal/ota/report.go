package ota

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// DeviceReport is one step of an update as a device publishes it on
// d/{id}/ota/status (see docs/protocol.md).
type DeviceReport struct {
	Status     model.UpdateStatus `json:"status"`
	ArtifactID string             `json:"artifact_id"`
	CampaignID string             `json:"campaign_id,omitempty"`
	Version    string             `json:"version,omitempty"`
	Running    string             `json:"running_version,omitempty"`
	Bytes      int64              `json:"bytes,omitempty"`
	Total      int64              `json:"total,omitempty"`
	Error      string             `json:"error,omitempty"`
	At         *time.Time         `json:"at,omitempty"`
}

// ReportError is a report the platform refuses; the device is told why.
type ReportError struct{ Msg string }

func (e *ReportError) Error() string { return e.Msg }

func reportErr(format string, args ...any) error { return &ReportError{fmt.Sprintf(format, args...)} }

// ParseDeviceReport reads and checks a report: a JSON object with known
// members only, a status a device may report, the artifact it is about.
func ParseDeviceReport(b []byte) (*DeviceReport, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r DeviceReport
	if err := dec.Decode(&r); err != nil {
		return nil, reportErr("ota/status: %v (want a JSON object with status, artifact_id, …)", err)
	}
	if dec.More() {
		return nil, reportErr("ota/status: data after the JSON object")
	}
	switch {
	case !r.Status.DeviceReported():
		return nil, reportErr("ota/status: status %q is not one a device reports (notified, downloading, verifying, installing, rebooting, succeeded, failed, rolled_back)", r.Status)
	case r.ArtifactID == "" || len(r.ArtifactID) > 64:
		return nil, reportErr("ota/status: artifact_id is required (the artifact of the assignment)")
	case len(r.CampaignID) > 64 || len(r.Version) > 64 || len(r.Running) > 64:
		return nil, reportErr("ota/status: campaign_id, version and running_version are at most 64 characters")
	case r.Bytes < 0 || r.Total < 0 || (r.Total > 0 && r.Bytes > r.Total):
		return nil, reportErr("ota/status: bytes and total must be >= 0 with bytes <= total")
	case len(r.Error) > 2048:
		return nil, reportErr("ota/status: error is at most 2048 characters")
	}
	return &r, nil
}

// RecordReport applies a device's report to its assignment and campaign:
// a status change is audited and raised as an event; progress within a
// status only updates the numbers. A succeeded update sets the device's
// firmware version. Reports after the assignment ended are ignored (a
// retransmitted QoS 1 message, or a withdrawn update).
func (s *Service) RecordReport(ctx context.Context, tenantID, deviceID string, r *DeviceReport) error {
	failed := false
	err := s.st.Update(ctx, func(tx store.Tx) error {
		as, err := tx.GetAssignment(ctx, tenantID, deviceID)
		if errors.Is(err, store.ErrNotFound) {
			return reportErr("ota/status: this device has no update assigned")
		} else if err != nil {
			return err
		}
		if as.ArtifactID != r.ArtifactID {
			return reportErr("ota/status: artifact %s is not the device's assigned update (%s)", r.ArtifactID, as.ArtifactID)
		}
		if as.Status.Final() {
			// The assignment ended here (e.g. withdrawn while the device was
			// already installing); a device that says it now runs the image
			// does: record that, nothing else.
			if r.Status == model.UpdateSucceeded && as.Status != model.UpdateSucceeded && r.Running == as.Version {
				return s.setFirmware(ctx, tx, tenantID, deviceID, as.Version, s.now())
			}
			return nil
		}
		now := s.now()
		changed := as.Status != r.Status
		if err := tx.SetAssignmentStatus(ctx, tenantID, deviceID, as.ArtifactID, r.Status, r.Error, now); err != nil {
			return err
		}
		if as.CampaignID != "" {
			cd, err := tx.GetCampaignDevice(ctx, tenantID, as.CampaignID, deviceID)
			if err == nil && !cd.Status.Final() {
				cd.Status, cd.Detail, cd.Bytes, cd.Total, cd.UpdatedAt = r.Status, r.Error, r.Bytes, r.Total, now
				if err := tx.SetCampaignDevice(ctx, cd); err != nil {
					return err
				}
			} else if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if !changed {
			return nil
		}
		failed = r.Status.Failure()
		summary := map[string]any{"device_id": deviceID, "artifact_id": as.ArtifactID, "campaign_id": as.CampaignID, "version": as.Version,
			"status": r.Status, "from": as.Status}
		if r.Error != "" {
			summary["detail"] = r.Error
		}
		if r.Running != "" {
			summary["running_version"] = r.Running
		}
		if r.Status == model.UpdateSucceeded {
			if err := s.setFirmware(ctx, tx, tenantID, deviceID, as.Version, now); err != nil {
				return err
			}
		}
		return auditEmit(ctx, tx, tenantID, "device:"+deviceID, "ota.device_status", deviceID, EventDeviceStatus, summary, now)
	})
	if err == nil && (failed || r.Status.Final()) {
		s.Kick() // the gates look at it now, not at the next tick
	}
	return err
}

// setFirmware records the version a device now runs.
func (s *Service) setFirmware(ctx context.Context, tx store.Tx, tenantID, deviceID, version string, now time.Time) error {
	d, err := tx.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return err
	}
	if d.FirmwareVersion == version {
		return nil
	}
	old := d.FirmwareVersion
	d.FirmwareVersion, d.UpdatedAt = version, now
	if err := tx.UpdateDevice(ctx, d); err != nil {
		return err
	}
	// The same event the registry raises for a change (its data is the device).
	return auditEmitData(ctx, tx, tenantID, "device:"+deviceID, "device.firmware", deviceID, "device.updated",
		map[string]any{"firmware_version": map[string]string{"from": old, "to": version}}, d, now)
}
