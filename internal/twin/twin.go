// Package twin keeps each device's desired and reported documents with
// their versions: the API changes desired (optionally only if it is still
// at the version the caller read), the device reports changes to reported
// as JSON merge patches (RFC 7396), and the delta — what the device still
// has to do — is computed from both.
package twin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Limits of a document.
const (
	MaxDocBytes = 32 * 1024
	MaxDepth    = 8
)

// Event types.
const (
	EventDesiredChanged  = "twin.desired_changed"
	EventReportedChanged = "twin.reported_changed"
)

// InvalidError is a document that cannot be taken.
type InvalidError struct{ Message string }

func (e *InvalidError) Error() string { return e.Message }

// ConflictError: desired is no longer at the version the caller named.
type ConflictError struct{ Want, Current int64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("desired is at version %d, not %d: read the twin again and retry", e.Current, e.Want)
}

// Service changes twins.
type Service struct {
	st  store.Store
	now func() time.Time
}

// New returns a twin service over st.
func New(st store.Store) *Service {
	return &Service{st: st, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// Get returns the device's twin.
func (s *Service) Get(ctx context.Context, tenantID, deviceID string) (*model.Twin, error) {
	return s.st.GetTwin(ctx, tenantID, deviceID)
}

// SetDesired replaces desired with doc, or merges doc into it (RFC 7396)
// when merge is set. ifVersion >= 0 makes the change conditional on the
// current desired version. It writes an audit record and emits
// twin.desired_changed.
func (s *Service) SetDesired(ctx context.Context, p *authz.Principal, tenantID, deviceID string, doc json.RawMessage, merge bool, ifVersion int64) (*model.Twin, error) {
	patch, err := parseObject(doc, "the desired document")
	if err != nil {
		return nil, err
	}
	var out *model.Twin
	err = s.st.Update(ctx, func(tx store.Tx) error {
		tw, err := tx.GetTwin(ctx, tenantID, deviceID)
		if err != nil {
			return err
		}
		if ifVersion >= 0 && tw.DesiredVersion != ifVersion {
			return &ConflictError{Want: ifVersion, Current: tw.DesiredVersion}
		}
		next := patch
		if merge {
			cur, err := parseObject(tw.Desired, "the stored desired document")
			if err != nil {
				return err
			}
			next, _ = MergePatch(cur, patch).(map[string]any)
		} else {
			next = stripNulls(patch).(map[string]any)
		}
		b, err := encode(next, "the desired document")
		if err != nil {
			return err
		}
		at := s.now()
		if err := tx.PutTwinDesired(ctx, tenantID, deviceID, b, tw.DesiredVersion, at); err != nil {
			if errors.Is(err, store.ErrStale) {
				return &ConflictError{Want: tw.DesiredVersion, Current: tw.DesiredVersion + 1}
			}
			return err
		}
		tw.Desired, tw.DesiredVersion, tw.DesiredAt = b, tw.DesiredVersion+1, &at
		out = tw
		action := "twin.desired.replace"
		if merge {
			action = "twin.desired.merge"
		}
		if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: action, Target: deviceID,
			Summary: map[string]any{"patch": json.RawMessage(doc), "version": tw.DesiredVersion}}); err != nil {
			return fmt.Errorf("writing the audit record: %w", err)
		}
		return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: EventDesiredChanged, Subject: deviceID,
			Time: at, Data: mustJSON(map[string]any{"device_id": deviceID, "version": tw.DesiredVersion})})
	})
	return out, err
}

// Report merges a device's patch into reported and emits
// twin.reported_changed. Device reports are not audited (they are the
// device's own state, not a change someone made).
func (s *Service) Report(ctx context.Context, tenantID, deviceID string, patch json.RawMessage) (*model.Twin, error) {
	p, err := parseObject(patch, "the reported patch")
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		var out *model.Twin
		err := s.st.Update(ctx, func(tx store.Tx) error {
			tw, err := tx.GetTwin(ctx, tenantID, deviceID)
			if err != nil {
				return err
			}
			cur, err := parseObject(tw.Reported, "the stored reported document")
			if err != nil {
				return err
			}
			next, _ := MergePatch(cur, p).(map[string]any)
			b, err := encode(next, "the reported document")
			if err != nil {
				return err
			}
			at := s.now()
			if err := tx.PutTwinReported(ctx, tenantID, deviceID, b, tw.ReportedVersion, at); err != nil {
				return err
			}
			tw.Reported, tw.ReportedVersion, tw.ReportedAt = b, tw.ReportedVersion+1, &at
			out = tw
			return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: EventReportedChanged,
				Subject: deviceID, Time: at, Data: mustJSON(map[string]any{"device_id": deviceID, "version": tw.ReportedVersion})})
		})
		if errors.Is(err, store.ErrStale) && attempt < 5 {
			continue // another report of the same device won the race: merge again
		}
		return out, err
	}
}

// Delta returns the members of desired whose value differs from reported,
// recursing into objects present on both sides.
func Delta(tw *model.Twin) map[string]any {
	d, _ := parseObject(tw.Desired, "")
	r, _ := parseObject(tw.Reported, "")
	out := map[string]any{}
	delta(d, r, out)
	return out
}

func delta(d, r, out map[string]any) {
	for k, dv := range d {
		rv, ok := r[k]
		if !ok {
			out[k] = dv
			continue
		}
		dm, dIsObj := dv.(map[string]any)
		rm, rIsObj := rv.(map[string]any)
		if dIsObj && rIsObj {
			sub := map[string]any{}
			delta(dm, rm, sub)
			if len(sub) > 0 {
				out[k] = sub
			}
			continue
		}
		if !equal(dv, rv) {
			out[k] = dv
		}
	}
}

// equal compares JSON values, numbers by value (21 equals 21.0).
func equal(a, b any) bool {
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok && bok {
		af, e1 := an.Float64()
		bf, e2 := bn.Float64()
		if e1 == nil && e2 == nil {
			return af == bf
		}
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// DesiredMessage is the payload of d/{id}/twin/desired.
func DesiredMessage(tw *model.Twin) []byte {
	m := map[string]any{"version": tw.DesiredVersion, "state": json.RawMessage(tw.Desired)}
	if tw.DesiredAt != nil {
		m["updated_at"] = tw.DesiredAt.UTC().Format(time.RFC3339Nano)
	}
	return mustJSON(m)
}

// DeltaMessage is the payload of d/{id}/twin/delta.
func DeltaMessage(tw *model.Twin) []byte {
	return mustJSON(map[string]any{"version": tw.DesiredVersion, "state": Delta(tw)})
}

// MergePatch applies an RFC 7396 merge patch to target.
func MergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	} else {
		c := make(map[string]any, len(tm))
		for k, v := range tm {
			c[k] = v
		}
		tm = c
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = MergePatch(tm[k], v)
	}
	return tm
}

// stripNulls removes null members (a replaced document holds no nulls, as
// after a merge patch).
func stripNulls(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, x := range m {
		if x != nil {
			out[k] = stripNulls(x)
		}
	}
	return out
}

func parseObject(b []byte, what string) (map[string]any, error) {
	if len(bytes.TrimSpace(b)) > MaxDocBytes*2 {
		return nil, &InvalidError{fmt.Sprintf("%s is larger than %d bytes", what, MaxDocBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &InvalidError{fmt.Sprintf("%s is not valid JSON: %v", what, err)}
	}
	if dec.More() {
		return nil, &InvalidError{what + " has data after the JSON value"}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &InvalidError{what + " must be a JSON object"}
	}
	if d := depth(m); d > MaxDepth {
		return nil, &InvalidError{fmt.Sprintf("%s is %d levels deep; at most %d", what, d, MaxDepth)}
	}
	return m, nil
}

func depth(v any) int {
	switch x := v.(type) {
	case map[string]any:
		d := 0
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		d := 0
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

func encode(m map[string]any, what string) (json.RawMessage, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxDocBytes {
		return nil, &InvalidError{fmt.Sprintf("%s would be %d bytes; at most %d", what, len(b), MaxDocBytes)}
	}
	if d := depth(m); d > MaxDepth {
		return nil, &InvalidError{fmt.Sprintf("%s would be %d levels deep; at most %d", what, d, MaxDepth)}
	}
	return b, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
