package identity

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// RevokeCertificate revokes one of the tenant's certificates with a reason.
// The device is cut off at once on this node (the authenticator's cache is
// updated before this returns) and on every node when the
// certificate.revoked event arrives; the CRL lists it from now on.
func (s *Service) RevokeCertificate(ctx context.Context, p *authz.Principal, tenantID, serial string, reason model.RevocationReason, note string) (*model.Certificate, error) {
	if reason == "" {
		reason = model.ReasonUnspecified
	}
	if !reason.Valid() {
		names := make([]string, 0, 6)
		for _, r := range model.RevocationReasons() {
			names = append(names, string(r))
		}
		return nil, invalidField("reason", "%q is not a revocation reason; use one of %s", reason, strings.Join(names, ", "))
	}
	if err := checkText("note", note, 1024); err != nil {
		return nil, err
	}
	serial = strings.ToLower(serial)
	var rec *model.Certificate
	err := s.st.Update(ctx, func(tx store.Tx) error {
		var err error
		rec, err = s.revokeTx(ctx, tx, tenantID, serial, reason, actorOf(p), note)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.revoked(rec)
	return rec, nil
}

func (s *Service) revokeTx(ctx context.Context, tx store.Tx, tenantID, serial string, reason model.RevocationReason, actor, note string) (*model.Certificate, error) {
	now := s.now()
	if err := tx.RevokeCertificate(ctx, tenantID, serial, now, reason, actor); err != nil {
		if errors.Is(err, store.ErrStale) {
			c, _ := tx.GetCertificate(ctx, tenantID, serial)
			at := ""
			if c != nil && c.RevokedAt != nil {
				at = " at " + c.RevokedAt.Format(time.RFC3339) + " (" + string(c.RevocationReason) + ")"
			}
			return nil, refuse(KindConflict, ReasonAlreadyRevoked, "certificate %s was already revoked%s", serial, at)
		}
		return nil, orNotFound(err, "certificate", serial)
	}
	rec, err := tx.GetCertificate(ctx, tenantID, serial)
	if err != nil {
		return nil, err
	}
	summary := map[string]any{"serial": serial, "reason": reason}
	if note != "" {
		summary["note"] = note
	}
	err = s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actor, Action: "certificate.revoke", Target: rec.DeviceID, Summary: summary},
		EventCertificateRevoked, rec.DeviceID, map[string]any{"device_id": rec.DeviceID, "serial": serial, "reason": reason})
	return rec, err
}

// revoked updates this node's caches after a committed revocation.
func (s *Service) revoked(rec *model.Certificate) {
	s.auth.markRevoked(rec.Serial)
	s.markCRLDirty()
	s.auth.cutOff(CutOff{TenantID: rec.TenantID, DeviceID: rec.DeviceID, CertSerial: rec.Serial,
		Reason: "certificate revoked (" + string(rec.RevocationReason) + ")"})
}

func (s *Service) markCRLDirty() {
	s.crlMu.Lock()
	s.crlDirty = true
	s.crlMu.Unlock()
}

// CRL returns the current DER certificate revocation list of the issuing
// CA. It is rebuilt after a revocation (on any node) and at least hourly,
// and is valid for a day.
func (s *Service) CRL(ctx context.Context) ([]byte, error) {
	s.crlMu.Lock()
	defer s.crlMu.Unlock()
	now := s.opt.Now()
	if s.crl != nil && !s.crlDirty && now.Sub(s.crlAt) < crlRefresh {
		return s.crl, nil
	}
	list, err := s.st.RevokedCertificates(ctx, now)
	if err != nil {
		return nil, err
	}
	// CRL numbers must grow; milliseconds do across restarts and nodes.
	der, err := s.ca.CRL(list, big.NewInt(now.UnixMilli()), now, crlValidity)
	if err != nil {
		return nil, refuse(KindUnavailable, ReasonCRLUnavailable, "the issuing CA cannot sign a CRL: %v", err)
	}
	s.crl, s.crlAt, s.crlDirty = der, now, false
	return der, nil
}

// HandleEvent reacts to lifecycle events: a decommissioned device loses
// its identity (certificates revoked as cessation of operation, device
// token revoked). It is idempotent, for an at-least-once consumer.
func (s *Service) HandleEvent(ctx context.Context, ev model.Event) error {
	if ev.Type != EventDeviceStateChanged {
		return nil
	}
	var data struct {
		DeviceID string      `json:"device_id"`
		To       model.State `json:"to"`
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil || data.To != model.StateDecommissioned || data.DeviceID == "" {
		return nil
	}
	return s.RetireIdentity(ctx, ev.TenantID, data.DeviceID)
}

// RetireIdentity revokes every live certificate and the token of a
// decommissioned device.
func (s *Service) RetireIdentity(ctx context.Context, tenantID, deviceID string) error {
	_, _, err := s.RetireIdentityCounted(ctx, tenantID, deviceID)
	return err
}
