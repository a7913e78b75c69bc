// Package webhook delivers domain events to tenants' HTTPS endpoints.
// Each event a subscription matches becomes a delivery row; a sender posts
// it, signed with the subscription's secret, and retries with backoff until
// the endpoint answers 2xx or the attempts run out. Every attempt is kept
// in the delivery log.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/bus"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// Header names sent with each delivery.
const (
	SignatureHeader = "Steward-Signature" // t=<unix seconds>,v1=<hex HMAC-SHA256>
	EventIDHeader   = "Steward-Event-Id"
	EventTypeHeader = "Steward-Event-Type"
)

// Sign returns the signature header value for body at time t: the HMAC is
// over "<t>.<body>", so a receiver can refuse replays of old deliveries.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header as a receiver would: constant-time
// comparison and a freshness window.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("webhook signature: malformed header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook signature: timestamp outside the tolerance window")
	}
	want := Sign(secret, time.Unix(sec, 0), body)
	if !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return errors.New("webhook signature: mismatch")
	}
	return nil
}

// Matches reports whether a subscription's type list selects evType:
// empty = all, "device.*" = a family, otherwise exact.
func Matches(types []string, evType string) bool {
	if len(types) == 0 {
		return true
	}
	for _, t := range types {
		if t == evType || t == "*" {
			return true
		}
		if p, ok := strings.CutSuffix(t, ".*"); ok && strings.HasPrefix(evType, p+".") {
			return true
		}
	}
	return false
}

// Backoff is the wait before each retry; past its end a delivery fails.
var Backoff = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour}

// Dispatcher turns events into deliveries and sends them.
type Dispatcher struct {
	St      store.Store
	Bus     *bus.Bus
	Log     *slog.Logger
	Client  *http.Client
	Backoff []time.Duration
	// Poll is how often due deliveries are looked for.
	Poll time.Duration
	// Durable names the bus consumer; nodes sharing it share the work.
	Durable string
	kick    chan struct{}
}

// Run consumes events and sends deliveries until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.Client == nil {
		d.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if d.Backoff == nil {
		d.Backoff = Backoff
	}
	if d.Poll <= 0 {
		d.Poll = time.Second
	}
	if d.Durable == "" {
		d.Durable = "webhooks"
	}
	d.kick = make(chan struct{}, 1)
	stop, err := d.Bus.ConsumeEvents(ctx, d.Durable, d.enqueue)
	if err != nil {
		return err
	}
	defer stop()
	t := time.NewTicker(d.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.kick:
		}
		d.sendDue(ctx)
	}
}

// enqueue records one delivery per matching active subscription. It runs
// at least once per event; the store ignores a second copy.
func (d *Dispatcher) enqueue(ctx context.Context, ev model.Event) error {
	if ev.TenantID == "" {
		return nil
	}
	hooks, err := d.St.ListWebhooks(ctx, ev.TenantID)
	if err != nil {
		return err
	}
	var ds []model.WebhookDelivery
	var payload []byte
	for _, h := range hooks {
		if !h.Active || !Matches(h.Types, ev.Type) {
			continue
		}
		if payload == nil {
			if payload, err = json.Marshal(ev); err != nil {
				return err
			}
		}
		now := time.Now().UTC()
		ds = append(ds, model.WebhookDelivery{WebhookID: h.ID, TenantID: ev.TenantID, EventID: ev.ID, EventType: ev.Type,
			Payload: payload, Status: "pending", NextAttempt: &now, CreatedAt: now})
	}
	if len(ds) == 0 {
		return nil
	}
	if err := d.St.EnqueueDeliveries(ctx, ds); err != nil {
		return err
	}
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return nil
}

func (d *Dispatcher) sendDue(ctx context.Context) {
	due, err := d.St.DueDeliveries(ctx, time.Now().UTC(), 100)
	if err != nil {
		d.Log.Warn("webhooks: reading due deliveries", "err", err)
		return
	}
	for i := range due {
		if ctx.Err() != nil {
			return
		}
		d.attempt(ctx, &due[i])
	}
}

// ErrNoSecret: the webhook's signing secret, sealed in the database, does
// not open with this server's secrets key.
var ErrNoSecret = errors.New("the webhook's signing secret does not open with this server's secrets key " +
	"(data_dir/pki/secrets.key): restore the key it was sealed with, or delete the webhook and create it again")

func (d *Dispatcher) attempt(ctx context.Context, dl *model.WebhookDelivery) {
	h, err := d.St.GetWebhook(ctx, dl.TenantID, dl.WebhookID)
	if err != nil {
		dl.Status, dl.LastError = "failed", "subscription no longer exists"
		d.save(ctx, dl)
		return
	}
	if h.Secret == "" {
		// Never send unsigned: the receiver could not tell it from a forgery.
		dl.Status, dl.NextAttempt = "failed", nil
		dl.LastError = ErrNoSecret.Error()
		dl.UpdatedAt = time.Now().UTC()
		d.Log.Warn("webhook delivery refused", "webhook", h.ID, "event", dl.EventID, "err", ErrNoSecret)
		d.save(ctx, dl)
		return
	}
	code, err := d.post(ctx, h, dl)
	dl.Attempts++
	dl.LastCode = code
	dl.UpdatedAt = time.Now().UTC()
	if err == nil {
		dl.Status, dl.LastError, dl.NextAttempt = "delivered", "", nil
	} else {
		dl.LastError = err.Error()
		if dl.Attempts > len(d.Backoff) {
			dl.Status, dl.NextAttempt = "failed", nil
			d.Log.Warn("webhook delivery gave up", "webhook", h.ID, "event", dl.EventID, "attempts", dl.Attempts, "err", err)
		} else {
			next := dl.UpdatedAt.Add(d.Backoff[dl.Attempts-1])
			dl.NextAttempt = &next
		}
	}
	d.save(ctx, dl)
}

func (d *Dispatcher) save(ctx context.Context, dl *model.WebhookDelivery) {
	if err := d.St.UpdateDelivery(ctx, dl); err != nil {
		d.Log.Warn("webhooks: saving delivery", "id", dl.ID, "err", err)
	}
}

func (d *Dispatcher) post(ctx context.Context, h *model.Webhook, dl *model.WebhookDelivery) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(dl.Payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Steward-Webhooks/1")
	req.Header.Set(EventIDHeader, dl.EventID)
	req.Header.Set(EventTypeHeader, dl.EventType)
	req.Header.Set(SignatureHeader, Sign(h.Secret, time.Now(), dl.Payload))
	resp, err := d.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("endpoint answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}
