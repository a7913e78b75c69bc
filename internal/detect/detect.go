// Package detect turns per-device metric streams into alarm decisions:
// threshold rules over sliding windows and learned per-device baselines,
// over what the broker sees (messages, bytes, authentication failures,
// connects, source addresses) and what the agent reports on
// d/{id}/security/metrics (listening ports, outbound destinations, process
// count).
//
// Everything is in memory on the node that sees the traffic, so a decision
// is made the moment a threshold is crossed. What a device's baselines
// learned is saved every few minutes (Options.Save) and read back when a
// node first sees the device (Options.Load), so a restart or a move to
// another node does not start learning again. The broker holds a *Device
// per connection and calls it per message: a mutex that only that device
// takes and a few additions, no map lookup and no database. Decisions leave
// through a queue to one goroutine (Options.Decide), which stores alarms and
// mitigates (package alarm); a sweep clears alarms whose metric was back to
// normal for the tenant's clear window.
package detect

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// Decision is a raise (a rule or baseline fired) or a clear (its metric was
// normal for the clear window).
type Decision struct {
	Raise    bool
	TenantID string
	DeviceID string
	Kind     model.AlarmKind
	At       time.Time
	Title    string
	Evidence map[string]any
	// Repeat: the condition still holds (raised again at most once a minute
	// while it does).
	Repeat bool
}

// Options configure a detector.
type Options struct {
	// Settings loads a tenant's detection settings (required).
	Settings func(ctx context.Context, tenantID string) (model.DetectionSettings, error)
	// Decide receives decisions in order, on the detector's goroutine.
	Decide func(Decision)
	Clock  func() time.Time
	// Tick is how often alarms are checked for clearing (default 5 s).
	Tick time.Duration
	// Reload is how often tenants' settings are read again (default 30 s).
	Reload time.Duration
	// Load reads a device's saved state (an encoded Snapshot); nil, nil
	// when none was saved. Without it every device learns afresh.
	Load func(ctx context.Context, tenantID, deviceID string) ([]byte, error)
	// Save stores devices' learned state (at most a few hundred at once).
	Save func(ctx context.Context, states []Saved) error
	// SaveEvery is how often changed state is saved (default 5 min); it is
	// also saved before a device is evicted and when Run returns.
	SaveEvery time.Duration
	Log       *slog.Logger
}

// Detector keeps the per-device state.
type Detector struct {
	o       Options
	shards  [64]shard
	tenants sync.Map // tenant ID → *tenant
	queue   chan Decision
	dropped atomic.Int64
	// firing holds the devices with at least one firing kind (stored and
	// deleted under the device's lock).
	firing sync.Map
	// dirty holds the devices whose learned state changed since it was
	// saved (stored and deleted under the device's lock).
	dirty sync.Map

	loadMu  sync.Mutex
	loadQ   []*Device
	loaders int
	loadWG  sync.WaitGroup // queued loads, for tests
	stopped atomic.Bool
}

type shard struct {
	mu      sync.Mutex
	devices map[string]*Device
}

type tenant struct {
	id       string
	settings atomic.Pointer[model.DetectionSettings]
	loaded   atomic.Int64 // unix nanos of the last load; 0 = never
	loading  atomic.Bool
}

// New returns a detector; Run starts it.
func New(o Options) *Detector {
	if o.Clock == nil {
		o.Clock = func() time.Time { return time.Now().UTC() }
	}
	if o.Tick <= 0 {
		o.Tick = 5 * time.Second
	}
	if o.Reload <= 0 {
		o.Reload = 30 * time.Second
	}
	if o.SaveEvery <= 0 {
		o.SaveEvery = 5 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Decide == nil {
		o.Decide = func(Decision) {}
	}
	d := &Detector{o: o, queue: make(chan Decision, 8192)}
	for i := range d.shards {
		d.shards[i].devices = map[string]*Device{}
	}
	return d
}

// finalSave bounds the last save when Run returns.
const finalSave = 5 * time.Second

// Run hands decisions to Decide, sweeps and saves learned state until ctx
// ends; then it saves what changed one last time.
func (d *Detector) Run(ctx context.Context) {
	t := time.NewTicker(d.o.Tick)
	defer t.Stop()
	lastEvict := d.o.Clock()
	lastSave := lastEvict
	var saving sync.WaitGroup
	var busy atomic.Bool
	defer func() {
		d.stopped.Store(true) // no more loads
		saving.Wait()         // cancelled with ctx: what it had not saved is dirty again
		fctx, cancel := context.WithTimeout(context.Background(), finalSave)
		d.flush(fctx)
		cancel()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case dec := <-d.queue:
			d.o.Decide(dec)
		case <-t.C:
			now := d.o.Clock()
			d.sweep(now)
			d.reloadStale(ctx, now)
			save := now.Sub(lastSave) >= d.o.SaveEvery
			if now.Sub(lastEvict) > 10*time.Minute {
				d.evict(now)
				lastEvict, save = now, true
			}
			// Saving runs beside the decisions, one round at a time.
			if save && d.o.Save != nil && busy.CompareAndSwap(false, true) {
				lastSave = now
				saving.Add(1)
				go func() {
					defer saving.Done()
					defer busy.Store(false)
					d.flush(ctx)
				}()
			}
		}
	}
}

// Dropped counts decisions dropped because the queue was full (the
// condition is decided again on the device's next message).
func (d *Detector) Dropped() int64 { return d.dropped.Load() }

func (d *Detector) emit(dec Decision) bool {
	select {
	case d.queue <- dec:
		return true
	default:
		d.dropped.Add(1)
		return false
	}
}

// ---- tenants' settings ----

func (d *Detector) tenant(ctx context.Context, id string, wait bool) *tenant {
	v, ok := d.tenants.Load(id)
	if !ok {
		t := &tenant{id: id}
		def := model.DefaultDetectionSettings()
		t.settings.Store(&def)
		v, _ = d.tenants.LoadOrStore(id, t)
	}
	t := v.(*tenant)
	if t.loaded.Load() == 0 {
		if wait {
			d.load(ctx, t)
		} else {
			go d.load(context.Background(), t)
		}
	}
	return t
}

func (d *Detector) load(ctx context.Context, t *tenant) {
	if !t.loading.CompareAndSwap(false, true) {
		return
	}
	defer t.loading.Store(false)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := d.o.Settings(ctx, t.id)
	if err != nil {
		d.o.Log.Warn("detect: loading a tenant's detection settings; keeping the previous ones", "tenant", t.id, "err", err)
		return
	}
	t.settings.Store(&s)
	t.loaded.Store(d.o.Clock().UnixNano())
}

func (d *Detector) reloadStale(ctx context.Context, now time.Time) {
	d.tenants.Range(func(_, v any) bool {
		t := v.(*tenant)
		if now.UnixNano()-t.loaded.Load() >= int64(d.o.Reload) {
			go d.load(ctx, t)
		}
		return true
	})
}

// Reload reads a tenant's settings again now (after they changed).
func (d *Detector) Reload(ctx context.Context, tenantID string) {
	if v, ok := d.tenants.Load(tenantID); ok {
		d.load(ctx, v.(*tenant))
	}
}

// ---- devices ----

func (d *Detector) shard(deviceID string) *shard {
	var h uint32 = 2166136261
	for i := 0; i < len(deviceID); i++ {
		h = (h ^ uint32(deviceID[i])) * 16777619
	}
	return &d.shards[h%uint32(len(d.shards))]
}

// Device returns the state of a device (made on first use), loading its
// tenant's settings first if this node has not read them yet. The broker
// calls it once per connection and keeps the result. The device's saved
// state is read in the background (it learns until it arrives): on first
// use, and again when this node has nothing unsaved about it, since the
// device may have been connected to another node meanwhile.
func (d *Detector) Device(ctx context.Context, tenantID, deviceID string) *Device {
	return d.device(ctx, tenantID, deviceID, true, true)
}

func (d *Detector) device(ctx context.Context, tenantID, deviceID string, wait, connect bool) *Device {
	t := d.tenant(ctx, tenantID, wait)
	sh := d.shard(deviceID)
	sh.mu.Lock()
	dv := sh.devices[deviceID]
	fresh := dv == nil || dv.tenantID != tenantID // a device moved to another tenant starts afresh
	if fresh {
		dv = &Device{d: d, tenantID: tenantID, deviceID: deviceID, t: t, loaded: d.o.Load == nil}
		sh.devices[deviceID] = dv
	}
	sh.mu.Unlock()
	if fresh || connect {
		d.queueLoad(dv)
	}
	return dv
}

// AuthFailure counts a refused connection of a known device.
func (d *Detector) AuthFailure(tenantID, deviceID string) {
	if tenantID == "" || deviceID == "" {
		return
	}
	dv := d.device(context.Background(), tenantID, deviceID, false, false)
	now := d.o.Clock()
	s := dv.settings()
	dv.mu.Lock()
	defer dv.mu.Unlock()
	dv.touch(now)
	n := dv.authFails.add(now, 1, 50*time.Second)
	dv.check(now, model.AlarmAuthFailures, s.AuthFailuresPer5Min > 0 && n > int64(s.AuthFailuresPer5Min),
		"more than %d authentication failures in 5 minutes", s.AuthFailuresPer5Min,
		func() map[string]any {
			return map[string]any{"window": "5m", "auth_failures": n, "threshold": s.AuthFailuresPer5Min}
		})
}

// Firing reports whether a kind is firing for a device on this node.
func (d *Detector) Firing(deviceID string, kind model.AlarmKind) bool {
	sh := d.shard(deviceID)
	sh.mu.Lock()
	dv := sh.devices[deviceID]
	sh.mu.Unlock()
	if dv == nil {
		return false
	}
	dv.mu.Lock()
	defer dv.mu.Unlock()
	_, ok := dv.firing[kind]
	return ok
}

// Adopt takes over open alarms (from the store, at start): they clear once
// their metric is normal for the clear window, as if raised here.
func (d *Detector) Adopt(alarms []model.Alarm) {
	now := d.o.Clock()
	for _, a := range alarms {
		dv := d.device(context.Background(), a.TenantID, a.DeviceID, true, false)
		dv.mu.Lock()
		if dv.firing == nil {
			dv.firing = map[model.AlarmKind]*firing{}
		}
		if _, ok := dv.firing[a.Kind]; !ok {
			dv.firing[a.Kind] = &firing{since: a.FirstRaised, raised: now}
		}
		d.firing.Store(dv, struct{}{})
		dv.mu.Unlock()
	}
}

// sweep clears kinds whose metric was normal for the clear window.
func (d *Detector) sweep(now time.Time) {
	d.firing.Range(func(k, _ any) bool {
		k.(*Device).sweep(now)
		return true
	})
}

// idleEvict: devices without activity this long (and nothing firing) are
// forgotten; their saved state is read again when they come back. One with
// unsaved changes stays until the save that follows (Run) has written them.
const idleEvict = 6 * time.Hour

func (d *Detector) evict(now time.Time) {
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		for id, dv := range sh.devices {
			dv.mu.Lock()
			idle := now.Sub(dv.last) > idleEvict && len(dv.firing) == 0 && !dv.dirty && !dv.loading
			dv.mu.Unlock()
			if idle {
				delete(sh.devices, id)
			}
		}
		sh.mu.Unlock()
	}
}

// Devices counts the devices this node keeps state for.
func (d *Detector) Devices() int {
	n := 0
	for i := range d.shards {
		d.shards[i].mu.Lock()
		n += len(d.shards[i].devices)
		d.shards[i].mu.Unlock()
	}
	return n
}

// ---- windows and baselines ----

// window counts events in 6 buckets of a fixed width: its sum covers the
// last 5 to 6 widths.
type window struct {
	head int64 // index of the newest bucket (time / width)
	b    [6]int64
}

func (w *window) roll(now time.Time, width time.Duration) {
	idx := now.UnixNano() / int64(width)
	if idx <= w.head {
		return
	}
	if idx-w.head >= int64(len(w.b)) {
		w.b = [6]int64{}
	} else {
		for i := w.head + 1; i <= idx; i++ {
			w.b[i%int64(len(w.b))] = 0
		}
	}
	w.head = idx
}

func (w *window) add(now time.Time, n int64, width time.Duration) int64 {
	w.roll(now, width)
	w.b[w.head%int64(len(w.b))] += n
	return w.sum()
}

func (w *window) value(now time.Time, width time.Duration) int64 {
	w.roll(now, width)
	return w.sum()
}

func (w *window) sum() int64 {
	var s int64
	for _, v := range w.b {
		s += v
	}
	return s
}

// baseline is an exponentially weighted mean and variance.
type baseline struct {
	n          int
	mean, var_ float64
}

const alpha = 0.1

func (b *baseline) add(x float64) {
	if b.n == 0 {
		b.mean, b.var_ = x, 0
	} else {
		diff := x - b.mean
		b.mean += alpha * diff
		b.var_ = (1 - alpha) * (b.var_ + alpha*diff*diff)
	}
	b.n++
}

func (b *baseline) stddev() float64 { return math.Sqrt(b.var_) }

// limit is mean + sigma·stddev, at least floor.
func (b *baseline) limit(sigma float64, floor int) float64 {
	return math.Max(float64(floor), b.mean+sigma*b.stddev())
}
