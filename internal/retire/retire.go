// Package retire takes devices out of service at the end of their life:
// decommissioning (wipe the device, revoke its identity, erase or export
// its data, keep a tombstone and the audit trail) and the device export
// document. Handing a device on to a new owner is identity.Release.
package retire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/commands"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/lifecycle"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// WipeCommand is the command the device agent answers by erasing its keys
// and state (params {}); see docs/protocol.md.
const WipeCommand = "wipe"

// EventDecommissioned is raised when a decommission completed.
const EventDecommissioned = "device.decommissioned"

// Data choices of a decommission.
const (
	DataErase  = "erase"  // delete telemetry, commands, twin, findings, flows
	DataExport = "export" // return them as a JSON document, then delete them
	DataKeep   = "keep"   // leave them (the tombstone keeps them readable)
)

// Options says what a decommission does besides the tombstone.
type Options struct {
	Data   string // erase (default), export or keep
	Wipe   bool   // send the wipe command if the device is connected
	Reason string
}

// Decommissioned is what a decommission did.
type Decommissioned struct {
	Device              *model.Device           `json:"device"`
	Wipe                WipeOutcome             `json:"wipe"`
	CertificatesRevoked int                     `json:"certificates_revoked"`
	TokenRevoked        bool                    `json:"token_revoked"`
	Data                string                  `json:"data" enum:"erase,export,keep"`
	Erased              *model.DeviceDataCounts `json:"erased,omitempty"`
	Export              *DeviceExport           `json:"export,omitempty"`
}

// WipeOutcome tells whether the device confirmed the wipe.
type WipeOutcome struct {
	Status    string `json:"status" enum:"not_requested,not_connected,succeeded,failed,no_answer" doc:"succeeded: the device answered that it erased its keys and state."`
	CommandID string `json:"command_id,omitempty"`
	Error     string `json:"error,omitempty"`
}

// InvalidError is a refused option.
type InvalidError struct{ Field, Message string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

// Service decommissions devices.
type Service struct {
	st       store.Store
	identity *identity.Service
	commands *commands.Service
	log      *slog.Logger
	// Connected reports whether a device holds a live connection now
	// (on any node); nil = never (no wipe is sent).
	Connected func(tenantID, deviceID string) bool
	// WipeWait is how long a decommission waits for the device to answer
	// the wipe command before it revokes the identity (which ends the
	// connection). Default 15 s.
	WipeWait time.Duration
	now      func() time.Time
}

// New returns the service.
func New(st store.Store, id *identity.Service, cmds *commands.Service, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{st: st, identity: id, commands: cmds, log: log, WipeWait: 15 * time.Second,
		now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// Export returns the device's data without changing anything.
func (s *Service) Export(ctx context.Context, tenantID, deviceID string) (*DeviceExport, error) {
	return BuildExport(ctx, s.st, tenantID, deviceID, s.now())
}

// Decommission retires a device for good: it sends the wipe command (when
// asked and the device is connected) and waits a little for the answer,
// moves the device to decommissioned (a tombstone: the row, its history
// and its audit trail stay), revokes every certificate and its token,
// and erases, exports-then-erases or keeps its data. Calling it again on
// a decommissioned device re-runs the identity and data steps, so a call
// that failed halfway can be repeated.
func (s *Service) Decommission(ctx context.Context, p *authz.Principal, tenantID, deviceID string, o Options) (*Decommissioned, error) {
	if o.Data == "" {
		o.Data = DataErase
	}
	if o.Data != DataErase && o.Data != DataExport && o.Data != DataKeep {
		return nil, &InvalidError{"data", fmt.Sprintf("%q: choose erase, export or keep", o.Data)}
	}
	if len(o.Reason) > 1024 {
		return nil, &InvalidError{"reason", "at most 1024 characters"}
	}
	if o.Reason == "" {
		o.Reason = "decommissioned"
	}
	d, err := s.st.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return nil, err
	}
	res := &Decommissioned{Data: o.Data, Wipe: WipeOutcome{Status: "not_requested"}}
	if o.Wipe && d.State != model.StateDecommissioned {
		res.Wipe = s.wipe(ctx, p, tenantID, deviceID)
	}
	actor := p.Actor()
	// The tombstone first: from here the device may not connect, and the
	// identity service retires its identity (here, and on any node that
	// sees the event).
	if d.State != model.StateDecommissioned {
		err := s.st.Update(ctx, func(tx store.Tx) error {
			cur, err := tx.GetDevice(ctx, tenantID, deviceID)
			if err != nil {
				return err
			}
			if err := lifecycle.Check(cur.State, model.StateDecommissioned); err != nil {
				return err
			}
			tr := &model.Transition{DeviceID: deviceID, From: cur.State, To: model.StateDecommissioned, Actor: actor, Reason: o.Reason, At: s.now()}
			if err := tx.SetDeviceState(ctx, tenantID, tr); err != nil {
				return err
			}
			if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: "device.transition", Target: deviceID,
				Summary: map[string]any{"from": tr.From, "to": tr.To, "reason": o.Reason}}); err != nil {
				return err
			}
			return emit(ctx, tx, tenantID, identity.EventDeviceStateChanged, deviceID, s.now(),
				map[string]any{"device_id": deviceID, "from": tr.From, "to": tr.To, "reason": o.Reason, "actor": actor})
		})
		if err != nil {
			return nil, err
		}
	}
	revoked, tokenRevoked, err := s.identity.RetireIdentityCounted(ctx, tenantID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("revoking the device's identity: %w (decommission again to retry)", err)
	}
	res.CertificatesRevoked, res.TokenRevoked = revoked, tokenRevoked
	if o.Data == DataExport {
		if res.Export, err = BuildExport(ctx, s.st, tenantID, deviceID, s.now()); err != nil {
			return nil, fmt.Errorf("exporting the device's data: %w (decommission again to retry)", err)
		}
	}
	err = s.st.Update(ctx, func(tx store.Tx) error {
		summary := map[string]any{"data": o.Data, "wipe": res.Wipe, "certificates_revoked": revoked, "token_revoked": tokenRevoked,
			"reason": o.Reason}
		if o.Data != DataKeep {
			c, err := tx.EraseDeviceData(ctx, tenantID, deviceID)
			if err != nil {
				return err
			}
			res.Erased = &c
			summary["erased"] = c
		}
		if res.Export != nil {
			summary["exported"] = res.Export.Counts
		}
		if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: "device.decommission", Target: deviceID,
			Summary: summary}); err != nil {
			return err
		}
		return emit(ctx, tx, tenantID, EventDecommissioned, deviceID, s.now(), map[string]any{"device_id": deviceID,
			"data": o.Data, "wipe": res.Wipe.Status})
	})
	if err != nil {
		return nil, err
	}
	if res.Device, err = s.st.GetDevice(ctx, tenantID, deviceID); err != nil {
		return nil, err
	}
	s.log.Info("device decommissioned", "tenant", tenantID, "device", deviceID, "data", o.Data, "wipe", res.Wipe.Status,
		"certificates_revoked", revoked)
	return res, nil
}

// wipe sends the wipe command to a connected device and waits for its
// answer, at most WipeWait.
func (s *Service) wipe(ctx context.Context, p *authz.Principal, tenantID, deviceID string) WipeOutcome {
	if s.commands == nil || s.Connected == nil || !s.Connected(tenantID, deviceID) {
		return WipeOutcome{Status: "not_connected"}
	}
	wait := s.WipeWait
	c, err := s.commands.Create(ctx, p, tenantID, deviceID, commands.Input{Name: WipeCommand, Params: json.RawMessage(`{}`),
		Timeout: max(wait, time.Second), ExpiresIn: max(wait, time.Second)})
	if err != nil {
		return WipeOutcome{Status: "failed", Error: err.Error()}
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, err := s.commands.Get(ctx, tenantID, deviceID, c.ID)
		if err == nil && cur.Status.Final() {
			if cur.Status == model.CommandSucceeded {
				return WipeOutcome{Status: "succeeded", CommandID: c.ID}
			}
			return WipeOutcome{Status: "failed", CommandID: c.ID, Error: string(cur.Status) + ": " + cur.Error}
		}
		select {
		case <-ctx.Done():
			return WipeOutcome{Status: "no_answer", CommandID: c.ID, Error: ctx.Err().Error()}
		case <-deadline.C:
			return WipeOutcome{Status: "no_answer", CommandID: c.ID,
				Error: fmt.Sprintf("the device did not answer within %s", wait)}
		case <-tick.C:
		}
	}
}

func emit(ctx context.Context, tx store.Tx, tenantID, typ, subject string, at time.Time, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: typ, Subject: subject, Time: at, Data: b})
}

// IsInvalid reports whether err is a refused option.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}
