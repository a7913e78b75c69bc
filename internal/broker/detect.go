package broker

import (
	"context"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/model"
)

// Behaviour detection sees what the broker sees: each session holds its
// device's detection state (looked up once, at connect) and counts every
// publish with it (a lock only that device takes, a few additions); refused
// connections of known devices count as authentication failures; security
// metrics reports are checked here and handed over.

// SecurityMetricsHandler takes a checked security metrics report after the
// detector has (e.g. records its outbound destinations as observed flows).
// It runs on the connection's goroutine before the acknowledgement.
type SecurityMetricsHandler func(ctx context.Context, tenantID, deviceID string, m *detect.Metrics, dv *detect.Device) error

// detectDevice returns the device's detection state (nil without a detector).
func (b *Broker) detectDevice(ctx context.Context, tenantID, deviceID string) *detect.Device {
	if b.d.Detect == nil {
		return nil
	}
	return b.d.Detect.Device(ctx, tenantID, deviceID)
}

func (b *Broker) detectAuthFailure(tenantID, deviceID string) {
	if b.d.Detect != nil {
		b.d.Detect.AuthFailure(tenantID, deviceID)
	}
}

// securityMetrics checks a report on d/{id}/security/metrics strictly and
// feeds it to detection.
func (b *Broker) securityMetrics(ctx context.Context, s *session, pk packets.Packet) error {
	m, err := detect.ParseMetrics(pk.Payload, b.now())
	if err != nil {
		return b.refuse(s, pk, codeBadPayload, err.Error())
	}
	if s.det != nil {
		s.det.Report(m)
	}
	if b.d.OnSecurityMetrics != nil && len(m.Outbound) > 0 {
		offload(func() { err = b.d.OnSecurityMetrics(ctx, s.tenantID, s.deviceID, m, s.det) })
		if err != nil {
			return b.storeFailed(s, pk, err)
		}
	}
	return nil
}

// Quarantine reduces a device connected to this node to its ota/ topics
// now (the mitigation path does not wait for device.state_changed); false
// when it is not connected here.
func (b *Broker) Quarantine(tenantID, deviceID string) bool {
	s := b.reg.device(deviceID)
	if s == nil || s.tenantID != tenantID {
		return false
	}
	b.applyState(s, model.StateQuarantined, time.Now())
	return true
}

// Disconnect ends the connection of a device connected to this node.
func (b *Broker) Disconnect(tenantID, deviceID, reason string) bool {
	s := b.reg.device(deviceID)
	if s == nil || s.tenantID != tenantID {
		return false
	}
	go b.kick(s, codeAdmin, reason, time.Now())
	return true
}
