// Package ids makes identifiers: a short type prefix, then a time-ordered
// random part (48-bit milliseconds + 80 random bits, Crockford base32, as in
// ULID), so IDs sort by creation and keyset pages follow insertion order.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

var (
	mu     sync.Mutex
	lastMS uint64
	lastR  [10]byte
)

// New returns prefix + "_" + 26 characters, e.g. "dev_01jd…".
// Within one millisecond the random part is incremented, so IDs made by
// one process are strictly increasing.
func New(prefix string) string {
	mu.Lock()
	ms := uint64(time.Now().UnixMilli())
	if ms <= lastMS {
		ms = lastMS
		for i := len(lastR) - 1; i >= 0; i-- {
			lastR[i]++
			if lastR[i] != 0 {
				break
			}
		}
	} else {
		lastMS = ms
		rand.Read(lastR[:])
		lastR[0] &= 0x7f // leave room to increment without overflow
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], ms<<16)
	copy(b[6:], lastR[:])
	mu.Unlock()
	return prefix + "_" + encode(b)
}

// encode writes 128 bits as 26 base32 characters (the top two bits are zero).
func encode(b [16]byte) string {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// Valid reports whether s looks like an ID this package made with prefix.
func Valid(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok || len(rest) != 26 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(alphabet, rest[i]) < 0 {
			return false
		}
	}
	return true
}

// Token returns n random bytes as lowercase base32 (for secrets and codes).
func Token(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	var sb strings.Builder
	var acc uint64
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			sb.WriteByte(alphabet[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		sb.WriteByte(alphabet[(acc<<(5-bits))&31])
	}
	return sb.String()
}
