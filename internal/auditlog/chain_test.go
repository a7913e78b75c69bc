package auditlog

import (
	"errors"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

func chain(n int) []model.AuditRecord {
	prev := Genesis
	out := make([]model.AuditRecord, n)
	for i := range out {
		r := model.AuditRecord{TenantID: "t", Seq: int64(i + 1), Time: time.UnixMicro(int64(1e15 + i)), Actor: "key:a",
			Action: "device.create", Target: "dev", Summary: []byte(`{"n":1}`), PrevHash: prev}
		r.Hash = Hash(&r)
		prev = r.Hash
		out[i] = r
	}
	return out
}

func verify(recs []model.AuditRecord, headSeq int64, headHash []byte) error {
	v := NewVerifier("t")
	for i := range recs {
		if err := v.Add(&recs[i]); err != nil {
			return err
		}
	}
	return v.Finish(headSeq, headHash)
}

func TestVerifier(t *testing.T) {
	cases := []struct {
		name   string
		tamper func([]model.AuditRecord) ([]model.AuditRecord, int64)
		broken int64 // 0 = intact
	}{
		{"intact", func(r []model.AuditRecord) ([]model.AuditRecord, int64) { return r, 5 }, 0},
		{"altered action", func(r []model.AuditRecord) ([]model.AuditRecord, int64) { r[2].Action = "x"; return r, 5 }, 3},
		{"altered summary", func(r []model.AuditRecord) ([]model.AuditRecord, int64) { r[1].Summary = []byte(`{}`); return r, 5 }, 2},
		{"altered time", func(r []model.AuditRecord) ([]model.AuditRecord, int64) {
			r[4].Time = r[4].Time.Add(time.Second)
			return r, 5
		}, 5},
		{"rehashed but unlinked", func(r []model.AuditRecord) ([]model.AuditRecord, int64) {
			r[2].Actor = "key:evil"
			r[2].Hash = Hash(&r[2])
			return r, 5
		}, 4},
		{"middle removed", func(r []model.AuditRecord) ([]model.AuditRecord, int64) { return append(r[:2], r[3:]...), 5 }, 3},
		{"tail removed", func(r []model.AuditRecord) ([]model.AuditRecord, int64) { return r[:4], 5 }, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs := chain(5)
			head := recs[4].Hash
			recs, headSeq := tc.tamper(recs)
			err := verify(recs, headSeq, head)
			if tc.broken == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var b *BrokenError
			if !errors.As(err, &b) || b.Seq != tc.broken {
				t.Fatalf("got %v, want broken at %d", err, tc.broken)
			}
		})
	}
}

// Length prefixes keep field boundaries: moving bytes between fields
// changes the hash.
func TestHashFieldBoundaries(t *testing.T) {
	a := model.AuditRecord{TenantID: "t", Seq: 1, Actor: "ab", Action: "c", PrevHash: Genesis}
	b := model.AuditRecord{TenantID: "t", Seq: 1, Actor: "a", Action: "bc", PrevHash: Genesis}
	if string(Hash(&a)) == string(Hash(&b)) {
		t.Fatal("different records hash alike")
	}
}
