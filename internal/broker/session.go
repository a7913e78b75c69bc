package broker

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/steward-iot/steward/internal/detect"
	"github.com/steward-iot/steward/internal/identity"
)

// kind of a connected client.
type kind uint8

const (
	kindDevice kind = iota + 1
	kindApp         // an application reading its tenant's device traffic with an API key
)

// session is what the broker knows about one connection.
type session struct {
	cl         *mqtt.Client
	kind       kind
	tenantID   string // "" for a platform-wide application
	deviceID   string // devices
	keyID      string // applications
	method     identity.Method
	certSerial string
	// tookOverFrom is the remote address of the device's session this
	// one replaces (a second connection with the same identity), seen at
	// connect time.
	tookOverFrom string
	token        string // the device token a token session authenticated with
	listener     string
	connectedAt  time.Time
	quarantined  atomic.Bool
	shard        uint32         // PUBACK shard (acks.go)
	det          *detect.Device // behaviour detection state (nil without a detector)
	acks         pendingAcks    // telemetry PUBACKs still to send

	mu         sync.Mutex
	msgs       bucket
	bytes      bucket
	lastTouch  time.Time
	lastReport time.Time
	// twinLoaded: the retained twin messages of this device are in the
	// broker's index (loaded on the first subscribe that needs them).
	twinLoaded bool
}

// bucket is a token bucket: rate per second, up to burst.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst, n float64) bool {
	if rate <= 0 {
		return true
	}
	if b.last.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// allow applies the per-device message and byte limits.
func (s *session) allow(c *Config, now time.Time, size int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	okMsg := s.msgs.take(now, c.RateLimit, float64(c.RateBurst), 1)
	okBytes := s.bytes.take(now, c.ByteRate, float64(c.ByteBurst), float64(size))
	return okMsg && okBytes
}

// due reports (and records) whether at least every has passed since *last.
func (s *session) due(last *time.Time, now time.Time, every time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(*last) < every {
		return false
	}
	*last = now
	return true
}

// registry holds the sessions: by client (exact) and by device (the
// newest connection of each device).
type registry struct {
	mu       sync.RWMutex
	byClient map[*mqtt.Client]*session
	byDevice map[string]*session
}

func newRegistry() *registry {
	return &registry{byClient: map[*mqtt.Client]*session{}, byDevice: map[string]*session{}}
}

func (r *registry) client(cl *mqtt.Client) *session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byClient[cl]
}

func (r *registry) device(id string) *session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byDevice[id]
}

// add records an authenticated connection (before its session starts).
func (r *registry) add(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byClient[s.cl] = s
}

// activate makes s the device's current session.
func (r *registry) activate(s *session) {
	if s.kind != kindDevice {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byDevice[s.deviceID] = s
}

// remove forgets s and reports whether it was its device's current session.
func (r *registry) remove(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byClient, s.cl)
	if s.kind == kindDevice && r.byDevice[s.deviceID] == s {
		delete(r.byDevice, s.deviceID)
		return true
	}
	return false
}

func (r *registry) counts() (devices, clients int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byDevice), len(r.byClient)
}
