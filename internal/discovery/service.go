package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/discovery/oui"
	"github.com/steward-iot/steward/internal/identity"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/registry"
	"github.com/steward-iot/steward/internal/store"
)

// Events.
const (
	EventDiscovered = "neighbour.discovered"
	EventKnown      = "neighbour.known"
	EventAdopted    = "neighbour.adopted"
)

// maxEvents caps the per-neighbour events of one report.
const maxEvents = 50

// Service keeps the tenant's unmanaged neighbours.
type Service struct {
	st       store.Store
	registry *registry.Service
	identity *identity.Service
	now      func() time.Time
}

// New returns the service; registry and identity are needed to adopt.
func New(st store.Store, reg *registry.Service, id *identity.Service) *Service {
	return &Service{st: st, registry: reg, identity: id, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// NeighbourReportResult says what a report changed.
type NeighbourReportResult struct {
	Received  int      `json:"received"`
	Managed   int      `json:"managed" doc:"Entries that are managed devices of the tenant (skipped)."`
	New       int      `json:"new"`
	Refreshed int      `json:"refreshed"`
	NewMACs   []string `json:"new_macs,omitempty"`
}

// ReportPayload parses and stores a report published by a device.
func (s *Service) ReportPayload(ctx context.Context, tenantID, deviceID string, payload []byte) (*NeighbourReportResult, error) {
	r, err := ParseReport(payload)
	if err != nil {
		return nil, err
	}
	return s.Report(ctx, "device:"+deviceID, tenantID, deviceID, r)
}

// Report stores what the device deviceID saw. Entries that are managed
// devices of the tenant (a device with that "mac" attribute, the reporter
// included) are skipped. New neighbours are audited and raise
// neighbour.discovered; neighbours seen again only move their last seen
// (observations, not changes of record).
func (s *Service) Report(ctx context.Context, actor, tenantID, deviceID string, r *NeighbourReport) (*NeighbourReportResult, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	res := &NeighbourReportResult{Received: len(r.Neighbours)}
	now := s.now()
	err := s.st.Update(ctx, func(tx store.Tx) error {
		*res = NeighbourReportResult{Received: len(r.Neighbours)}
		d, err := tx.GetDevice(ctx, tenantID, deviceID)
		if err != nil {
			return err
		}
		if d.State == model.StateDecommissioned {
			return &InvalidError{Field: "device", Message: fmt.Sprintf("device %s is decommissioned", deviceID)}
		}
		macs := make([]string, len(r.Neighbours))
		for i, n := range r.Neighbours {
			macs[i] = n.MAC
		}
		managed, err := tx.ManagedMACs(ctx, tenantID, macs)
		if err != nil {
			return err
		}
		site := d.Attributes["site"]
		var put []model.Neighbour
		var fresh []model.Neighbour
		for _, n := range r.Neighbours {
			if _, ok := managed[n.MAC]; ok {
				res.Managed++
				continue
			}
			nb := model.Neighbour{TenantID: tenantID, MAC: n.MAC, Site: site, IP: n.IP, Hostname: n.Hostname,
				Sources: strings.Split(n.Source, ","), Services: n.Services, Vendor: oui.Vendor(n.MAC), ReportedBy: deviceID,
				FirstSeen: now, LastSeen: now, Status: model.NeighbourUnmanaged}
			if nb.Services == nil {
				nb.Services = []string{}
			}
			_, err := tx.GetNeighbour(ctx, tenantID, n.MAC)
			switch {
			case errors.Is(err, store.ErrNotFound):
				res.New++
				res.NewMACs = append(res.NewMACs, n.MAC)
				fresh = append(fresh, nb)
			case err != nil:
				return err
			default:
				res.Refreshed++
			}
			put = append(put, nb)
		}
		if err := tx.PutNeighbours(ctx, tenantID, put); err != nil {
			return err
		}
		if len(fresh) == 0 {
			return nil
		}
		if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: "neighbours.discover", Target: deviceID,
			Summary: map[string]any{"new": res.NewMACs, "site": site}}); err != nil {
			return err
		}
		for i, nb := range fresh {
			if i == maxEvents {
				break
			}
			if err := emit(ctx, tx, tenantID, EventDiscovered, nb.MAC, now, nb); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// List pages the tenant's neighbours by MAC.
func (s *Service) List(ctx context.Context, tenantID string, q model.NeighbourQuery, o store.ListOptions) ([]model.Neighbour, string, error) {
	if q.Status != "" && !q.Status.Valid() {
		return nil, "", &InvalidError{Field: "status", Message: fmt.Sprintf("%q: one of unmanaged, known, adopted", q.Status)}
	}
	return s.st.ListNeighbours(ctx, tenantID, q, o)
}

// MarkKnown records that the tenant knows the neighbour (a printer, a
// phone) and does not mean to manage it.
func (s *Service) MarkKnown(ctx context.Context, p *authz.Principal, tenantID, mac, note string) (*model.Neighbour, error) {
	mac, err := NormalizeMAC(mac)
	if err != nil {
		return nil, &InvalidError{Field: "mac", Message: err.Error()}
	}
	note = strings.TrimSpace(note)
	if len(note) > 1024 || !printable(note) {
		return nil, &InvalidError{Field: "note", Message: "at most 1024 printable characters"}
	}
	var out *model.Neighbour
	err = s.st.Update(ctx, func(tx store.Tx) error {
		old, err := tx.GetNeighbour(ctx, tenantID, mac)
		if err != nil {
			return fmt.Errorf("%w: neighbour %s", err, mac)
		}
		if old.Status == model.NeighbourAdopted {
			return &ConflictError{fmt.Sprintf("neighbour %s was adopted as device %s", mac, old.DeviceID)}
		}
		if err := tx.SetNeighbourStatus(ctx, tenantID, mac, model.NeighbourKnown, note, "", p.Actor(), s.now()); err != nil {
			return err
		}
		if out, err = tx.GetNeighbour(ctx, tenantID, mac); err != nil {
			return err
		}
		if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "neighbour.mark_known", Target: mac,
			Summary: map[string]any{"note": note, "was": old.Status}}); err != nil {
			return err
		}
		return emit(ctx, tx, tenantID, EventKnown, mac, s.now(), out)
	})
	return out, err
}

// AdoptInput registers a neighbour as a device.
type AdoptInput struct {
	ProductID string
	Serial    string // default: MAC-<12 hex digits>
	Name      string // default: its hostname
}

// Adopted is an adopted neighbour: the device record and its claim code
// (returned this once).
type Adopted struct {
	Neighbour *model.Neighbour `json:"neighbour"`
	Device    *model.Device    `json:"device"`
	ClaimCode string           `json:"claim_code" doc:"Returned once: claim the device with it (POST /claims), then the device enrolls with its serial and this code."`
}

// Adopt registers the neighbour as a manufactured device of the tenant
// (with its MAC as the "mac" attribute, so reports skip it from now on)
// and makes its claim code: the existing claim flow takes it from there.
func (s *Service) Adopt(ctx context.Context, p *authz.Principal, tenantID, mac string, in AdoptInput) (*Adopted, error) {
	mac, err := NormalizeMAC(mac)
	if err != nil {
		return nil, &InvalidError{Field: "mac", Message: err.Error()}
	}
	nb, err := s.st.GetNeighbour(ctx, tenantID, mac)
	if err != nil {
		return nil, fmt.Errorf("%w: neighbour %s", err, mac)
	}
	if nb.Status == model.NeighbourAdopted {
		return nil, &ConflictError{fmt.Sprintf("neighbour %s was already adopted as device %s", mac, nb.DeviceID)}
	}
	if in.Serial == "" {
		in.Serial = "MAC-" + strings.ToUpper(strings.ReplaceAll(mac, ":", ""))
	}
	if in.Name == "" && len(nb.Hostname) <= 128 {
		in.Name = nb.Hostname
	}
	d, err := s.registry.CreateDevice(ctx, p, tenantID, registry.DeviceInput{ProductID: in.ProductID, Serial: in.Serial,
		Name: in.Name, State: model.StateManufactured, Attributes: map[string]string{"mac": mac}})
	if err != nil {
		return nil, err
	}
	code, _, err := s.identity.CreateClaimCode(ctx, p, tenantID, d.ID)
	if err != nil {
		return nil, err
	}
	var out *model.Neighbour
	err = s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.SetNeighbourStatus(ctx, tenantID, mac, model.NeighbourAdopted, nb.Note, d.ID, p.Actor(), s.now()); err != nil {
			return err
		}
		if out, err = tx.GetNeighbour(ctx, tenantID, mac); err != nil {
			return err
		}
		if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "neighbour.adopt", Target: mac,
			Summary: map[string]any{"device_id": d.ID, "serial": d.Serial, "product_id": d.ProductID}}); err != nil {
			return err
		}
		return emit(ctx, tx, tenantID, EventAdopted, mac, s.now(), out)
	})
	if err != nil {
		return nil, err
	}
	return &Adopted{Neighbour: out, Device: d, ClaimCode: code}, nil
}

// ConflictError: the neighbour's status does not allow the change.
type ConflictError struct{ Message string }

func (e *ConflictError) Error() string { return e.Message }

func emit(ctx context.Context, tx store.Tx, tenantID, typ, subject string, at time.Time, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: typ, Subject: subject, Time: at, Data: b})
}
