// Package commands sends requests to devices and keeps their results: an
// operator creates a command (audited); the broker publishes it to the
// device when it is connected and subscribed, or queues it until it is;
// the device answers on the result topic; a sweeper expires commands that
// were never delivered and times out those that got no answer.
package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Defaults and limits.
const (
	DefaultTimeout   = 30 * time.Second
	DefaultExpiresIn = time.Hour
	MaxTimeout       = 24 * time.Hour
	MaxExpiresIn     = 30 * 24 * time.Hour
	MaxParamsBytes   = 16 * 1024
	MaxResultBytes   = 16 * 1024
)

// Event types.
const (
	EventCreated   = "command.created"
	EventSent      = "command.sent"
	EventCompleted = "command.completed"
)

// InvalidError is a command that cannot be sent as asked.
type InvalidError struct{ Field, Message string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

// ResultError is a device answer that is refused.
type ResultError struct{ Message string }

func (e *ResultError) Error() string { return e.Message }

// Service manages commands.
type Service struct {
	st  store.Store
	log *slog.Logger
	now func() time.Time
}

// New returns the command service over st.
func New(st store.Store, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, log: log, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// Input is what an operator sends.
type Input struct {
	Name      string
	Params    json.RawMessage
	Timeout   time.Duration // 0 = DefaultTimeout
	ExpiresIn time.Duration // 0 = DefaultExpiresIn
}

func checkCommandName(n string) error {
	if n == "" || len(n) > 64 {
		return &InvalidError{"name", "must be 1 to 64 characters"}
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return &InvalidError{"name", fmt.Sprintf("%q: only letters, digits and _ - . : are allowed", n)}
		}
	}
	return nil
}

// Create stores a new command for the device (queued), with an audit
// record and a command.created event.
func (s *Service) Create(ctx context.Context, p *authz.Principal, tenantID, deviceID string, in Input) (*model.Command, error) {
	if err := checkCommandName(in.Name); err != nil {
		return nil, err
	}
	if len(in.Params) > 0 {
		if len(in.Params) > MaxParamsBytes {
			return nil, &InvalidError{"params", fmt.Sprintf("%d bytes; at most %d", len(in.Params), MaxParamsBytes)}
		}
		if !json.Valid(in.Params) {
			return nil, &InvalidError{"params", "not valid JSON"}
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, in.Params); err == nil {
			in.Params = buf.Bytes()
		}
		if string(in.Params) == "null" {
			in.Params = nil
		}
	}
	if in.Timeout == 0 {
		in.Timeout = DefaultTimeout
	}
	if in.ExpiresIn == 0 {
		in.ExpiresIn = DefaultExpiresIn
	}
	if in.Timeout < time.Second || in.Timeout > MaxTimeout {
		return nil, &InvalidError{"timeout_seconds", fmt.Sprintf("must be between 1 and %d", int(MaxTimeout.Seconds()))}
	}
	if in.ExpiresIn < time.Second || in.ExpiresIn > MaxExpiresIn {
		return nil, &InvalidError{"expires_in_seconds", fmt.Sprintf("must be between 1 and %d", int(MaxExpiresIn.Seconds()))}
	}
	now := s.now()
	c := &model.Command{ID: ids.New("cmd"), TenantID: tenantID, DeviceID: deviceID, Name: in.Name, Params: in.Params,
		Status: model.CommandQueued, CreatedAt: now, CreatedBy: p.Actor(), ExpiresAt: now.Add(in.ExpiresIn), Timeout: in.Timeout}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		d, err := tx.GetDevice(ctx, tenantID, deviceID)
		if err != nil {
			return err
		}
		if d.State == model.StateDecommissioned {
			return &InvalidError{"device", fmt.Sprintf("device %s is decommissioned", deviceID)}
		}
		if err := tx.CreateCommand(ctx, c); err != nil {
			return err
		}
		if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "command.create", Target: deviceID,
			Summary: map[string]any{"command_id": c.ID, "name": c.Name, "params": c.Params,
				"timeout_seconds": int64(c.Timeout.Seconds()), "expires_at": c.ExpiresAt}}); err != nil {
			return fmt.Errorf("writing the audit record: %w", err)
		}
		return tx.Emit(ctx, event(c, EventCreated, now))
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func event(c *model.Command, typ string, at time.Time) *model.Event {
	return &model.Event{ID: ids.New("evt"), TenantID: c.TenantID, Type: typ, Subject: c.DeviceID, Time: at,
		Data: mustJSON(map[string]any{"command_id": c.ID, "device_id": c.DeviceID, "name": c.Name, "status": c.Status})}
}

// Get returns one command of the device.
func (s *Service) Get(ctx context.Context, tenantID, deviceID, id string) (*model.Command, error) {
	c, err := s.st.GetCommand(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	if c.DeviceID != deviceID {
		return nil, fmt.Errorf("%w: command %s", store.ErrNotFound, id)
	}
	return c, nil
}

// Pending returns what should be (re)sent to a device that just connected.
func (s *Service) Pending(ctx context.Context, tenantID, deviceID string) ([]model.Command, error) {
	return s.st.PendingCommands(ctx, tenantID, deviceID, s.now(), 100)
}

// MarkSent records that c is being published to the device (status sent,
// one more attempt) and refreshes c; a c that comes back final must not be
// sent.
func (s *Service) MarkSent(ctx context.Context, c *model.Command) error {
	return s.st.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.GetCommand(ctx, c.TenantID, c.ID)
		if err != nil {
			return err
		}
		if cur.Status.Final() {
			*c = *cur // answered or expired meanwhile: nothing to send
			return nil
		}
		now := s.now()
		first := cur.SentAt == nil
		if first {
			cur.SentAt = &now
		}
		cur.Status = model.CommandSent
		cur.Attempts++
		if err := tx.UpdateCommand(ctx, cur, model.CommandQueued, model.CommandSent); err != nil {
			return err
		}
		*c = *cur
		if !first {
			return nil
		}
		return tx.Emit(ctx, event(cur, EventSent, now))
	})
}

// Result is a device's answer.
type Result struct {
	Status string          `json:"status"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// ParseResult checks a device's answer.
func ParseResult(payload []byte) (*Result, error) {
	if len(payload) > MaxResultBytes {
		return nil, &ResultError{fmt.Sprintf("result of %d bytes; at most %d", len(payload), MaxResultBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var r Result
	if err := dec.Decode(&r); err != nil {
		return nil, &ResultError{"result is not a JSON object {\"status\": \"succeeded\"|\"failed\", \"result\": …, \"error\": \"…\"}: " + err.Error()}
	}
	if dec.More() {
		return nil, &ResultError{"result has data after the JSON object"}
	}
	if r.Status != string(model.CommandSucceeded) && r.Status != string(model.CommandFailed) {
		return nil, &ResultError{fmt.Sprintf("status %q must be \"succeeded\" or \"failed\"", r.Status)}
	}
	if len(r.Error) > 1024 {
		return nil, &ResultError{"error is longer than 1024 bytes"}
	}
	if string(r.Result) == "null" {
		r.Result = nil
	}
	return &r, nil
}

// Complete records the device's answer to command id. An unknown command,
// one of another device or one that already finished is a ResultError.
func (s *Service) Complete(ctx context.Context, tenantID, deviceID, id string, r *Result) (*model.Command, error) {
	var out *model.Command
	err := s.st.Update(ctx, func(tx store.Tx) error {
		c, err := tx.GetCommand(ctx, tenantID, id)
		if errors.Is(err, store.ErrNotFound) || err == nil && c.DeviceID != deviceID {
			return &ResultError{fmt.Sprintf("no command %s for this device", id)}
		}
		if err != nil {
			return err
		}
		if c.Status.Final() {
			return &ResultError{fmt.Sprintf("command %s is already %s", id, c.Status)}
		}
		now := s.now()
		c.Status, c.CompletedAt, c.Result, c.Error = model.CommandStatus(r.Status), &now, r.Result, r.Error
		if c.SentAt == nil {
			c.SentAt = &now
		}
		if err := tx.UpdateCommand(ctx, c, model.CommandQueued, model.CommandSent); err != nil {
			if errors.Is(err, store.ErrStale) {
				return &ResultError{fmt.Sprintf("command %s finished meanwhile", id)}
			}
			return err
		}
		out = c
		return tx.Emit(ctx, event(c, EventCompleted, now))
	})
	return out, err
}

// Sweep expires queued commands past their expiry and times out sent ones
// past their timeout. It returns how many it finished.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	n := 0
	for {
		due, err := s.st.DueCommands(ctx, s.now(), 200)
		if err != nil || len(due) == 0 {
			return n, err
		}
		err = s.st.Update(ctx, func(tx store.Tx) error {
			now := s.now()
			for i := range due {
				c := &due[i]
				from := c.Status
				c.Status = model.CommandExpired
				if from == model.CommandSent {
					c.Status = model.CommandTimedOut
				}
				c.CompletedAt = &now
				if err := tx.UpdateCommand(ctx, c, from); err != nil {
					if errors.Is(err, store.ErrStale) {
						continue // answered or swept by another node meanwhile
					}
					return err
				}
				n++
				if err := tx.Emit(ctx, event(c, EventCompleted, now)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		if len(due) < 200 {
			return n, nil
		}
	}
}

// RunSweeper sweeps every interval until ctx ends.
func (s *Service) RunSweeper(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sweeping commands", "err", err)
		}
	}
}

// Message is the payload published on d/{id}/commands/{requestID}.
func Message(c *model.Command) []byte {
	m := map[string]any{"id": c.ID, "name": c.Name, "expires_at": c.ExpiresAt.UTC().Format(time.RFC3339Nano),
		"timeout_seconds": int64(c.Timeout.Seconds())}
	if len(c.Params) > 0 {
		m["params"] = c.Params
	}
	return mustJSON(m)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
