package registry

import (
	"context"
	"errors"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// ---- users ----

// Password length bounds, in characters. Long passphrases are welcome; the
// upper bound only keeps hashing input reasonable.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// ErrBadCredentials is a sign-in that does not succeed: unknown email,
// wrong password or disabled account. Which one is not told.
var ErrBadCredentials = errors.New("wrong email or password")

// UserInput creates a dashboard user.
type UserInput struct {
	Email string
	Name  string // default: the email
	Role  model.Role
	// Password is the initial password; empty makes a random one, which
	// CreateUser returns (shown once, never stored).
	Password string
}

// UserPatch changes a user; nil fields stay.
type UserPatch struct {
	Name     *string
	Role     *model.Role
	Disabled *bool
}

// NormalizeEmail is the stored form of an email: trimmed, lower-cased.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

func checkEmail(email string) error {
	if email == "" {
		return invalid("email", "is required")
	}
	if len(email) > 254 {
		return invalid("email", "must be at most 254 characters")
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return invalid("email", "%q is not an email address such as ops@example.com", email)
	}
	return nil
}

func checkPassword(field, pw string, avoid ...string) error {
	n := utf8.RuneCountInString(pw)
	if n < MinPasswordLen {
		return invalid(field, "must be at least %d characters (got %d); a few unrelated words make a good one", MinPasswordLen, n)
	}
	if n > MaxPasswordLen || !utf8.ValidString(pw) {
		return invalid(field, "must be valid text of at most %d characters", MaxPasswordLen)
	}
	for _, a := range avoid {
		if a != "" && strings.EqualFold(pw, a) {
			return invalid(field, "must not be the account's email or name")
		}
	}
	return nil
}

// GeneratePassword returns a random password of 24 characters (120 bits).
func GeneratePassword() string { return ids.Token(15) }

// mayManage reports whether p may act on a user holding role: nobody
// manages an account stronger than their own.
func mayManage(p *authz.Principal, role model.Role) bool {
	return p != nil && rank[role] <= rank[p.Role]
}

// CreateUser adds a user to tenantID ("" = platform users) and returns it
// with the generated password when in.Password was empty.
func (s *Service) CreateUser(ctx context.Context, p *authz.Principal, tenantID string, in UserInput) (*model.User, string, error) {
	in.Email = NormalizeEmail(in.Email)
	if err := checkEmail(in.Email); err != nil {
		return nil, "", err
	}
	if in.Name == "" {
		in.Name = in.Email
	}
	if err := checkName("name", in.Name, 1, 128); err != nil {
		return nil, "", err
	}
	if !in.Role.Valid() {
		return nil, "", invalid("role", "%q is not a role; use tenant-admin, operator, viewer or vendor", in.Role)
	}
	if (in.Role == model.RolePlatformAdmin) != (tenantID == "") {
		return nil, "", invalid("role", "platform admins belong to no tenant, and tenant users cannot be platform admins")
	}
	if !mayManage(p, in.Role) {
		return nil, "", &ForbiddenError{"a " + string(p.Role) + " cannot create a " + string(in.Role) + " user"}
	}
	generated := ""
	if in.Password == "" {
		generated = GeneratePassword()
		in.Password = generated
	} else if err := checkPassword("password", in.Password, in.Email, in.Name); err != nil {
		return nil, "", err
	}
	now := s.now()
	u := &model.User{ID: ids.New("usr"), TenantID: tenantID, Email: in.Email, Name: in.Name,
		PasswordHash: authz.HashPassword(in.Password), Role: in.Role, CreatedAt: now, CreatedBy: p.Actor(), UpdatedAt: now}
	err := s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "user.create", Target: u.ID,
		Summary: map[string]any{"email": u.Email, "name": u.Name, "role": u.Role}}, "user.created", u.ID,
		func() any { return u }, func(tx store.Tx) error {
			if tenantID != "" {
				if _, err := tx.GetTenant(ctx, tenantID); err != nil {
					return err
				}
			}
			return tx.CreateUser(ctx, u)
		})
	if err != nil {
		return nil, "", err
	}
	return u, generated, nil
}

// UpdateUser renames a user, changes its role, or disables or enables it.
// Disabling ends every session of the user at once.
func (s *Service) UpdateUser(ctx context.Context, p *authz.Principal, tenantID, id string, patch UserPatch) (*model.User, error) {
	if patch.Name != nil {
		if err := checkName("name", *patch.Name, 1, 128); err != nil {
			return nil, err
		}
	}
	if patch.Role != nil {
		r := *patch.Role
		if !r.Valid() {
			return nil, invalid("role", "%q is not a role; use tenant-admin, operator, viewer or vendor", r)
		}
		if (r == model.RolePlatformAdmin) != (tenantID == "") {
			return nil, invalid("role", "platform admins belong to no tenant, and tenant users cannot be platform admins")
		}
		if !mayManage(p, r) {
			return nil, &ForbiddenError{"a " + string(p.Role) + " cannot give the role " + string(r)}
		}
	}
	if p.UserID == id && (patch.Role != nil || patch.Disabled != nil) {
		return nil, invalid("user", "you cannot change your own role or disable yourself; ask another administrator")
	}
	var u *model.User
	err := s.st.Update(ctx, func(tx store.Tx) error {
		old, err := tx.GetUser(ctx, tenantID, id)
		if err != nil {
			return err
		}
		if !mayManage(p, old.Role) {
			return &ForbiddenError{"a " + string(p.Role) + " cannot change a " + string(old.Role) + " user"}
		}
		nu := *old
		changes := map[string][2]any{}
		if patch.Name != nil && *patch.Name != old.Name {
			nu.Name = *patch.Name
			changes["name"] = [2]any{old.Name, nu.Name}
		}
		if patch.Role != nil && *patch.Role != old.Role {
			nu.Role = *patch.Role
			changes["role"] = [2]any{old.Role, nu.Role}
		}
		action, evType := "user.update", "user.updated"
		if patch.Disabled != nil && *patch.Disabled != old.Disabled() {
			if *patch.Disabled {
				t := s.now()
				nu.DisabledAt = &t
				action, evType = "user.disable", "user.disabled"
			} else {
				nu.DisabledAt = nil
				action, evType = "user.enable", "user.enabled"
			}
			changes["disabled"] = [2]any{old.Disabled(), nu.Disabled()}
		}
		u = &nu
		if len(changes) == 0 {
			return nil
		}
		nu.UpdatedAt = s.now()
		if err := tx.UpdateUser(ctx, &nu); err != nil {
			return err
		}
		summary := map[string]any{"email": nu.Email, "changes": changes}
		if _, roleChanged := changes["role"]; nu.Disabled() || roleChanged {
			// A disabled user, or one whose powers changed, signs in again.
			n, err := tx.DeleteUserSessions(ctx, tenantID, id, "")
			if err != nil {
				return err
			}
			summary["sessions_ended"] = n
		}
		return s.auditEmit(ctx, tx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: action, Target: id, Summary: summary},
			evType, id, &nu)
	})
	return u, err
}

// SetPassword changes a user's password. Users changing their own give the
// current one; administrators resetting someone else's do not. Every other
// session of the user ends (keepSession, the caller's own, stays).
func (s *Service) SetPassword(ctx context.Context, p *authz.Principal, tenantID, id, current, password, keepSession string) error {
	own := p.UserID == id
	return s.st.Update(ctx, func(tx store.Tx) error {
		u, err := tx.GetUser(ctx, tenantID, id)
		if err != nil {
			return err
		}
		if !own && !mayManage(p, u.Role) {
			return &ForbiddenError{"a " + string(p.Role) + " cannot reset the password of a " + string(u.Role) + " user"}
		}
		if own {
			if err := authz.CheckPassword(current, u.PasswordHash); err != nil {
				return invalid("current_password", "is not your current password")
			}
		}
		if err := checkPassword("password", password, u.Email, u.Name); err != nil {
			return err
		}
		if own && current == password {
			return invalid("password", "must differ from the current one")
		}
		u.PasswordHash = authz.HashPassword(password)
		u.UpdatedAt = s.now()
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		n, err := tx.DeleteUserSessions(ctx, tenantID, id, keepSession)
		if err != nil {
			return err
		}
		return s.auditEmit(ctx, tx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "user.password_change", Target: id,
			Summary: map[string]any{"email": u.Email, "own": own, "sessions_ended": n}}, "user.password_changed", id,
			map[string]any{"user_id": id, "own": own})
	})
}

// Authenticate checks an email and password. Every failure is
// ErrBadCredentials and takes about as long, known email or not.
func (s *Service) Authenticate(ctx context.Context, email, password string) (*model.User, error) {
	email = NormalizeEmail(email)
	if email == "" || len(email) > 254 || len(password) > 4*MaxPasswordLen {
		authz.SpendPasswordCheck(password)
		return nil, ErrBadCredentials
	}
	u, err := s.st.GetUserByEmail(ctx, email)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		authz.SpendPasswordCheck(password)
		return nil, ErrBadCredentials
	}
	if err := authz.CheckPassword(password, u.PasswordHash); err != nil {
		if !errors.Is(err, authz.ErrBadPassword) {
			return nil, err // a damaged hash: the operator needs to know
		}
		return nil, ErrBadCredentials
	}
	if u.Disabled() {
		return nil, ErrBadCredentials
	}
	return u, nil
}

// RecordSignIn writes a sign-in to the audit trail of the user's tenant.
func (s *Service) RecordSignIn(ctx context.Context, u *model.User, remote string) error {
	return s.change(ctx, u.TenantID, model.AuditEntry{Actor: "user:" + u.ID, Action: "user.sign_in", Target: u.ID,
		Summary: map[string]any{"email": u.Email, "remote": remote}}, "", "", nil, func(store.Tx) error { return nil })
}

// BootstrapUser creates the first platform admin user when there is no
// platform user yet, and returns its generated password (shown once).
// It returns a nil user when platform users already exist.
func (s *Service) BootstrapUser(ctx context.Context, email string) (*model.User, string, error) {
	users, _, err := s.st.ListUsers(ctx, "", store.ListOptions{Limit: 1})
	if err != nil || len(users) > 0 {
		return nil, "", err
	}
	system := &authz.Principal{KeyID: "bootstrap", Role: model.RolePlatformAdmin}
	return s.CreateUser(ctx, system, "", UserInput{Email: email, Name: "Administrator", Role: model.RolePlatformAdmin})
}
