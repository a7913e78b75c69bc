package store

import (
	"context"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// UserReader reads dashboard users. Like every tenant read it takes the
// tenant ID ("" = platform users), except the sign-in lookup by email,
// which is how a person's tenant is found.
type UserReader interface {
	GetUser(ctx context.Context, tenantID, id string) (*model.User, error)
	// GetUserByEmail finds a user of any tenant by lower-cased email.
	GetUserByEmail(ctx context.Context, email string) (*model.User, error)
	// ListUsers lists a tenant's users by ID; tenantID "" lists platform users.
	ListUsers(ctx context.Context, tenantID string, o ListOptions) ([]model.User, string, error)
}

// UserWriter changes users inside a transaction, beside the audit record.
type UserWriter interface {
	// CreateUser stores u; a taken email is a *ConflictError.
	CreateUser(ctx context.Context, u *model.User) error
	// UpdateUser writes u's name, role, password hash, disabled time and
	// updated time (the tenant and email never change).
	UpdateUser(ctx context.Context, u *model.User) error
	// DeleteUserSessions signs a user out everywhere except keepSessionID
	// ("" = everywhere) and returns how many sessions ended.
	DeleteUserSessions(ctx context.Context, tenantID, userID, keepSessionID string) (int64, error)
}

// Users is the store side of dashboard accounts: user reads, plus the
// sessions of signed-in browsers. Sessions change on every sign-in and are
// not audited, so they are written outside transactions, like last-used
// times of API keys.
type Users interface {
	UserReader

	CreateSession(ctx context.Context, s *model.Session) error
	// GetSession finds a session by its ID (the hash of the cookie token);
	// it is the session lookup and so not tenant-scoped. Expired sessions
	// are returned too: the caller decides, and deletes them.
	GetSession(ctx context.Context, id string) (*model.Session, error)
	// TouchSession records activity and moves the expiry.
	TouchSession(ctx context.Context, id string, lastSeen, expiresAt time.Time) error
	// SetSessionTenant records which tenant a platform admin looks at
	// (the session's ViewTenant).
	SetSessionTenant(ctx context.Context, id, tenantID string) error
	DeleteSession(ctx context.Context, id string) error
	// DeleteExpiredSessions removes sessions that expired before t.
	DeleteExpiredSessions(ctx context.Context, t time.Time) (int64, error)
}
