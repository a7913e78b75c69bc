package model

import "time"

// User is a person who signs in to the dashboard. Users belong to one
// tenant with one role, like API keys; platform admins belong to none.
type User struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id,omitempty"` // empty for platform users
	// Email is the sign-in name, stored lower-cased; unique platform-wide.
	Email string `json:"email"`
	Name  string `json:"name"`
	// PasswordHash is a PHC string ($argon2id$…); never serialised.
	PasswordHash string     `json:"-"`
	Role         Role       `json:"role"`
	CreatedAt    time.Time  `json:"created_at"`
	CreatedBy    string     `json:"created_by"`
	UpdatedAt    time.Time  `json:"updated_at"`
	DisabledAt   *time.Time `json:"disabled_at,omitempty"`
}

// Disabled reports whether the user may no longer sign in.
func (u *User) Disabled() bool { return u.DisabledAt != nil }

// Session is a signed-in browser. The cookie holds a random token; only
// its SHA-256 (ID) is stored, so a copy of the database opens no session.
type Session struct {
	ID     string `json:"-"` // hex SHA-256 of the cookie token
	UserID string `json:"user_id"`
	// TenantID is the user's tenant ("" for platform users).
	TenantID string `json:"tenant_id,omitempty"`
	// CSRF is the synchronizer token every form of this session carries.
	CSRF string `json:"-"`
	// ViewTenant is the tenant a platform admin is looking at ("" = the
	// platform itself); tenant users always act in their own tenant.
	ViewTenant string    `json:"view_tenant,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastSeen   time.Time `json:"last_seen"`
}
