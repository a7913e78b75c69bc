package web

import (
	"sync"
	"time"
)

// LoginLimits bound failed sign-ins, per account and per client address.
//
// The counters live in memory, not in the database: a flood of failed
// sign-ins then costs no database writes (on SQLite every write queues
// behind the one writer, so a table of attempts would let a flood slow the
// whole platform), and checks need no round trip. The price: a restart
// forgets the counts, and on N nodes an attacker gets N times the budget.
// With argon2id hashes and 12-character minimum passwords that still
// leaves online guessing hopeless, and a lock-out never outlives Window.
type LoginLimits struct {
	// AccountFailures is how many failed sign-ins one email may have per
	// Window (default 5); IPFailures the same per client address (default 30).
	AccountFailures int
	IPFailures      int
	Window          time.Duration // default 15 minutes
}

func (l LoginLimits) withDefaults() LoginLimits {
	if l.AccountFailures <= 0 {
		l.AccountFailures = 5
	}
	if l.IPFailures <= 0 {
		l.IPFailures = 30
	}
	if l.Window <= 0 {
		l.Window = 15 * time.Minute
	}
	return l
}

// maxTracked bounds each table; past it the least recently used entry goes.
const maxTracked = 100_000

// bucket is a token bucket: it holds up to capacity tokens, refills
// capacity per window, and each failure takes one.
type bucket struct {
	tokens float64
	last   time.Time
}

type buckets struct {
	capacity float64
	perSec   float64
	m        map[string]*bucket
}

func newBuckets(capacity int, window time.Duration) *buckets {
	return &buckets{capacity: float64(capacity), perSec: float64(capacity) / window.Seconds(), m: map[string]*bucket{}}
}

func (bs *buckets) get(key string, now time.Time) *bucket {
	b := bs.m[key]
	if b == nil {
		if len(bs.m) >= maxTracked {
			bs.prune(now)
		}
		if len(bs.m) >= maxTracked {
			bs.evictOldest()
		}
		b = &bucket{tokens: bs.capacity, last: now}
		bs.m[key] = b
		return b
	}
	b.tokens = min(bs.capacity, b.tokens+now.Sub(b.last).Seconds()*bs.perSec)
	b.last = now
	return b
}

// wait is how long until key may try again (0: now).
func (bs *buckets) wait(key string, now time.Time) time.Duration {
	b := bs.m[key]
	if b == nil {
		return 0
	}
	tokens := min(bs.capacity, b.tokens+now.Sub(b.last).Seconds()*bs.perSec)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / bs.perSec * float64(time.Second))
}

func (bs *buckets) prune(now time.Time) {
	for k, b := range bs.m {
		if b.tokens+now.Sub(b.last).Seconds()*bs.perSec >= bs.capacity {
			delete(bs.m, k)
		}
	}
}

func (bs *buckets) evictOldest() {
	var oldest string
	var t time.Time
	for k, b := range bs.m {
		if oldest == "" || b.last.Before(t) {
			oldest, t = k, b.last
		}
	}
	delete(bs.m, oldest)
}

// limiter counts failed sign-ins per account and per client address.
type limiter struct {
	mu       sync.Mutex
	accounts *buckets
	ips      *buckets
	now      func() time.Time
}

func newLimiter(l LoginLimits) *limiter {
	l = l.withDefaults()
	return &limiter{accounts: newBuckets(l.AccountFailures, l.Window), ips: newBuckets(l.IPFailures, l.Window), now: time.Now}
}

// wait is how long the account and address must wait before trying again
// (0: they may try now).
func (l *limiter) wait(account, ip string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	return max(l.accounts.wait(account, now), l.ips.wait(ip, now))
}

// failed records a failed sign-in.
func (l *limiter) failed(account, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if b := l.accounts.get(account, now); b.tokens > 0 {
		b.tokens--
	}
	if b := l.ips.get(ip, now); b.tokens > 0 {
		b.tokens--
	}
}

// succeeded forgets an account's failures; its address's stay.
func (l *limiter) succeeded(account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.accounts.m, account)
}

func (l *limiter) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accounts.prune(now)
	l.ips.prune(now)
}
