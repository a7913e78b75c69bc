package broker

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/ota"
	"github.com/steward-iot/steward/internal/store"
)

// Updates over MQTT: the platform tells a device about its assignment on
// d/{id}/ota/assignment (when it is made or withdrawn, and again when the
// device subscribes), and the device reports each step on d/{id}/ota/status.
// The message is a hint; the device verifies the signed metadata it then
// fetches over HTTPS. Both stay open to a quarantined device.

const topicOTAAssignment = "ota/assignment"

// AssignmentMessage is the payload of d/{id}/ota/assignment.
type AssignmentMessage struct {
	ArtifactID      string `json:"artifact_id"`
	Version         string `json:"version,omitempty"`
	CampaignID      string `json:"campaign_id,omitempty"`
	DirectorVersion int64  `json:"director_version,omitempty"`
	Cancelled       bool   `json:"cancelled,omitempty"`
	Reason          string `json:"reason,omitempty"`
}

// pushAssignment publishes the device's current assignment if it is
// subscribed to it: an open one to install, a withdrawn one as cancelled,
// nothing for one that ended otherwise.
func (b *Broker) pushAssignment(ctx context.Context, s *session) {
	if !b.subscribedTo(s, DeviceTopic(s.deviceID, topicOTAAssignment)) {
		return
	}
	as, err := b.d.Store.GetAssignment(ctx, s.tenantID, s.deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return
	} else if err != nil {
		b.log.Warn("mqtt: reading the update assignment", "device", s.deviceID, "err", err)
		return
	}
	msg := AssignmentMessage{ArtifactID: as.ArtifactID, Version: as.Version, CampaignID: as.CampaignID, DirectorVersion: as.DirectorVersion}
	switch {
	case as.Status == model.UpdateCancelled:
		msg = AssignmentMessage{ArtifactID: as.ArtifactID, CampaignID: as.CampaignID, Cancelled: true, Reason: as.Detail}
	case as.Status.Final():
		return
	}
	body, _ := json.Marshal(msg)
	if err := b.srv.Publish(DeviceTopic(s.deviceID, topicOTAAssignment), body, false, 1); err != nil {
		b.log.Warn("mqtt: publishing the update assignment", "device", s.deviceID, "err", err)
	}
}

// otaStatus records a device's report on its update.
func (b *Broker) otaStatus(ctx context.Context, s *session, pk packets.Packet) error {
	if b.d.OTA == nil {
		if err := jsonObject(pk.Payload); err != nil {
			return b.refuse(s, pk, codeBadPayload, err.Error())
		}
		return nil
	}
	r, err := ota.ParseDeviceReport(pk.Payload)
	if err != nil {
		return b.refuse(s, pk, codeBadPayload, err.Error())
	}
	offload(func() { err = b.d.OTA.RecordReport(ctx, s.tenantID, s.deviceID, r) })
	var re *ota.ReportError
	if errors.As(err, &re) {
		return b.refuse(s, pk, codeUnspecified, re.Error())
	}
	if err != nil {
		return b.storeFailed(s, pk, err)
	}
	return nil
}
