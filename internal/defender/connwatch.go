package defender

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// ConnWatch turns the broker's connection events of this node
// (device.auth_failed, device.connected) into connection observations for
// the connection checks. Observe only updates counters in memory; Run
// writes them in one batch per interval, so a reconnect storm costs one
// small upsert per device and hour, not one write per attempt, and the
// broker's message path is not involved at all.
type ConnWatch struct {
	st  store.ConnectionRecorder
	log *slog.Logger

	mu      sync.Mutex
	pending map[obsKey]*model.ConnectionObservation
	dropped int
}

type obsKey struct {
	tenant, device, kind, key string
	hour                      int64
}

// maxPending bounds the counters kept between two flushes.
const maxPending = 50_000

// NewConnWatch returns a watch writing to st.
func NewConnWatch(st store.ConnectionRecorder, log *slog.Logger) *ConnWatch {
	if log == nil {
		log = slog.Default()
	}
	return &ConnWatch{st: st, log: log, pending: map[obsKey]*model.ConnectionObservation{}}
}

// Observe takes one connection event (other events are ignored). It does
// not block on the database.
func (w *ConnWatch) Observe(ev model.Event) {
	if ev.TenantID == "" {
		return // nobody known to charge it to
	}
	var d struct {
		DeviceID     string `json:"device_id"`
		ClientID     string `json:"client_id"`
		Reason       string `json:"reason"`
		Code         int    `json:"code"`
		CertSerial   string `json:"cert_serial"`
		Method       string `json:"method"`
		Remote       string `json:"remote"`
		TookOverFrom string `json:"took_over_from"`
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil || d.DeviceID == "" {
		return
	}
	switch ev.Type {
	case "device.auth_failed":
		switch {
		case d.CertSerial != "" && strings.HasPrefix(d.Reason, "certificate revoked"):
			w.add(ev, d.DeviceID, model.ObsRevokedCert, d.CertSerial, map[string]any{"remote": d.Remote, "client_id": d.ClientID})
		case d.Code == 0x85 && d.ClientID != d.DeviceID:
			key := d.ClientID
			if len(key) > 128 {
				key = key[:128]
			}
			w.add(ev, d.DeviceID, model.ObsClientIDMismatch, key, map[string]any{"remote": d.Remote})
		}
	case "device.connected":
		if d.TookOverFrom != "" {
			w.add(ev, d.DeviceID, model.ObsTakeover, "", map[string]any{"remote": d.Remote, "took_over_from": d.TookOverFrom})
		}
		if d.Method == "token" {
			w.add(ev, d.DeviceID, model.ObsTokenAuth, "", map[string]any{"remote": d.Remote})
		}
	}
}

func (w *ConnWatch) add(ev model.Event, device, kind, key string, detail map[string]any) {
	at := ev.Time.UTC()
	hour := at.Truncate(time.Hour)
	k := obsKey{ev.TenantID, device, kind, key, hour.UnixMicro()}
	raw, _ := json.Marshal(detail)
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.pending[k]
	if o == nil {
		if len(w.pending) >= maxPending {
			w.dropped++
			return
		}
		o = &model.ConnectionObservation{TenantID: ev.TenantID, DeviceID: device, Kind: kind, Key: key, Hour: hour, FirstSeen: at}
		w.pending[k] = o
	}
	o.Count++
	if at.After(o.LastSeen) {
		o.LastSeen, o.Detail = at, raw
	}
	if at.Before(o.FirstSeen) {
		o.FirstSeen = at
	}
}

// Flush writes what was observed since the last flush. On failure the
// observations are kept for the next one.
func (w *ConnWatch) Flush(ctx context.Context) error {
	w.mu.Lock()
	batch := make([]model.ConnectionObservation, 0, len(w.pending))
	for _, o := range w.pending {
		batch = append(batch, *o)
	}
	w.pending = map[obsKey]*model.ConnectionObservation{}
	dropped := w.dropped
	w.dropped = 0
	w.mu.Unlock()
	if dropped > 0 {
		w.log.Warn("connection observations dropped: too many between two flushes", "dropped", dropped)
	}
	if err := w.st.RecordConnections(ctx, batch); err != nil {
		w.mu.Lock()
		for _, o := range batch {
			k := obsKey{o.TenantID, o.DeviceID, o.Kind, o.Key, o.Hour.UnixMicro()}
			if p := w.pending[k]; p != nil {
				p.Count += o.Count
				p.FirstSeen = minTime(p.FirstSeen, o.FirstSeen)
			} else if len(w.pending) < maxPending {
				oc := o
				w.pending[k] = &oc
			}
		}
		w.mu.Unlock()
		return err
	}
	return nil
}

// Run flushes every interval until ctx ends, then once more.
func (w *ConnWatch) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := w.Flush(fctx); err != nil {
				w.log.Warn("writing connection observations at shutdown", "err", err)
			}
			cancel()
			return
		case <-t.C:
			if err := w.Flush(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("writing connection observations", "err", err)
			}
		}
	}
}
