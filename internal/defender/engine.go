// Package defender is the audit side of the security engine: checks that
// run per tenant (on a schedule and on demand) and turn what they find
// into findings with a severity, the resource, evidence, first and last
// seen, automatic resolution when a check no longer fires, and suppression
// with a reason and an expiry.
//
// A check only says what is wrong now (Run returns results); the engine
// reconciles that with the stored findings in one transaction per check,
// with the audit record and events of every change. New checks (the
// broker's connection checks, say) plug in with Register.
package defender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Scope says where a check runs: in every tenant, on the platform (tenant
// ""), or both.
type Scope string

const (
	ScopeTenant   Scope = "tenant"
	ScopePlatform Scope = "platform"
	ScopeBoth     Scope = "both"
)

// CheckInfo describes a check.
type CheckInfo struct {
	ID           string         `json:"id"`
	Title        string         `json:"title"`
	Description  string         `json:"description"`
	Severity     model.Severity `json:"severity" doc:"Severity of its findings (some checks raise it, e.g. an expired certificate)."`
	ResourceType string         `json:"resource_type"`
	Scope        Scope          `json:"scope"`
}

// Env is what a check sees when it runs for one tenant.
type Env struct {
	TenantID string // "" on the platform
	Now      time.Time
	Store    store.Reader
	Settings model.SecuritySettings
	// ResourceIDs, when not empty, limits the run to these resources (a
	// flow report re-checks one device); the check may ignore it.
	ResourceIDs []string
}

// InScope reports whether a resource is part of this run.
func (e *Env) InScope(id string) bool {
	return len(e.ResourceIDs) == 0 || slices.Contains(e.ResourceIDs, id)
}

// Result is one thing a check found.
type Result struct {
	ResourceType string
	ResourceID   string
	// Key tells apart several findings of one check on one resource.
	Key      string
	Severity model.Severity
	Title    string
	Evidence any
}

// Check is one audit check.
type Check interface {
	Info() CheckInfo
	// Run reports what is wrong now; anything it no longer reports is
	// resolved.
	Run(ctx context.Context, env *Env) ([]Result, error)
}

// SystemActor names the scheduler in audit records.
const SystemActor = "system:defender"

// Engine runs checks and keeps findings.
type Engine struct {
	st     store.Store
	log    *slog.Logger
	now    func() time.Time
	mu     sync.RWMutex
	checks []Check
	// runs serialises runs per tenant so a scheduled and an on-demand run
	// do not reconcile the same findings at once.
	runs sync.Map // tenant → *sync.Mutex
}

// NewEngine returns an engine without checks (see Register and Standard).
func NewEngine(st store.Store, log *slog.Logger) *Engine {
	if log == nil {
		log = slog.Default()
	}
	return &Engine{st: st, log: log, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// SetClock replaces the clock (tests).
func (e *Engine) SetClock(now func() time.Time) { e.now = now }

// Now is the engine's clock.
func (e *Engine) Now() time.Time { return e.now() }

// Register adds checks; a check with an ID already registered replaces it.
func (e *Engine) Register(cs ...Check) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range cs {
		id := c.Info().ID
		e.checks = slices.DeleteFunc(e.checks, func(o Check) bool { return o.Info().ID == id })
		e.checks = append(e.checks, c)
	}
	sort.Slice(e.checks, func(i, j int) bool { return e.checks[i].Info().ID < e.checks[j].Info().ID })
}

// Checks describes the registered checks.
func (e *Engine) Checks() []CheckInfo {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]CheckInfo, len(e.checks))
	for i, c := range e.checks {
		out[i] = c.Info()
	}
	return out
}

func (e *Engine) check(id string) Check {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, c := range e.checks {
		if c.Info().ID == id {
			return c
		}
	}
	return nil
}

// CheckRun is what one check's run changed.
type CheckRun struct {
	Check    string `json:"check"`
	Opened   int    `json:"opened"`
	Reopened int    `json:"reopened"`
	Resolved int    `json:"resolved"`
	Open     int    `json:"open" doc:"Findings of the check open after the run."`
	Error    string `json:"error,omitempty"`
}

// RunReport is what a run of the checks did.
type RunReport struct {
	TenantID   string     `json:"tenant_id,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt time.Time  `json:"finished_at"`
	Opened     int        `json:"opened"`
	Reopened   int        `json:"reopened"`
	Resolved   int        `json:"resolved"`
	Checks     []CheckRun `json:"checks"`
}

// UnknownCheckError names a check that is not registered.
type UnknownCheckError struct{ ID string }

func (e *UnknownCheckError) Error() string { return fmt.Sprintf("%q is not a check", e.ID) }

func applies(s Scope, tenantID string) bool {
	switch s {
	case ScopeBoth:
		return true
	case ScopePlatform:
		return tenantID == ""
	}
	return tenantID != ""
}

func (e *Engine) lock(tenantID string) func() {
	m, _ := e.runs.LoadOrStore(tenantID, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Run runs the checks (all that apply to the scope, or the ones named) for
// a tenant ("" = the platform). actor names who asked; an on-demand run is
// audited even when it changed nothing. A check that fails is reported in
// its CheckRun and leaves its findings as they were.
func (e *Engine) Run(ctx context.Context, actor, tenantID string, only []string) (*RunReport, error) {
	var cs []Check
	if len(only) == 0 {
		e.mu.RLock()
		for _, c := range e.checks {
			if applies(c.Info().Scope, tenantID) {
				cs = append(cs, c)
			}
		}
		e.mu.RUnlock()
	} else {
		for _, id := range only {
			c := e.check(id)
			if c == nil {
				return nil, &UnknownCheckError{ID: id}
			}
			if !applies(c.Info().Scope, tenantID) {
				where := "in a tenant"
				if tenantID == "" {
					where = "on the platform"
				}
				return nil, &UnknownCheckError{ID: id + " (it does not run " + where + ")"}
			}
			cs = append(cs, c)
		}
	}
	unlock := e.lock(tenantID)
	defer unlock()
	rep := &RunReport{TenantID: tenantID, StartedAt: e.now(), Checks: []CheckRun{}}
	settings, err := e.st.GetSecuritySettings(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		cr := e.runOne(ctx, actor, tenantID, c, settings, nil)
		rep.Opened += cr.Opened
		rep.Reopened += cr.Reopened
		rep.Resolved += cr.Resolved
		rep.Checks = append(rep.Checks, cr)
	}
	rep.FinishedAt = e.now()
	if actor != SystemActor {
		err := e.st.Update(ctx, func(tx store.Tx) error {
			_, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: "security.run", Target: "checks",
				Summary: map[string]any{"checks": len(rep.Checks), "opened": rep.Opened, "reopened": rep.Reopened, "resolved": rep.Resolved}})
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// RunScoped runs one check for some resources of a tenant only, e.g. the
// flow check for the device that just reported flows.
func (e *Engine) RunScoped(ctx context.Context, actor, tenantID, checkID string, resourceIDs []string) (*CheckRun, error) {
	c := e.check(checkID)
	if c == nil {
		return nil, &UnknownCheckError{ID: checkID}
	}
	if len(resourceIDs) == 0 {
		return nil, errors.New("a scoped run needs resources")
	}
	unlock := e.lock(tenantID)
	defer unlock()
	settings, err := e.st.GetSecuritySettings(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	cr := e.runOne(ctx, actor, tenantID, c, settings, resourceIDs)
	if cr.Error != "" {
		return &cr, errors.New(cr.Error)
	}
	return &cr, nil
}

func (e *Engine) runOne(ctx context.Context, actor, tenantID string, c Check, settings model.SecuritySettings, scope []string) CheckRun {
	info := c.Info()
	cr := CheckRun{Check: info.ID}
	env := &Env{TenantID: tenantID, Now: e.now(), Store: e.st, Settings: settings, ResourceIDs: scope}
	results, err := c.Run(ctx, env)
	if err == nil {
		err = e.reconcile(ctx, actor, tenantID, info, results, scope, env.Now, &cr)
	}
	if err != nil {
		cr = CheckRun{Check: info.ID, Error: err.Error()}
		e.log.Error("audit check failed", "check", info.ID, "tenant", tenantID, "err", err)
	}
	return cr
}

// maxEvents caps the per-finding events of one reconcile; past it one
// summary event says how many changed.
const maxEvents = 200

func (e *Engine) reconcile(ctx context.Context, actor, tenantID string, info CheckInfo, results []Result, scope []string,
	now time.Time, cr *CheckRun) error {
	type key struct{ resource, key string }
	return e.st.Update(ctx, func(tx store.Tx) error {
		*cr = CheckRun{Check: info.ID}
		existing, err := tx.CheckFindings(ctx, tenantID, info.ID, scope)
		if err != nil {
			return err
		}
		byKey := make(map[key]*model.Finding, len(existing))
		for i := range existing {
			byKey[key{existing[i].ResourceID, existing[i].Key}] = &existing[i]
		}
		var changed []struct {
			kind string
			f    model.Finding
		}
		note := func(kind string, f model.Finding) {
			changed = append(changed, struct {
				kind string
				f    model.Finding
			}{kind, f})
		}
		seen := map[key]bool{}
		for _, r := range results {
			k := key{r.ResourceID, r.Key}
			if seen[k] {
				continue // a check that reports one thing twice: the first counts
			}
			seen[k] = true
			sev := r.Severity
			if sev == "" {
				sev = info.Severity
			}
			rt := r.ResourceType
			if rt == "" {
				rt = info.ResourceType
			}
			ev, err := json.Marshal(r.Evidence)
			if err != nil {
				return fmt.Errorf("check %s: evidence: %w", info.ID, err)
			}
			if string(ev) == "null" {
				ev = []byte("{}")
			}
			f, ok := byKey[k]
			if !ok {
				nf := model.Finding{ID: ids.New("fnd"), TenantID: tenantID, Check: info.ID, ResourceType: rt, ResourceID: r.ResourceID,
					Key: r.Key, Severity: sev, Title: r.Title, Evidence: ev, Status: model.FindingOpen, FirstSeen: now, LastSeen: now}
				if err := tx.CreateFinding(ctx, &nf); err != nil {
					return err
				}
				cr.Opened++
				note("finding.opened", nf)
				continue
			}
			reopened := f.Status == model.FindingResolved
			f.Severity, f.Title, f.Evidence, f.LastSeen = sev, r.Title, ev, now
			f.Status, f.ResolvedAt = model.FindingOpen, nil
			if err := tx.UpdateFinding(ctx, f); err != nil {
				return err
			}
			if reopened {
				cr.Reopened++
				note("finding.reopened", *f)
			}
		}
		for _, f := range existing {
			if f.Status != model.FindingOpen || seen[key{f.ResourceID, f.Key}] {
				continue
			}
			f.Status, f.ResolvedAt = model.FindingResolved, &now
			if err := tx.UpdateFinding(ctx, &f); err != nil {
				return err
			}
			cr.Resolved++
			note("finding.resolved", f)
		}
		cr.Open = len(seen)
		if len(changed) == 0 {
			return nil
		}
		summary := map[string]any{"opened": cr.Opened, "reopened": cr.Reopened, "resolved": cr.Resolved}
		var list []string
		for _, c := range changed {
			if len(list) < 100 {
				list = append(list, strings.TrimPrefix(c.kind, "finding.")+" "+c.f.ID+" "+c.f.ResourceID)
			}
		}
		summary["findings"] = list
		if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: "findings.reconcile", Target: info.ID,
			Summary: summary}); err != nil {
			return fmt.Errorf("writing the audit record: %w", err)
		}
		for i, c := range changed {
			if i == maxEvents {
				data, _ := json.Marshal(map[string]any{"check": info.ID, "opened": cr.Opened, "reopened": cr.Reopened,
					"resolved": cr.Resolved, "not_listed": len(changed) - maxEvents})
				return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: "findings.changed", Subject: info.ID,
					Time: now, Data: data})
			}
			data, err := json.Marshal(c.f)
			if err != nil {
				return err
			}
			if err := tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: c.kind, Subject: c.f.ID, Time: now,
				Data: data}); err != nil {
				return err
			}
		}
		return nil
	})
}

// InvalidError is a refused request; it names the field.
type InvalidError struct{ Field, Message string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

// MaxSuppression is the longest a finding may be suppressed.
const MaxSuppression = 366 * 24 * time.Hour

// Suppress hides a finding until until, for a reason; it stays suppressed
// if it resolves and reopens meanwhile.
func (e *Engine) Suppress(ctx context.Context, actor, tenantID, id string, until time.Time, reason string) (*model.Finding, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > 1024 {
		return nil, &InvalidError{"reason", "say why, in 1 to 1024 characters"}
	}
	now := e.now()
	if !until.After(now) {
		return nil, &InvalidError{"until", "must be in the future"}
	}
	if until.Sub(now) > MaxSuppression {
		return nil, &InvalidError{"until", "at most a year ahead; suppress again when it expires"}
	}
	until = until.UTC().Truncate(time.Microsecond)
	return e.setSuppression(ctx, actor, tenantID, id, &until, reason, "finding.suppress", "finding.suppressed")
}

// Unsuppress lifts a finding's suppression (a no-op, still audited, when
// it has none).
func (e *Engine) Unsuppress(ctx context.Context, actor, tenantID, id string) (*model.Finding, error) {
	return e.setSuppression(ctx, actor, tenantID, id, nil, "", "finding.unsuppress", "finding.unsuppressed")
}

func (e *Engine) setSuppression(ctx context.Context, actor, tenantID, id string, until *time.Time, reason, action, evType string) (*model.Finding, error) {
	var f *model.Finding
	err := e.st.Update(ctx, func(tx store.Tx) error {
		old, err := tx.GetFinding(ctx, tenantID, id)
		if err != nil {
			return err
		}
		if err := tx.SetFindingSuppression(ctx, tenantID, id, until, reason, actor); err != nil {
			return err
		}
		if f, err = tx.GetFinding(ctx, tenantID, id); err != nil {
			return err
		}
		summary := map[string]any{"until": until, "reason": reason, "was_suppressed_until": old.SuppressedUntil}
		if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: action, Target: id, Summary: summary}); err != nil {
			return err
		}
		data, _ := json.Marshal(f)
		return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: evType, Subject: id, Time: e.now(), Data: data})
	})
	return f, err
}

// SetSettings stores a tenant's check settings after checking them.
func (e *Engine) SetSettings(ctx context.Context, actor, tenantID string, s model.SecuritySettings) (model.SecuritySettings, error) {
	for _, c := range []struct {
		field   string
		v, most int
	}{{"stale_after_days", s.StaleAfterDays, 3650}, {"max_tenant_admin_keys", s.MaxTenantAdminKeys, 1000},
		{"unused_key_days", s.UnusedKeyDays, 3650}, {"flow_window_hours", s.FlowWindowHours, 24 * 90}} {
		if c.v < 1 || c.v > c.most {
			return s, &InvalidError{c.field, fmt.Sprintf("must be 1 to %d", c.most)}
		}
	}
	now := e.now()
	s.UpdatedAt, s.UpdatedBy = &now, actor
	err := e.st.Update(ctx, func(tx store.Tx) error {
		old, err := tx.GetSecuritySettings(ctx, tenantID)
		if err != nil {
			return err
		}
		if err := tx.PutSecuritySettings(ctx, tenantID, s); err != nil {
			return err
		}
		_, err = tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: "security.settings", Target: "settings",
			Summary: map[string]any{"before": old, "after": s}})
		return err
	})
	return s, err
}

// FlowRetention is how long observed flows are kept.
const FlowRetention = 30 * 24 * time.Hour

// RunScheduled runs every check for the platform and for every tenant once
// (the scheduler's round), and drops observed flows past retention.
func (e *Engine) RunScheduled(ctx context.Context) error {
	tenants, err := e.st.TenantIDs(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range append([]string{""}, tenants...) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := e.Run(ctx, SystemActor, t, nil); err != nil {
			errs = append(errs, fmt.Errorf("tenant %q: %w", t, err))
		}
		if t != "" {
			err := e.st.Update(ctx, func(tx store.Tx) error {
				_, err := tx.PruneObservedFlows(ctx, t, e.now().Add(-FlowRetention))
				return err
			})
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Schedule runs RunScheduled after first and then every interval until
// ctx ends.
func (e *Engine) Schedule(ctx context.Context, first, interval time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		if err := e.RunScheduled(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("scheduled audit checks", "err", err)
		} else {
			e.log.Info("scheduled audit checks done", "duration_ms", time.Since(start).Milliseconds())
		}
		t.Reset(interval)
	}
}
