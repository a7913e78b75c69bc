package auditlog

import (
	"context"

	"github.com/steward-iot/steward/internal/store"
)

// ChainReport is the result of checking one tenant's chain.
type ChainReport struct {
	TenantID string `json:"tenant_id"`
	Records  int64  `json:"records"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	BrokenAt int64  `json:"broken_at,omitempty"`
}

// Verify checks every chain the store holds (or only tenant's, when
// onlyTenant is non-nil) and reports each one. progress, when set, is called
// after every batch so long checks can show how far they are.
func Verify(ctx context.Context, r store.Reader, onlyTenant *string, progress func(tenant string, done int64)) ([]ChainReport, error) {
	heads, err := r.AuditHeads(ctx)
	if err != nil {
		return nil, err
	}
	var out []ChainReport
	for _, h := range heads {
		if onlyTenant != nil && h.TenantID != *onlyTenant {
			continue
		}
		rep := ChainReport{TenantID: h.TenantID, OK: true}
		v := NewVerifier(h.TenantID)
		var after int64
	walk:
		for {
			recs, err := r.ListAudit(ctx, h.TenantID, after, 5000)
			if err != nil {
				return nil, err
			}
			if len(recs) == 0 {
				break
			}
			for i := range recs {
				if err := v.Add(&recs[i]); err != nil {
					rep.fail(err)
					break walk
				}
			}
			after = recs[len(recs)-1].Seq
			if progress != nil {
				progress(h.TenantID, v.Count())
			}
		}
		if rep.OK {
			if err := v.Finish(h.Seq, h.Hash); err != nil {
				rep.fail(err)
			}
		}
		rep.Records = v.Count()
		out = append(out, rep)
	}
	return out, nil
}

func (r *ChainReport) fail(err error) {
	r.OK = false
	r.Error = err.Error()
	if b, ok := err.(*BrokenError); ok {
		r.BrokenAt = b.Seq
	}
}
