// Package authz decides who may do what: API key format and checking, the
// role → permission table, and the principal a request acts as.
package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
)

// Permission is one kind of action on one kind of resource.
type Permission string

const (
	TenantsRead      Permission = "tenants:read"
	TenantsWrite     Permission = "tenants:write"
	ProductsRead     Permission = "products:read"
	ProductsWrite    Permission = "products:write"
	DevicesRead      Permission = "devices:read"
	DevicesWrite     Permission = "devices:write"
	DevicesLifecycle Permission = "devices:lifecycle"
	GroupsRead       Permission = "groups:read"
	GroupsWrite      Permission = "groups:write"
	KeysRead         Permission = "keys:read"
	KeysWrite        Permission = "keys:write"
	AuditRead        Permission = "audit:read"
	WebhooksRead     Permission = "webhooks:read"
	WebhooksWrite    Permission = "webhooks:write"
	EventsRead       Permission = "events:read"
	UsersRead        Permission = "users:read"
	UsersWrite       Permission = "users:write"
)

// grants is the whole role table. Platform admins hold everything.
var grants = map[model.Role][]Permission{
	model.RoleTenantAdmin: {TenantsRead, ProductsRead, ProductsWrite, DevicesRead, DevicesWrite, DevicesLifecycle,
		GroupsRead, GroupsWrite, KeysRead, KeysWrite, AuditRead, WebhooksRead, WebhooksWrite, EventsRead,
		UsersRead, UsersWrite},
	model.RoleOperator: {TenantsRead, ProductsRead, DevicesRead, DevicesWrite, DevicesLifecycle, GroupsRead,
		GroupsWrite, AuditRead, WebhooksRead, EventsRead},
	model.RoleViewer: {TenantsRead, ProductsRead, DevicesRead, GroupsRead, AuditRead, WebhooksRead, EventsRead},
	model.RoleVendor: {TenantsRead, ProductsRead, ProductsWrite, DevicesRead, DevicesWrite, GroupsRead, EventsRead},
}

// Allowed reports whether role r holds permission p.
func Allowed(r model.Role, p Permission) bool {
	if r == model.RolePlatformAdmin {
		return true
	}
	for _, g := range grants[r] {
		if g == p {
			return true
		}
	}
	return false
}

// Grants lists a role's permissions (for display and docs).
func Grants(r model.Role) []Permission {
	if r == model.RolePlatformAdmin {
		return []Permission{"*"}
	}
	return append([]Permission(nil), grants[r]...)
}

// Principal is who a request acts as.
type Principal struct {
	KeyID    string
	UserID   string // set when a signed-in user (dashboard session) acts
	TenantID string // the tenant the request acts in ("" for platform-wide calls)
	Role     model.Role
	Name     string
}

// Actor is how the principal is named in audit records.
func (p *Principal) Actor() string {
	if p == nil {
		return "system"
	}
	if p.UserID != "" {
		return "user:" + p.UserID
	}
	return "key:" + p.KeyID
}

// Platform reports whether the principal is a platform admin.
func (p *Principal) Platform() bool { return p != nil && p.Role == model.RolePlatformAdmin }

type ctxKey struct{}

// With attaches a principal to a context.
func With(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// From returns the context's principal, or nil.
func From(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}

// API keys look like stw_<12-char prefix>_<32-char secret>. The prefix is
// stored in clear to find the key (and shown in lists); only a SHA-256 of
// the whole key is kept. The secret has 160 random bits, so a fast hash is
// enough: there is nothing to guess.
const keyTag = "stw"

// NewKey returns a fresh key: the secret to show once and the stored form.
func NewKey(tenantID, name string, role model.Role, createdBy string, expires *time.Time) (secret string, k *model.APIKey) {
	prefix := ids.Token(8)[:12]
	secret = keyTag + "_" + prefix + "_" + ids.Token(20)
	sum := sha256.Sum256([]byte(secret))
	return secret, &model.APIKey{
		ID: ids.New("key"), TenantID: tenantID, Name: name, Prefix: prefix, Hash: sum[:], Role: role,
		CreatedAt: time.Now().UTC(), CreatedBy: createdBy, ExpiresAt: expires,
	}
}

// ErrBadKey is returned for any key that does not authenticate; the reason
// is deliberately not told to the caller.
var ErrBadKey = errors.New("invalid API key")

// ParseKey returns the lookup prefix of a presented key.
func ParseKey(presented string) (prefix string, err error) {
	parts := strings.Split(presented, "_")
	if len(parts) != 3 || parts[0] != keyTag || len(parts[1]) != 12 || len(parts[2]) != 32 {
		return "", ErrBadKey
	}
	return parts[1], nil
}

// CheckKey compares a presented key with the stored one in constant time
// and checks that it is neither revoked nor expired.
func CheckKey(presented string, k *model.APIKey, now time.Time) error {
	sum := sha256.Sum256([]byte(presented))
	if subtle.ConstantTimeCompare(sum[:], k.Hash) != 1 {
		return ErrBadKey
	}
	if k.RevokedAt != nil {
		return fmt.Errorf("%w: revoked", ErrBadKey)
	}
	if k.ExpiresAt != nil && now.After(*k.ExpiresAt) {
		return fmt.Errorf("%w: expired", ErrBadKey)
	}
	return nil
}
