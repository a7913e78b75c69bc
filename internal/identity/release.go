package identity

import (
	"context"
	"errors"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// EventDeviceReleased: an owner handed a device back to its maker for the
// next owner (raised in the maker's tenant).
const EventDeviceReleased = "device.released"

// revokeAllTx revokes every live certificate and the token of a device
// inside tx; it returns what it revoked (for the caches after commit).
func (s *Service) revokeAllTx(ctx context.Context, tx store.Tx, tenantID, deviceID string, reason model.RevocationReason,
	actor, note string) (certs []*model.Certificate, tokenRevoked bool, err error) {
	now := s.now()
	cursor := ""
	for {
		page, next, err := tx.ListCertificates(ctx, tenantID, deviceID, store.ListOptions{Limit: 1000, Cursor: cursor})
		if err != nil {
			return nil, false, err
		}
		for _, c := range page {
			if c.Revoked() || !c.NotAfter.After(now) {
				continue
			}
			rec, err := s.revokeTx(ctx, tx, tenantID, c.Serial, reason, actor, note)
			var ie *Error
			if errors.As(err, &ie) && ie.Reason == ReasonAlreadyRevoked {
				continue // revoked concurrently (the decommission event's handler)
			}
			if err != nil {
				return nil, false, err
			}
			certs = append(certs, rec)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if t, err := tx.DeviceToken(ctx, deviceID); err == nil && t.TenantID == tenantID && t.RevokedAt == nil {
		if err := tx.RevokeDeviceToken(ctx, tenantID, deviceID, now); errors.Is(err, store.ErrNotFound) {
			return certs, false, nil // revoked concurrently
		} else if err != nil {
			return nil, false, err
		}
		tokenRevoked = true
		if err := s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actor, Action: "device_token.revoke", Target: deviceID,
			Summary: map[string]any{"note": note}}, EventDeviceTokenRevoked, deviceID, map[string]string{"device_id": deviceID}); err != nil {
			return nil, false, err
		}
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	return certs, tokenRevoked, nil
}

// afterRevokeAll updates this node's caches once revokeAllTx committed.
func (s *Service) afterRevokeAll(deviceID string, certs []*model.Certificate, tokenRevoked bool) {
	for _, rec := range certs {
		s.revoked(rec)
	}
	if tokenRevoked {
		s.auth.forgetToken(deviceID)
	}
}

// Released is what releasing a device did.
type Released struct {
	Device              *model.Device          `json:"device"`
	MakerTenantID       string                 `json:"maker_tenant_id"`
	CertificatesRevoked int                    `json:"certificates_revoked"`
	TokenRevoked        bool                   `json:"token_revoked"`
	Erased              model.DeviceDataCounts `json:"erased"`
}

// Release hands a device its owner no longer keeps back to its maker, for
// the next owner: every certificate and the token are revoked, the
// owner's data about it (telemetry, commands, twin, findings, flows) is
// erased, its name, tags and attributes are cleared, and it moves to the
// tenant of its product's maker as manufactured, with a new one-time
// claim code. The code is returned once, to hand on with the device.
// The releasing tenant keeps its audit trail and the lifecycle history;
// its keys and users no longer reach the device, and the old identity no
// longer connects or enrolls.
func (s *Service) Release(ctx context.Context, p *authz.Principal, tenantID, deviceID, reason string) (string, *Released, error) {
	if err := checkText("reason", reason, 1024); err != nil {
		return "", nil, err
	}
	if reason == "" {
		reason = "released by its owner"
	}
	actor := actorOf(p)
	code := ids.Token(15)[:claimLookupLen+claimSecretLen]
	var out Released
	var certs []*model.Certificate
	err := s.st.Update(ctx, func(tx store.Tx) error {
		out = Released{}
		d, err := tx.GetDevice(ctx, tenantID, deviceID)
		if err != nil {
			return orNotFound(err, "device", deviceID)
		}
		switch d.State {
		case model.StateManufactured:
			return refuse(KindConflict, ReasonDeviceState, "device %s is manufactured: it has no owner to release it yet", deviceID)
		case model.StateDecommissioned:
			return refuse(KindConflict, ReasonDeviceState, "device %s is decommissioned: a retired device cannot be handed on", deviceID)
		case model.StateQuarantined:
			return refuse(KindConflict, ReasonDeviceState, "device %s is quarantined: lift the quarantine (or decommission it) before handing it on", deviceID)
		}
		prod, err := tx.DeviceProduct(ctx, tenantID, deviceID)
		if err != nil {
			return err
		}
		if prod.TenantID == tenantID {
			return refuse(KindConflict, ReasonConflict, "the product of device %s belongs to this tenant, so there is no maker to hand it back to; "+
				"decommission it instead, or register the product under its maker's tenant", deviceID)
		}
		maker := prod.TenantID
		out.MakerTenantID = maker
		var tokenRevoked bool
		certs, tokenRevoked, err = s.revokeAllTx(ctx, tx, tenantID, deviceID, model.ReasonAffiliationChanged, actor, "device released by its owner")
		if err != nil {
			return err
		}
		out.CertificatesRevoked, out.TokenRevoked = len(certs), tokenRevoked
		if out.Erased, err = tx.EraseDeviceData(ctx, tenantID, deviceID); err != nil {
			return err
		}
		// The owner's names for it are the owner's data too.
		d.Name, d.Tags, d.Attributes = "", nil, nil
		d.UpdatedAt = s.now()
		if err := tx.UpdateDevice(ctx, d); err != nil {
			return err
		}
		if d.State != model.StateClaimed {
			if err := s.transition(ctx, tx, tenantID, d, model.StateClaimed, actor, "ownership transfer: "+reason); err != nil {
				return err
			}
		}
		if err := s.transition(ctx, tx, tenantID, d, model.StateManufactured, actor, "released to its maker: "+reason); err != nil {
			return err
		}
		if err := tx.MoveDevice(ctx, tenantID, maker, deviceID); err != nil {
			return err
		}
		// The old identity's records stay with the old owner (the CRL and
		// the authenticator find them in any tenant).
		if err := tx.KeepRevokedCertificates(ctx, maker, tenantID, deviceID); err != nil {
			return err
		}
		if err := s.emit(ctx, tx, tenantID, model.AuditEntry{Actor: actor, Action: "device.release", Target: deviceID,
			Summary: map[string]any{"serial": d.Serial, "to_tenant": maker, "reason": reason, "certificates_revoked": len(certs),
				"token_revoked": tokenRevoked, "erased": out.Erased}},
			EventDeviceTransferred, deviceID, map[string]any{"device_id": deviceID, "serial": d.Serial, "reason": "released"}); err != nil {
			return err
		}
		c := &model.ClaimCode{Lookup: code[:claimLookupLen], Hash: hashSecret(code), TenantID: maker, DeviceID: deviceID,
			CreatedAt: s.now(), CreatedBy: actor}
		if err := tx.PutClaimCode(ctx, c); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return refuse(KindUnavailable, ReasonConflict, "drawing a new claim code collided with another; try again")
			}
			return err
		}
		if err := s.emit(ctx, tx, maker, model.AuditEntry{Actor: actor, Action: "device.released", Target: deviceID,
			Summary: map[string]any{"serial": d.Serial, "from_tenant": tenantID, "reason": reason, "claim_code": "new (not recorded)"}},
			EventDeviceReleased, deviceID, map[string]any{"device_id": deviceID, "serial": d.Serial, "product_id": d.ProductID}); err != nil {
			return err
		}
		if out.Device, err = tx.GetDevice(ctx, maker, deviceID); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	s.afterRevokeAll(deviceID, certs, out.TokenRevoked)
	s.auth.forgetDevice(deviceID)
	s.auth.cutOff(CutOff{TenantID: tenantID, DeviceID: deviceID, Reason: "released by its owner"})
	return FormatClaimCode(code), &out, nil
}

// RetireIdentityCounted is RetireIdentity that says how many certificates
// it revoked and whether it revoked the token (none on a second call).
func (s *Service) RetireIdentityCounted(ctx context.Context, tenantID, deviceID string) (int, bool, error) {
	const actor = "system:decommission"
	var certs []*model.Certificate
	tokenRevoked := false
	err := s.st.Update(ctx, func(tx store.Tx) error {
		certs, tokenRevoked = nil, false
		d, err := tx.GetDevice(ctx, tenantID, deviceID)
		if errors.Is(err, store.ErrNotFound) {
			return nil // deleted or moved on since
		}
		if err != nil {
			return err
		}
		if d.State != model.StateDecommissioned {
			return nil
		}
		certs, tokenRevoked, err = s.revokeAllTx(ctx, tx, tenantID, deviceID, model.ReasonCessationOfOperation, actor, "device decommissioned")
		return err
	})
	if err != nil {
		return 0, false, err
	}
	s.afterRevokeAll(deviceID, certs, tokenRevoked)
	if len(certs) > 0 || tokenRevoked {
		s.log.Info("decommissioned device's identity retired", "tenant", tenantID, "device", deviceID,
			"certificates_revoked", len(certs), "token_revoked", tokenRevoked)
	}
	return len(certs), tokenRevoked, nil
}

// SetMUDHook makes fn learn, after each enrollment, the MUD URL the
// device's new certificate carries (its product's, or its factory
// certificate's): the platform resolves it from the local MUD store. fn
// must not block. Call it before devices enroll.
func (s *Service) SetMUDHook(fn func(productTenant, productID, mudURL string)) { s.mudHook = fn }
