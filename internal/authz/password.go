package authz

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"

	"github.com/steward-iot/steward/internal/ids"
)

// Passwords are hashed with argon2id (RFC 9106) and stored as PHC strings:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// The parameters are OWASP's first recommendation (19 MiB, 2 passes, 1
// lane). They are kept in each hash, so raising them later leaves old
// hashes valid.
type PasswordParams struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultPasswordParams are used for new hashes.
var DefaultPasswordParams = PasswordParams{Memory: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	hashLen = 32
	// maxMemory bounds what a stored hash may ask for, so a doctored row
	// cannot make a check allocate gigabytes.
	maxMemory = 256 * 1024
)

// hashSlots bounds concurrent hashing: each takes Memory KiB and a core
// for tens of milliseconds, so a burst of sign-ins queues instead of
// exhausting memory.
var hashSlots = make(chan struct{}, max(2, runtime.NumCPU()))

// ErrBadPassword is a password that does not match.
var ErrBadPassword = errors.New("wrong password")

// HashPassword returns the PHC string of an argon2id hash of pw.
func HashPassword(pw string) string { return hashWith(pw, DefaultPasswordParams) }

func hashWith(pw string, p PasswordParams) string {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	hashSlots <- struct{}{}
	sum := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, hashLen)
	<-hashSlots
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(sum))
}

// CheckPassword compares pw with a stored PHC string in constant time.
func CheckPassword(pw, encoded string) error {
	p, salt, want, err := parseHash(encoded)
	if err != nil {
		return err
	}
	hashSlots <- struct{}{}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	<-hashSlots
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrBadPassword
	}
	return nil
}

// dummyHash is checked against when there is no user, so that an unknown
// email takes as long to refuse as a wrong password.
var dummyHash = sync.OnceValue(func() string { return HashPassword(ids.Token(16)) })

// SpendPasswordCheck does the work of one password check and discards it.
func SpendPasswordCheck(pw string) { _ = CheckPassword(pw, dummyHash()) }

// NeedsRehash reports whether a stored hash uses other than the default parameters.
func NeedsRehash(encoded string) bool {
	p, _, _, err := parseHash(encoded)
	return err != nil || p != DefaultPasswordParams
}

func parseHash(encoded string) (PasswordParams, []byte, []byte, error) {
	var p PasswordParams
	bad := func(why string) (PasswordParams, []byte, []byte, error) {
		return p, nil, nil, fmt.Errorf("stored password hash: %s", why)
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return bad("unsupported version")
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &threads); err != nil {
		return bad("bad parameters")
	}
	if p.Memory < 8 || p.Memory > maxMemory || p.Time < 1 || p.Time > 16 || threads < 1 || threads > 16 {
		return bad("parameters out of range")
	}
	p.Threads = uint8(threads)
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return bad("bad salt")
	}
	sum, err := b64.DecodeString(parts[5])
	if err != nil || len(sum) < 16 {
		return bad("bad hash")
	}
	return p, salt, sum, nil
}

// NewSessionToken returns a fresh browser session token (for the cookie)
// and its ID (the hex SHA-256 that is stored). The token has 256 random
// bits, so a fast hash suffices.
func NewSessionToken() (token, id string) {
	b := make([]byte, 32)
	rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, SessionID(token)
}

// SessionID is the stored ID of a presented session token.
func SessionID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewCSRFToken returns a random token for a session's forms.
func NewCSRFToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
