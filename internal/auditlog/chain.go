// Package auditlog defines the append-only, hash-chained audit log: how a
// record's hash is computed and how a chain is verified. The store appends
// records inside the transaction of the change they describe; this package
// holds the rules both the store and `steward audit verify` follow.
//
// Each tenant has its own chain (platform-level actions use the tenant ""),
// so tenants never wait on each other's writes and an export of one tenant's
// trail is verifiable on its own.
package auditlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/steward-iot/steward/internal/model"
)

// Genesis is the previous hash of every chain's first record.
var Genesis = make([]byte, sha256.Size)

// Hash computes a record's hash from its fields and its predecessor's hash.
// Fields are length-prefixed so that no two different records can be
// encoded to the same bytes. Time is hashed at microsecond precision, the
// precision both stores keep.
func Hash(r *model.AuditRecord) []byte {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte("steward-audit-v1"))
	field([]byte(r.TenantID))
	binary.BigEndian.PutUint64(n[:], uint64(r.Seq))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(r.Time.UnixMicro()))
	h.Write(n[:])
	field([]byte(r.Actor))
	field([]byte(r.Action))
	field([]byte(r.Target))
	field(r.Summary)
	field(r.PrevHash)
	return h.Sum(nil)
}

// BrokenError names the first record at which a chain does not hold.
type BrokenError struct {
	TenantID string
	Seq      int64
	Reason   string
}

func (e *BrokenError) Error() string {
	t := e.TenantID
	if t == "" {
		t = "(platform)"
	}
	return fmt.Sprintf("audit chain of tenant %s is broken at record %d: %s", t, e.Seq, e.Reason)
}

// Verifier checks one tenant's chain record by record, in sequence order.
type Verifier struct {
	tenant string
	prev   []byte
	next   int64
	count  int64
}

// NewVerifier starts checking the chain of one tenant from its first record.
func NewVerifier(tenant string) *Verifier {
	return &Verifier{tenant: tenant, prev: Genesis, next: 1}
}

// Add checks the next record; it returns a *BrokenError at the first fault.
func (v *Verifier) Add(r *model.AuditRecord) error {
	if r.Seq != v.next {
		return &BrokenError{TenantID: v.tenant, Seq: v.next,
			Reason: fmt.Sprintf("record %d is missing (next record found is %d)", v.next, r.Seq)}
	}
	if !bytes.Equal(r.PrevHash, v.prev) {
		return &BrokenError{TenantID: v.tenant, Seq: r.Seq,
			Reason: fmt.Sprintf("previous-hash %s does not match record %d's hash %s",
				short(r.PrevHash), r.Seq-1, short(v.prev))}
	}
	if want := Hash(r); !bytes.Equal(r.Hash, want) {
		return &BrokenError{TenantID: v.tenant, Seq: r.Seq,
			Reason: "stored hash does not match the record's contents (the record was altered)"}
	}
	v.prev = r.Hash
	v.next++
	v.count++
	return nil
}

// Finish checks the chain's end against the head the store keeps, which
// catches records removed from the end.
func (v *Verifier) Finish(headSeq int64, headHash []byte) error {
	if headSeq != v.next-1 {
		// Records missing from the end break at the first missing one;
		// records beyond the head break at the first one past it.
		return &BrokenError{TenantID: v.tenant, Seq: min(headSeq, v.next-1) + 1,
			Reason: fmt.Sprintf("chain head says %d records but %d were found", headSeq, v.next-1)}
	}
	if headSeq > 0 && !bytes.Equal(headHash, v.prev) {
		return &BrokenError{TenantID: v.tenant, Seq: headSeq,
			Reason: "chain head hash does not match the last record"}
	}
	return nil
}

// Count is how many records have been verified.
func (v *Verifier) Count() int64 { return v.count }

func short(b []byte) string {
	s := hex.EncodeToString(b)
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
