package netpolicy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// MaxFlowsPerReport bounds one report.
const MaxFlowsPerReport = 1000

// Service imports MUD profiles and takes flow reports.
type Service struct {
	st  store.Store
	now func() time.Time
	// AfterReport, when set, runs after a report committed (the platform
	// re-evaluates the device's flow findings there).
	AfterReport func(ctx context.Context, tenantID, deviceID string) error
}

// New returns a service over st.
func New(st store.Store) *Service {
	return &Service{st: st, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// ImportMUD parses a MUD file and stores it as the profile of one of the
// tenant's products, replacing an earlier one. A product that names its
// MUD URL only takes the file published at that URL.
func (s *Service) ImportMUD(ctx context.Context, actor, tenantID, productID string, data []byte) (*model.MUDProfile, error) {
	parsed, err := ParseMUD(data)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p := &model.MUDProfile{TenantID: tenantID, ProductID: productID, MUDURL: parsed.MUDURL, SystemInfo: parsed.SystemInfo,
		MfgName: parsed.MfgName, ModelName: parsed.ModelName, LastUpdate: &parsed.LastUpdate, Flows: parsed.Flows,
		Document: parsed.Document, SHA256: hex.EncodeToString(sum[:]), ImportedAt: s.now(), ImportedBy: actor}
	err = s.st.Update(ctx, func(tx store.Tx) error {
		pr, err := tx.GetProduct(ctx, tenantID, productID)
		if err != nil {
			return err
		}
		if pr.MUDURL != "" && pr.MUDURL != parsed.MUDURL {
			return bad("ietf-mud:mud.mud-url", "%s is not the product's MUD URL %s", parsed.MUDURL, pr.MUDURL)
		}
		if err := tx.PutMUDProfile(ctx, p); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "mud.import", productID, "mud.imported",
			map[string]any{"mud_url": p.MUDURL, "allowed_flows": len(p.Flows), "sha256": p.SHA256}, s.now())
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// DeleteMUD removes a product's profile.
func (s *Service) DeleteMUD(ctx context.Context, actor, tenantID, productID string) error {
	return s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteMUDProfile(ctx, tenantID, productID); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "mud.delete", productID, "mud.deleted", map[string]any{"product_id": productID}, s.now())
	})
}

// ReportResult is what a flow report found.
type ReportResult struct {
	Accepted int                  `json:"accepted"`
	Outside  int                  `json:"outside_profile"`
	Flows    []model.ObservedFlow `json:"flows"`
	// Profile is the MUD URL the flows were checked against ("" = none).
	Profile string `json:"profile,omitempty"`
}

// ReportFlows records flows a gateway or agent observed for one of the
// tenant's devices, each with its verdict against the device's profile.
func (s *Service) ReportFlows(ctx context.Context, actor, tenantID, deviceID string, flows []model.ObservedFlow) (*ReportResult, error) {
	if len(flows) == 0 {
		return nil, bad("flows", "report at least one flow")
	}
	if len(flows) > MaxFlowsPerReport {
		return nil, bad("flows", "at most %d flows per report", MaxFlowsPerReport)
	}
	now := s.now()
	merged := map[string]int{}
	var norm []model.ObservedFlow
	for i, f := range flows {
		nf, err := NormalizeFlow(f)
		if err != nil {
			return nil, bad(fmt.Sprintf("flows[%d]", i), "%v", err)
		}
		if nf.LastSeen.IsZero() || nf.LastSeen.After(now) {
			nf.LastSeen = now
		}
		if nf.FirstSeen.IsZero() || nf.FirstSeen.After(nf.LastSeen) {
			nf.FirstSeen = nf.LastSeen
		}
		nf.FirstSeen, nf.LastSeen = nf.FirstSeen.UTC().Truncate(time.Microsecond), nf.LastSeen.UTC().Truncate(time.Microsecond)
		nf.Reports, nf.TenantID, nf.DeviceID = 1, tenantID, deviceID
		if j, ok := merged[nf.Key]; ok {
			m := &norm[j]
			m.Bytes += nf.Bytes
			m.Packets += nf.Packets
			m.FirstSeen = minTime(m.FirstSeen, nf.FirstSeen)
			m.LastSeen = maxTime(m.LastSeen, nf.LastSeen)
			continue
		}
		merged[nf.Key] = len(norm)
		norm = append(norm, nf)
	}
	res := &ReportResult{}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		profile, err := tx.DeviceMUDProfile(ctx, tenantID, deviceID)
		switch {
		case err == nil:
			res.Profile = profile.MUDURL
		case errors.Is(err, store.ErrNotFound):
			profile = nil
			if _, err := tx.GetDevice(ctx, tenantID, deviceID); err != nil {
				return err
			}
		default:
			return err
		}
		known, err := tx.RecentFlows(ctx, tenantID, deviceID, time.Time{})
		if err != nil {
			return err
		}
		verdicts := make(map[string]string, len(known))
		for _, f := range known {
			verdicts[f.Key] = f.Verdict
		}
		res.Outside = 0
		var added, changed []string
		for i := range norm {
			norm[i].Verdict = Evaluate(profile, norm[i])
			if norm[i].Verdict == VerdictOutside {
				res.Outside++
			}
			switch v, ok := verdicts[norm[i].Key]; {
			case !ok:
				added = append(added, norm[i].Key)
			case v != norm[i].Verdict:
				changed = append(changed, norm[i].Key)
			}
		}
		if err := tx.PutObservedFlows(ctx, tenantID, deviceID, norm); err != nil {
			return err
		}
		if len(added) == 0 && len(changed) == 0 {
			// Known flows seen again only move their counters, like
			// telemetry: what the record would say has not changed.
			return nil
		}
		_, err = tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: "flows.report", Target: deviceID,
			Summary: map[string]any{"flows": len(norm), "new": added, "verdict_changed": changed,
				"outside_profile": res.Outside, "profile": res.Profile}})
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Accepted, res.Flows = len(norm), norm
	if s.AfterReport != nil {
		if err := s.AfterReport(ctx, tenantID, deviceID); err != nil {
			return nil, fmt.Errorf("the flows were recorded, but checking them failed: %w", err)
		}
	}
	return res, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func auditEmit(ctx context.Context, tx store.Tx, tenantID, actor, action, target, evType string, summary any, now time.Time) error {
	if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: action, Target: target, Summary: summary}); err != nil {
		return fmt.Errorf("writing the audit record: %w", err)
	}
	data, err := json.Marshal(summary)
	if err != nil {
		return err
	}
	return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: evType, Subject: target, Time: now, Data: data})
}
