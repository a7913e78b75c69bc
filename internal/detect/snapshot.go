package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// SnapshotVersion is the version of Snapshot this code writes and reads; a
// saved state of another version is ignored and the device learns afresh.
const SnapshotVersion = 1

// Snapshot is a device's learned state, saved so that a restart of the node
// or a move of the device to another node does not start learning again:
// the rate and process-count baselines, the learned sets and when learning
// started. Sliding windows are not in it (they are minutes long), nor are
// firing alarms (they are in the store and taken over by Adopt).
type Snapshot struct {
	Version int `json:"version"`
	// First is when learning started.
	First     time.Time `json:"first"`
	Messages  Baseline  `json:"messages"`
	Bytes     Baseline  `json:"bytes"`
	Processes Baseline  `json:"processes"`
	Sources   []string  `json:"sources"`
	Ports     []string  `json:"ports"`
	Outbound  []string  `json:"outbound"`
	// Reported: a report has seeded the ports and destinations.
	Reported bool `json:"reported"`
}

// Baseline is an exponentially weighted mean and variance over N readings.
type Baseline struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	Var  float64 `json:"var"`
}

// Saved is a device's encoded Snapshot, as Options.Save stores it.
type Saved struct {
	TenantID string
	DeviceID string
	Doc      []byte
}

// Limits of a saved state: a document far larger than the capped sets
// allow, or an entry longer than any key, is not ours.
const (
	maxSnapshotDoc = 1 << 20
	maxKeyLen      = 300
)

// DecodeSnapshot reads a saved state and checks it: a known version, a
// start of learning not in the future, finite non-negative baselines,
// sets within their caps. An error says what is wrong.
func DecodeSnapshot(data []byte, now time.Time) (*Snapshot, error) {
	if len(data) > maxSnapshotDoc {
		return nil, fmt.Errorf("%d bytes, at most %d", len(data), maxSnapshotDoc)
	}
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field == "version" {
			return nil, errors.New("version: must be a number")
		}
		return nil, errors.New("not a JSON object")
	}
	if v.Version == nil {
		return nil, errors.New("no version")
	}
	if *v.Version != SnapshotVersion {
		return nil, fmt.Errorf("version %d is unknown (this node reads %d)", *v.Version, SnapshotVersion)
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return nil, fmt.Errorf("%s: must be %s", ute.Field, jsonKind(ute.Type.String()))
		}
		return nil, fmt.Errorf("malformed: %v", err)
	}
	// The nodes' clocks may differ a little.
	if s.First.IsZero() || s.First.After(now.Add(time.Hour)) {
		return nil, fmt.Errorf("first: %s is not a time learning can have started", s.First.Format(time.RFC3339))
	}
	for _, b := range []struct {
		name string
		b    Baseline
	}{{"messages", s.Messages}, {"bytes", s.Bytes}, {"processes", s.Processes}} {
		if b.b.N < 0 || !finite(b.b.Mean) || !finite(b.b.Var) || b.b.Mean < 0 || b.b.Var < 0 {
			return nil, fmt.Errorf("%s: n, mean and var must be finite and not negative", b.name)
		}
	}
	for _, set := range []struct {
		name string
		keys []string
	}{{"sources", s.Sources}, {"ports", s.Ports}, {"outbound", s.Outbound}} {
		if len(set.keys) > maxKnown {
			return nil, fmt.Errorf("%s: %d entries, at most %d", set.name, len(set.keys), maxKnown)
		}
		for i, k := range set.keys {
			if k == "" || len(k) > maxKeyLen {
				return nil, fmt.Errorf("%s[%d]: empty or longer than %d bytes", set.name, i, maxKeyLen)
			}
		}
	}
	return &s, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func (b baseline) export() Baseline   { return Baseline{N: b.n, Mean: b.mean, Var: b.var_} }
func (b Baseline) internal() baseline { return baseline{n: b.N, mean: b.Mean, var_: b.Var} }

// ---- the device's side (dv.mu held) ----

// changed records that the learned state moved on since it was saved.
func (dv *Device) changed() {
	if !dv.dirty && dv.d.o.Save != nil {
		dv.dirty = true
		dv.d.dirty.Store(dv, struct{}{})
	}
}

func (dv *Device) saved() {
	dv.dirty = false
	dv.d.dirty.Delete(dv)
}

// learned notes a key added to a learned set before the saved state
// arrived (see merge).
func (dv *Device) learned(pend *[]string, key string) {
	dv.changed()
	if !dv.loaded && len(*pend) < maxKnown {
		*pend = append(*pend, key)
	}
}

func (dv *Device) snapshot() Snapshot {
	return Snapshot{Version: SnapshotVersion, First: dv.first, Messages: dv.msgBase.export(), Bytes: dv.byteBase.export(),
		Processes: dv.procBase.export(), Sources: keysOf(dv.sources), Ports: keysOf(dv.ports), Outbound: keysOf(dv.outbound),
		Reported: dv.reported}
}

// merge takes the saved state over (nil: none was saved or it was bad; the
// device goes on learning from what it has). Baselines and the start of
// learning are the saved ones, the sets are the union. On the first load,
// what the device did while the state was on its way was taken as learning
// only because the device looked new: if the saved state is past learning,
// source addresses it did not know count as new now, and ports and
// destinations it did not know are dropped from the sets, so the next
// report raises them.
func (dv *Device) merge(snap *Snapshot, now time.Time, s *model.DetectionSettings) {
	first := !dv.loaded
	pend := dv.pend
	dv.loaded, dv.loadFailed, dv.pend = true, false, pending{}
	if snap == nil {
		return
	}
	dv.first = snap.First
	dv.msgBase, dv.byteBase, dv.procBase = snap.Messages.internal(), snap.Bytes.internal(), snap.Processes.internal()
	changed := dv.reported && !snap.Reported
	settled := first && !dv.learning(now, s)
	if !settled || !snap.Reported {
		pend.ports, pend.outbound = nil, nil
	}
	changed = mergeSet(&dv.ports, snap.Ports, pend.ports) || changed
	changed = mergeSet(&dv.outbound, snap.Outbound, pend.outbound) || changed
	var fresh []string
	if settled && len(snap.Sources) > 0 {
		for _, a := range pend.sources {
			if !slices.Contains(snap.Sources, a) {
				fresh = append(fresh, a)
			}
		}
	}
	changed = mergeSet(&dv.sources, snap.Sources, nil) || changed
	dv.reported = dv.reported || snap.Reported
	// Before the first load only the start of learning can have changed
	// (it is the saved one now); on a reload, changes made meanwhile are
	// this node's to save.
	if changed || (!first && dv.dirty) {
		dv.changed()
	} else {
		dv.saved()
	}
	for _, a := range fresh {
		dv.newSource(now, s, a)
	}
}

// mergeSet makes *set the saved keys and then its own, less drop, within
// the cap; it reports whether that is more than the saved keys.
func mergeSet(set *map[string]struct{}, saved, drop []string) bool {
	own := *set
	m := make(map[string]struct{}, len(saved)+len(own))
	for _, k := range saved {
		if len(m) < maxKnown {
			m[k] = struct{}{}
		}
	}
	n := len(m)
	for k := range own {
		if _, ok := m[k]; !ok && len(m) < maxKnown && !slices.Contains(drop, k) {
			m[k] = struct{}{}
		}
	}
	*set = m
	return len(m) > n
}

// ---- loading ----

// maxLoaders bounds the loads running at once (a node starting up sees its
// devices reconnect together).
const maxLoaders = 8

// pending are the keys learned before the saved state arrived.
type pending struct{ sources, ports, outbound []string }

// queueLoad reads the device's saved state in the background: on its first
// use on this node, and again on a new connection while this node has
// nothing unsaved (another node may have saved since).
func (d *Detector) queueLoad(dv *Device) {
	if d.o.Load == nil || d.stopped.Load() {
		return
	}
	dv.mu.Lock()
	skip := dv.loading || (dv.loaded && dv.dirty)
	if !skip {
		dv.loading = true
	}
	dv.mu.Unlock()
	if skip {
		return
	}
	d.loadWG.Add(1)
	d.loadMu.Lock()
	d.loadQ = append(d.loadQ, dv)
	if d.loaders < maxLoaders {
		d.loaders++
		go d.loadWorker()
	}
	d.loadMu.Unlock()
}

func (d *Detector) loadWorker() {
	for {
		d.loadMu.Lock()
		if len(d.loadQ) == 0 {
			d.loaders--
			d.loadMu.Unlock()
			return
		}
		dv := d.loadQ[0]
		d.loadQ[0] = nil
		d.loadQ = d.loadQ[1:]
		d.loadMu.Unlock()
		d.load1(dv)
		d.loadWG.Done()
	}
}

func (d *Detector) load1(dv *Device) {
	if d.stopped.Load() { // shutting down: the store may be closing
		dv.mu.Lock()
		dv.loading = false
		dv.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	doc, err := d.o.Load(ctx, dv.tenantID, dv.deviceID)
	cancel()
	now := d.o.Clock()
	var snap *Snapshot
	if err != nil {
		d.o.Log.Warn("detect: loading a device's saved baselines; it learns for now and loading is tried again",
			"tenant", dv.tenantID, "device", dv.deviceID, "err", err)
	} else if doc != nil {
		if snap, err = DecodeSnapshot(doc, now); err != nil {
			d.o.Log.Warn("detect: ignoring a device's saved baselines; it learns afresh",
				"tenant", dv.tenantID, "device", dv.deviceID, "err", err)
			snap, err = nil, nil
		}
	}
	s := dv.settings()
	dv.mu.Lock()
	defer dv.mu.Unlock()
	dv.loading = false
	if err != nil {
		dv.loadFailed = !dv.loaded
		return
	}
	dv.merge(snap, now, &s)
}

// ---- saving ----

// saveBatch bounds one Save call.
const saveBatch = 256

// flush saves the devices whose learned state changed, in batches; those
// whose saved state has not been read yet wait for it (and a failed read is
// tried again) so as not to overwrite it. A failed batch is tried again at
// the next flush.
func (d *Detector) flush(ctx context.Context) {
	if d.o.Save == nil {
		return
	}
	var batch []Saved
	var devs []*Device
	send := func() {
		if len(batch) == 0 {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := d.o.Save(sctx, batch)
		cancel()
		if err != nil {
			d.o.Log.Warn("detect: saving devices' baselines; trying again later", "devices", len(batch), "err", err)
			for _, dv := range devs {
				dv.mu.Lock()
				dv.changed()
				dv.mu.Unlock()
			}
		}
		batch, devs = nil, nil
	}
	d.dirty.Range(func(k, _ any) bool {
		dv := k.(*Device)
		var doc []byte
		var err error
		dv.mu.Lock()
		retry := false
		switch {
		case !dv.dirty:
			d.dirty.Delete(dv)
		case !dv.loaded:
			retry = dv.loadFailed && !dv.loading
		default:
			doc, err = json.Marshal(dv.snapshot())
			dv.saved()
		}
		dv.mu.Unlock()
		if retry {
			d.queueLoad(dv)
		}
		if err != nil {
			d.o.Log.Error("detect: encoding a device's baselines", "tenant", dv.tenantID, "device", dv.deviceID, "err", err)
		} else if doc != nil {
			batch, devs = append(batch, Saved{TenantID: dv.tenantID, DeviceID: dv.deviceID, Doc: doc}), append(devs, dv)
			if len(batch) >= saveBatch {
				send()
			}
		}
		return ctx.Err() == nil
	})
	send()
}
