package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/steward-iot/steward/internal/auditlog"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// VerifyChains runs auditlog.Verify over every chain and returns the
// reports by tenant.
func VerifyChains(t *testing.T, r store.Reader) map[string]auditlog.ChainReport {
	t.Helper()
	reps, err := auditlog.Verify(t.Context(), r, nil, nil)
	noErr(t, err, "auditlog.Verify")
	out := map[string]auditlog.ChainReport{}
	for _, rep := range reps {
		if _, dup := out[rep.TenantID]; dup {
			t.Fatalf("Verify reports tenant %q twice", rep.TenantID)
		}
		out[rep.TenantID] = rep
	}
	return out
}

// WantChainsOK checks that exactly the given chains exist, each intact with
// the given number of records.
func WantChainsOK(t *testing.T, r store.Reader, counts map[string]int64) {
	t.Helper()
	reps := VerifyChains(t, r)
	for tenant, rep := range reps {
		want, ok := counts[tenant]
		if !ok {
			t.Errorf("unexpected chain of tenant %q: %+v", tenant, rep)
			continue
		}
		if !rep.OK || rep.Records != want || rep.Error != "" {
			t.Errorf("chain of tenant %q: %+v, want OK with %d records", tenant, rep, want)
		}
	}
	for tenant := range counts {
		if _, ok := reps[tenant]; !ok {
			t.Errorf("no chain reported for tenant %q", tenant)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

type auditStep struct {
	tenant string
	entry  model.AuditEntry
}

func testAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	entry := func(action, target string, summary any) model.AuditEntry {
		return model.AuditEntry{Actor: "user:alice", Action: action, Target: target, Summary: summary}
	}
	// Each inner slice is one transaction.
	txs := [][]auditStep{
		{{tenA, entry("device.create", "dev-1", map[string]any{"serial": "SN-1"})},
			{tenA, entry("device.update", "dev-1", nil)},
			{"", entry("tenant.create", tenA, map[string]string{"name": "A"})}},
		{{tenB, entry("device.create", "dev-9", []string{"x", "y"})},
			{tenB, entry("device.delete", "dev-9", nil)},
			{tenA, entry("group.create", "grp-1", 42)}},
		{{"", entry("key.create", "key-p1", nil)}},
		{{tenB, entry("webhook.create", "wh-1", map[string]any{"url": "https://b.example/hook"})}},
	}
	var written []model.AuditRecord
	for _, steps := range txs {
		mustUpdate(t, s, func(tx store.Tx) error {
			for _, st := range steps {
				rec, err := tx.Audit(ctx, st.tenant, st.entry)
				if err != nil {
					return err
				}
				written = append(written, *rec)
			}
			return nil
		})
	}

	t.Run("records link up", func(t *testing.T) {
		last := map[string]model.AuditRecord{}
		for _, r := range written {
			prev, ok := last[r.TenantID]
			switch {
			case !ok && (r.Seq != 1 || !bytes.Equal(r.PrevHash, auditlog.Genesis)):
				t.Fatalf("first record of %q: seq %d prev %x", r.TenantID, r.Seq, r.PrevHash)
			case ok && (r.Seq != prev.Seq+1 || !bytes.Equal(r.PrevHash, prev.Hash)):
				t.Fatalf("record %d of %q does not follow record %d", r.Seq, r.TenantID, prev.Seq)
			}
			if !bytes.Equal(r.Hash, auditlog.Hash(&r)) {
				t.Fatalf("record %d of %q: returned hash is not the record's hash", r.Seq, r.TenantID)
			}
			last[r.TenantID] = r
		}
	})

	t.Run("verify", func(t *testing.T) {
		WantChainsOK(t, s, map[string]int64{tenA: 3, tenB: 3, "": 2})
		only := tenB
		reps, err := auditlog.Verify(ctx, s, &only, nil)
		noErr(t, err, "Verify of one tenant")
		if len(reps) != 1 || reps[0].TenantID != tenB || !reps[0].OK || reps[0].Records != 3 {
			t.Fatalf("Verify of B only: %+v", reps)
		}
	})

	t.Run("list", func(t *testing.T) {
		for _, tenant := range []string{tenA, tenB, ""} {
			var want []model.AuditRecord
			for _, r := range written {
				if r.TenantID == tenant {
					want = append(want, r)
				}
			}
			got, err := s.ListAudit(ctx, tenant, 0, 100)
			noErr(t, err, "ListAudit")
			wantEqual(t, got, want, fmt.Sprintf("audit records of %q", tenant))
			got, err = s.ListAudit(ctx, tenant, 1, 1)
			noErr(t, err, "ListAudit")
			wantEqual(t, got, want[1:2], fmt.Sprintf("audit record 2 of %q", tenant))
		}
		got, err := s.ListAudit(ctx, "ten-none", 0, 10)
		noErr(t, err, "ListAudit")
		if len(got) != 0 {
			t.Fatalf("a tenant without records lists %d", len(got))
		}
		// Summaries are stored as the JSON of what was handed in.
		for _, r := range written {
			if r.Summary == nil {
				continue
			}
			if !json.Valid(r.Summary) {
				t.Fatalf("summary %q is not JSON", r.Summary)
			}
		}
		recs, _ := s.ListAudit(ctx, tenA, 0, 1)
		var sum map[string]any
		if err := json.Unmarshal(recs[0].Summary, &sum); err != nil || sum["serial"] != "SN-1" {
			t.Fatalf("summary of A's first record: %s (%v)", recs[0].Summary, err)
		}
		if recs[0].Actor != "user:alice" || recs[0].Action != "device.create" || recs[0].Target != "dev-1" {
			t.Fatalf("A's first record: %+v", recs[0])
		}
	})

	t.Run("heads", func(t *testing.T) {
		heads, err := s.AuditHeads(ctx)
		noErr(t, err, "AuditHeads")
		got := map[string]store.AuditHead{}
		for _, h := range heads {
			got[h.TenantID] = h
		}
		for _, r := range written {
			if h := got[r.TenantID]; h.Seq == r.Seq && !bytes.Equal(h.Hash, r.Hash) {
				t.Fatalf("head of %q at %d has hash %x, record has %x", r.TenantID, r.Seq, h.Hash, r.Hash)
			}
		}
		if len(got) != 3 || got[tenA].Seq != 3 || got[tenB].Seq != 3 || got[""].Seq != 2 {
			t.Fatalf("heads: %+v", heads)
		}
	})

	t.Run("invalid entry", func(t *testing.T) {
		for _, e := range []model.AuditEntry{{Action: "x"}, {Actor: "user:alice"}} {
			err := s.Update(ctx, func(tx store.Tx) error { _, err := tx.Audit(ctx, tenA, e); return err })
			if err == nil {
				t.Fatalf("Audit of %+v: no error", e)
			}
		}
		WantChainsOK(t, s, map[string]int64{tenA: 3, tenB: 3, "": 2})
	})
}

func testAuditRollback(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA)
	p := createProduct(t, s, tenA, "prd-1")
	mustUpdate(t, s, func(tx store.Tx) error {
		_, err := tx.Audit(ctx, tenA, model.AuditEntry{Actor: "user:alice", Action: "product.create", Target: p.ID})
		return err
	})

	d := newDevice(tenA, p.ID, "dev-1", "SN-1")
	err := s.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Audit(ctx, tenA, model.AuditEntry{Actor: "user:alice", Action: "device.create", Target: d.ID}); err != nil {
			return err
		}
		if _, err := tx.Audit(ctx, "", model.AuditEntry{Actor: "user:alice", Action: "platform.note", Target: d.ID}); err != nil {
			return err
		}
		if err := tx.CreateDevice(ctx, &d); err != nil {
			return err
		}
		// Inside the transaction the change is visible...
		if _, err := tx.GetDevice(ctx, tenA, d.ID); err != nil {
			return fmt.Errorf("device not visible inside its own transaction: %w", err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("Update returned %v, want the callback's error", err)
	}
	// ...and after the rollback none of it is.
	_, err = s.GetDevice(ctx, tenA, d.ID)
	wantErr(t, err, store.ErrNotFound, "GetDevice after rollback")
	recs, err := s.ListAudit(ctx, tenA, 0, 100)
	noErr(t, err, "ListAudit")
	if len(recs) != 1 {
		t.Fatalf("A has %d audit records after rollback, want 1", len(recs))
	}
	WantChainsOK(t, s, map[string]int64{tenA: 1})

	// The chain goes on from where it was: no gap left by the rolled-back record.
	var rec *model.AuditRecord
	mustUpdate(t, s, func(tx store.Tx) error {
		var err error
		if rec, err = tx.Audit(ctx, tenA, model.AuditEntry{Actor: "user:alice", Action: "device.create", Target: d.ID}); err != nil {
			return err
		}
		return tx.CreateDevice(ctx, &d)
	})
	if rec.Seq != 2 {
		t.Fatalf("record after the rollback has seq %d, want 2", rec.Seq)
	}
	getDevice(t, s, tenA, d.ID)
	WantChainsOK(t, s, map[string]int64{tenA: 2})

	// A failure from the store itself rolls back too.
	dup := newDevice(tenA, p.ID, "dev-2", d.Serial)
	err = s.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Audit(ctx, tenA, model.AuditEntry{Actor: "user:alice", Action: "device.create", Target: dup.ID}); err != nil {
			return err
		}
		return tx.CreateDevice(ctx, &dup)
	})
	wantErr(t, err, store.ErrConflict, "CreateDevice with a taken serial")
	WantChainsOK(t, s, map[string]int64{tenA: 2})
}

func testAuditConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	createTenants(t, s, tenA, tenB)
	// B's chain exists before; A's head row is created by the race itself.
	mustUpdate(t, s, func(tx store.Tx) error {
		_, err := tx.Audit(ctx, tenB, model.AuditEntry{Actor: "svc:setup", Action: "setup"})
		return err
	})
	const workers, each = 8, 20
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs = map[string][]int64{}
		errs []error
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Even workers write to A, odd ones to B and then the platform
				// chain, always in that order.
				chains := []string{tenA}
				if w%2 == 1 {
					chains = []string{tenB, ""}
				}
				var got []*model.AuditRecord
				err := s.Update(ctx, func(tx store.Tx) error {
					got = got[:0]
					for _, c := range chains {
						rec, err := tx.Audit(ctx, c, model.AuditEntry{Actor: fmt.Sprintf("worker:%d", w),
							Action: "tick", Target: fmt.Sprint(i), Summary: map[string]int{"w": w, "i": i}})
						if err != nil {
							return err
						}
						got = append(got, rec)
					}
					return nil
				})
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("worker %d, record %d: %w", w, i, err))
				} else {
					for _, r := range got {
						seqs[r.TenantID] = append(seqs[r.TenantID], r.Seq)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d concurrent appends failed, first: %v", len(errs), errs[0])
	}
	half := int64(workers / 2 * each)
	want := map[string]int64{tenA: half, tenB: half + 1, "": half}
	// Every commit got its own sequence number, and together they leave no gap.
	for tenant, n := range want {
		got := slices.Sorted(slices.Values(seqs[tenant]))
		first := int64(1)
		if tenant == tenB {
			first = 2
		}
		if int64(len(got)) != n-first+1 {
			t.Fatalf("tenant %q: %d records committed, want %d", tenant, len(got), n-first+1)
		}
		for i, seq := range got {
			if seq != first+int64(i) {
				t.Fatalf("tenant %q: committed sequence numbers %v are not %d..%d", tenant, got, first, n)
			}
		}
	}
	WantChainsOK(t, s, want)
}
