package detect

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// Bucket widths: the window of a rule is six of them.
const (
	minuteBucket = 10 * time.Second  // messages and bytes per minute
	fiveBucket   = 50 * time.Second  // auth failures per 5 minutes
	tenBucket    = 100 * time.Second // connects per 10 minutes
	hourBucket   = 10 * time.Minute  // new source addresses per hour
)

// maxKnown caps each learned set (ports, destinations, source addresses).
const maxKnown = 512

// Device is the detection state of one device.
type Device struct {
	d                  *Detector
	tenantID, deviceID string
	t                  *tenant

	mu sync.Mutex
	// last activity (for eviction); learning starts at the first.
	first, last time.Time

	msgs, bytes, authFails, connects, newSources window

	// per-minute counts for the rate baselines
	minute                  int64
	minuteMsgs, minuteBytes int64
	msgBase, byteBase       baseline

	sources  map[string]struct{}
	ports    map[string]struct{}
	outbound map[string]struct{}
	reported bool // a report seeded the sets
	procBase baseline

	// the last report's findings, for clearing
	lastNewPorts, lastNewOutbound, lastOutside int
	lastProcJump                               bool

	firing map[model.AlarmKind]*firing

	// Saved state (snapshot.go): dirty while the learned state has changes
	// not saved; loaded once the saved state was read (or there is no
	// store), and until then nothing is saved over it.
	dirty, loaded, loading, loadFailed bool
	pend                               pending
}

type firing struct {
	since, raised, normalSince time.Time
}

func (dv *Device) settings() model.DetectionSettings {
	if dv.t == nil {
		return model.DefaultDetectionSettings()
	}
	return *dv.t.settings.Load()
}

// learning reports whether the device's baselines are still learning.
func (dv *Device) learning(now time.Time, s *model.DetectionSettings) bool {
	return now.Sub(dv.first) < time.Duration(s.LearningMinutes)*time.Minute
}

func (dv *Device) touch(now time.Time) {
	if dv.first.IsZero() {
		dv.first = now
		dv.changed()
	}
	dv.last = now
}

// check raises kind when bad and it is not firing (or again once a minute
// while it is); a good reading starts its way to clearing (see sweep).
// dv.mu is held.
//
// evidence is called only when an alarm is raised: a device that stays
// above a threshold is checked on every message.
func (dv *Device) check(now time.Time, kind model.AlarmKind, bad bool, title string, arg any, evidence func() map[string]any) {
	f := dv.firing[kind]
	if !bad {
		return
	}
	if f != nil {
		f.normalSince = time.Time{}
		if now.Sub(f.raised) < time.Minute {
			return
		}
	}
	dec := Decision{Raise: true, TenantID: dv.tenantID, DeviceID: dv.deviceID, Kind: kind, At: now,
		Title: fmt.Sprintf(title, arg), Evidence: evidence(), Repeat: f != nil}
	if !dv.d.emit(dec) {
		return // decided again on the next reading
	}
	if f == nil {
		if dv.firing == nil {
			dv.firing = map[model.AlarmKind]*firing{}
		}
		dv.firing[kind] = &firing{since: now, raised: now}
		dv.d.firing.Store(dv, struct{}{})
		return
	}
	f.raised = now
}

// Message counts one publish of size bytes: the broker's per-message call.
func (dv *Device) Message(size int) {
	now := dv.d.o.Clock()
	s := dv.t.settings.Load()
	dv.mu.Lock()
	defer dv.mu.Unlock()
	dv.touch(now)
	m := dv.msgs.add(now, 1, minuteBucket)
	b := dv.bytes.add(now, int64(size), minuteBucket)
	if minute := now.Unix() / 60; minute != dv.minute {
		dv.rollMinute(minute)
	}
	dv.minuteMsgs++
	dv.minuteBytes += int64(size)
	// A good reading changes nothing here (see check), so check is called
	// only for a bad one: this runs for every message, and the call would
	// box the title's argument each time.
	if s.MessagesPerMinute > 0 && m > int64(s.MessagesPerMinute) {
		dv.check(now, model.AlarmMessageRate, true, "more than %d messages a minute", s.MessagesPerMinute,
			func() map[string]any {
				return map[string]any{"window": "1m", "messages": m, "threshold": s.MessagesPerMinute}
			})
	}
	if s.BytesPerMinute > 0 && b > int64(s.BytesPerMinute) {
		dv.check(now, model.AlarmByteRate, true, "more than %d bytes a minute", s.BytesPerMinute,
			func() map[string]any {
				return map[string]any{"window": "1m", "bytes": b, "threshold": s.BytesPerMinute}
			})
	}
	if !dv.learning(now, s) && dv.msgBase.n > 0 {
		if lim := dv.msgBase.limit(s.Sigma, s.RateFloor); float64(m) > lim {
			dv.check(now, model.AlarmMessageRateAnomaly, true, "%s messages a minute, far above the device's baseline",
				fmt.Sprint(m), func() map[string]any {
					return map[string]any{"window": "1m", "messages": m, "baseline_mean": round(dv.msgBase.mean),
						"baseline_stddev": round(dv.msgBase.stddev()), "limit": round(lim), "sigma": s.Sigma}
				})
		}
		if lim := dv.byteBase.limit(s.Sigma, s.RateFloor*256); float64(b) > lim {
			dv.check(now, model.AlarmByteRateAnomaly, true, "%s bytes a minute, far above the device's baseline",
				fmt.Sprint(b), func() map[string]any {
					return map[string]any{"window": "1m", "bytes": b, "baseline_mean": round(dv.byteBase.mean),
						"baseline_stddev": round(dv.byteBase.stddev()), "limit": round(lim), "sigma": s.Sigma}
				})
		}
	}
}

// rollMinute folds the finished minute (and idle ones since, up to an
// hour) into the rate baselines; not while a rate alarm fires, so that an
// attack does not become the norm.
func (dv *Device) rollMinute(minute int64) {
	if dv.minute != 0 && !dv.rateFiring() {
		dv.msgBase.add(float64(dv.minuteMsgs))
		dv.byteBase.add(float64(dv.minuteBytes))
		for i := int64(1); i < minute-dv.minute && i <= 60; i++ {
			dv.msgBase.add(0)
			dv.byteBase.add(0)
		}
		dv.changed()
	}
	dv.minute, dv.minuteMsgs, dv.minuteBytes = minute, 0, 0
}

func (dv *Device) rateFiring() bool {
	for _, k := range []model.AlarmKind{model.AlarmMessageRate, model.AlarmByteRate, model.AlarmMessageRateAnomaly, model.AlarmByteRateAnomaly} {
		if _, ok := dv.firing[k]; ok {
			return true
		}
	}
	return false
}

// Connected counts a connection from remote (host:port).
func (dv *Device) Connected(remote string) {
	now := dv.d.o.Clock()
	s := dv.t.settings.Load()
	dv.mu.Lock()
	defer dv.mu.Unlock()
	learning := dv.first.IsZero() || dv.learning(now, s)
	dv.touch(now)
	n := dv.connects.add(now, 1, tenBucket)
	dv.check(now, model.AlarmConnectionChurn, s.ConnectsPer10Min > 0 && n > int64(s.ConnectsPer10Min),
		"more than %d connections in 10 minutes", s.ConnectsPer10Min,
		func() map[string]any {
			return map[string]any{"window": "10m", "connects": n, "threshold": s.ConnectsPer10Min}
		})
	addr := sourceAddress(remote)
	if addr == "" {
		return
	}
	if dv.sources == nil {
		dv.sources = map[string]struct{}{}
	}
	if _, ok := dv.sources[addr]; ok {
		return
	}
	if len(dv.sources) < maxKnown {
		dv.sources[addr] = struct{}{}
		dv.learned(&dv.pend.sources, addr)
	}
	if learning || len(dv.sources) == 1 {
		return
	}
	dv.newSource(now, s, addr)
}

// newSource counts a source address never seen before. dv.mu is held.
func (dv *Device) newSource(now time.Time, s *model.DetectionSettings, addr string) {
	k := dv.newSources.add(now, 1, hourBucket)
	dv.check(now, model.AlarmNewSources, s.NewSourcesPerHour > 0 && k >= int64(s.NewSourcesPerHour),
		"%d or more new source addresses in an hour", s.NewSourcesPerHour,
		func() map[string]any {
			return map[string]any{"window": "1h", "new_sources": k, "latest": addr, "threshold": s.NewSourcesPerHour}
		})
}

func sourceAddress(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	return a.Unmap().String()
}

// Report takes a security metrics report. The device's first report
// seeds what it normally listens on and talks to; what it reports during
// the learning period is learned too; after it, what was never seen counts
// as new.
func (dv *Device) Report(m *Metrics) {
	now := dv.d.o.Clock()
	s := dv.t.settings.Load()
	dv.mu.Lock()
	defer dv.mu.Unlock()
	dv.touch(now)
	learn := !dv.reported || dv.learning(now, s)
	if !dv.reported {
		dv.reported = true
		dv.changed()
	}
	if m.ListeningPorts != nil {
		keys := make([]string, len(m.ListeningPorts))
		for i, p := range m.ListeningPorts {
			keys[i] = p.Key()
		}
		fresh := dv.learnSet(&dv.ports, &dv.pend.ports, keys, learn)
		dv.lastNewPorts = len(fresh)
		dv.check(now, model.AlarmNewListeningPorts, s.NewListeningPorts > 0 && len(fresh) >= s.NewListeningPorts,
			"listening on %d port(s) outside its baseline", len(fresh),
			func() map[string]any {
				return map[string]any{"new_ports": sample(fresh), "new_count": len(fresh), "known": sample(keysOf(dv.ports)),
					"threshold": s.NewListeningPorts}
			})
	}
	if m.Outbound != nil {
		keys := make([]string, len(m.Outbound))
		for i, o := range m.Outbound {
			keys[i] = o.Key()
		}
		fresh := dv.learnSet(&dv.outbound, &dv.pend.outbound, keys, learn)
		dv.lastNewOutbound = len(fresh)
		dv.check(now, model.AlarmNewOutbound, s.NewOutbound > 0 && len(fresh) >= s.NewOutbound,
			"talking to %d destination(s) never seen before", len(fresh),
			func() map[string]any {
				return map[string]any{"new_destinations": sample(fresh), "new_count": len(fresh), "threshold": s.NewOutbound}
			})
	}
	if m.ProcessCount != nil {
		n := float64(*m.ProcessCount)
		jump := !learn && dv.procBase.n > 0 && s.ProcessJump > 0 && n > dv.procBase.mean+float64(s.ProcessJump)
		dv.lastProcJump = jump
		dv.check(now, model.AlarmProcessJump, jump, "process count %s jumped above its baseline", fmt.Sprint(*m.ProcessCount),
			func() map[string]any {
				return map[string]any{"process_count": *m.ProcessCount, "baseline_mean": round(dv.procBase.mean), "jump": s.ProcessJump}
			})
		if !jump {
			dv.procBase.add(n)
			dv.changed()
		}
	}
}

// OutsideProfile takes the destinations of a report that the device's MUD
// profile does not allow (keys as in Destination.Key).
func (dv *Device) OutsideProfile(keys []string) {
	now := dv.d.o.Clock()
	dv.mu.Lock()
	defer dv.mu.Unlock()
	dv.touch(now)
	dv.lastOutside = len(keys)
	dv.check(now, model.AlarmOutsideProfile, len(keys) > 0, "%d destination(s) outside the device's MUD profile", len(keys),
		func() map[string]any { return map[string]any{"outside_profile": sample(keys), "count": len(keys)} })
}

// learnSet returns the keys not in *set; while learning it adds them.
func (dv *Device) learnSet(set *map[string]struct{}, pend *[]string, keys []string, learn bool) []string {
	if *set == nil {
		*set = map[string]struct{}{}
	}
	var fresh []string
	for _, k := range keys {
		if _, ok := (*set)[k]; ok {
			continue
		}
		if learn {
			if len(*set) < maxKnown {
				(*set)[k] = struct{}{}
				dv.learned(pend, k)
			}
			continue
		}
		fresh = append(fresh, k)
	}
	slices.Sort(fresh)
	return fresh
}

// normal tells whether a firing kind's metric is back to normal. dv.mu is held.
func (dv *Device) normal(now time.Time, kind model.AlarmKind, s *model.DetectionSettings) bool {
	switch kind {
	case model.AlarmMessageRate:
		return s.MessagesPerMinute == 0 || dv.msgs.value(now, minuteBucket) <= int64(s.MessagesPerMinute)
	case model.AlarmByteRate:
		return s.BytesPerMinute == 0 || dv.bytes.value(now, minuteBucket) <= int64(s.BytesPerMinute)
	case model.AlarmMessageRateAnomaly:
		return float64(dv.msgs.value(now, minuteBucket)) <= dv.msgBase.limit(s.Sigma, s.RateFloor)
	case model.AlarmByteRateAnomaly:
		return float64(dv.bytes.value(now, minuteBucket)) <= dv.byteBase.limit(s.Sigma, s.RateFloor*256)
	case model.AlarmAuthFailures:
		return s.AuthFailuresPer5Min == 0 || dv.authFails.value(now, fiveBucket) <= int64(s.AuthFailuresPer5Min)
	case model.AlarmConnectionChurn:
		return s.ConnectsPer10Min == 0 || dv.connects.value(now, tenBucket) <= int64(s.ConnectsPer10Min)
	case model.AlarmNewSources:
		return s.NewSourcesPerHour == 0 || dv.newSources.value(now, hourBucket) < int64(s.NewSourcesPerHour)
	case model.AlarmNewListeningPorts:
		return s.NewListeningPorts == 0 || dv.lastNewPorts < s.NewListeningPorts
	case model.AlarmNewOutbound:
		return s.NewOutbound == 0 || dv.lastNewOutbound < s.NewOutbound
	case model.AlarmOutsideProfile:
		return dv.lastOutside == 0
	case model.AlarmProcessJump:
		return !dv.lastProcJump
	}
	return true
}

// sweep clears the kinds normal for the clear window.
func (dv *Device) sweep(now time.Time) {
	s := dv.settings()
	clearAfter := time.Duration(s.ClearAfterMinutes) * time.Minute
	dv.mu.Lock()
	defer dv.mu.Unlock()
	for _, kind := range model.AlarmKinds() { // in a fixed order
		f := dv.firing[kind]
		if f == nil {
			continue
		}
		if !dv.normal(now, kind, &s) {
			f.normalSince = time.Time{}
			continue
		}
		if f.normalSince.IsZero() {
			f.normalSince = now
		}
		if now.Sub(f.normalSince) < clearAfter {
			continue
		}
		dec := Decision{TenantID: dv.tenantID, DeviceID: dv.deviceID, Kind: kind, At: now,
			Title: "back to normal", Evidence: map[string]any{"normal_since": f.normalSince, "firing_since": f.since}}
		if !dv.d.emit(dec) {
			continue
		}
		delete(dv.firing, kind)
	}
	if len(dv.firing) == 0 {
		dv.d.firing.Delete(dv)
	}
}

func keysOf(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// sample keeps evidence small: at most 32 entries.
func sample(keys []string) []string {
	if keys == nil {
		return []string{}
	}
	return keys[:min(len(keys), 32)]
}

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
