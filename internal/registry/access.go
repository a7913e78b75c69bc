package registry

import (
	"context"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/authz"
	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// ---- groups ----

// GroupInput defines a group.
type GroupInput struct {
	Name        string
	Kind        model.GroupKind
	Query       *model.DeviceQuery
	Description string
}

func (s *Service) CreateGroup(ctx context.Context, p *authz.Principal, tenantID string, in GroupInput) (*model.Group, error) {
	if err := checkName("name", in.Name, 1, 128); err != nil {
		return nil, err
	}
	if err := checkName("description", in.Description, 0, 1024); err != nil {
		return nil, err
	}
	switch in.Kind {
	case model.GroupStatic:
		if in.Query != nil {
			return nil, invalid("query", "a static group has members, not a query; use kind dynamic")
		}
	case model.GroupDynamic:
		if in.Query == nil {
			return nil, invalid("query", "a dynamic group needs a query")
		}
		if in.Query.GroupID != "" {
			return nil, invalid("query.group_id", "a dynamic group cannot refer to another group")
		}
		if err := in.Query.Validate(); err != nil {
			return nil, invalid("query", "%s", err.Error())
		}
	default:
		return nil, invalid("kind", "%q is not a group kind; use static or dynamic", in.Kind)
	}
	g := &model.Group{ID: ids.New("grp"), TenantID: tenantID, Name: in.Name, Kind: in.Kind, Query: in.Query,
		Description: in.Description, CreatedAt: s.now()}
	err := s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "group.create", Target: g.ID, Summary: g},
		"group.created", g.ID, func() any { return g }, func(tx store.Tx) error { return tx.CreateGroup(ctx, g) })
	return g, err
}

func (s *Service) DeleteGroup(ctx context.Context, p *authz.Principal, tenantID, id string) error {
	return s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "group.delete", Target: id},
		"group.deleted", id, nil, func(tx store.Tx) error { return tx.DeleteGroup(ctx, tenantID, id) })
}

// SetGroupMembers adds or removes devices of a static group.
func (s *Service) SetGroupMembers(ctx context.Context, p *authz.Principal, tenantID, groupID string, add, remove []string) error {
	if len(add)+len(remove) == 0 {
		return invalid("add", "name at least one device to add or remove")
	}
	if len(add)+len(remove) > 1000 {
		return invalid("add", "at most 1000 devices per call")
	}
	return s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "group.members", Target: groupID,
		Summary: map[string]any{"add": add, "remove": remove}}, "group.members_changed", groupID,
		func() any { return map[string]any{"group_id": groupID, "add": add, "remove": remove} },
		func(tx store.Tx) error {
			g, err := tx.GetGroup(ctx, tenantID, groupID)
			if err != nil {
				return err
			}
			if g.Kind != model.GroupStatic {
				return invalid("group", "group %s is dynamic; its members follow its query", groupID)
			}
			if err := tx.AddGroupMembers(ctx, tenantID, groupID, add); err != nil {
				return err
			}
			return tx.RemoveGroupMembers(ctx, tenantID, groupID, remove)
		})
}

// ---- API keys ----

// rank orders roles by power, to stop a key from minting a stronger one.
var rank = map[model.Role]int{model.RoleViewer: 1, model.RoleVendor: 2, model.RoleOperator: 2, model.RoleTenantAdmin: 3, model.RolePlatformAdmin: 4}

// CreateAPIKey makes a key in tenantID ("" = platform key) and returns its
// secret, which is shown this once and never stored.
func (s *Service) CreateAPIKey(ctx context.Context, p *authz.Principal, tenantID, name string, role model.Role, expires *time.Time) (string, *model.APIKey, error) {
	if err := checkName("name", name, 1, 128); err != nil {
		return "", nil, err
	}
	if !role.Valid() {
		return "", nil, invalid("role", "%q is not a role; use tenant-admin, operator, viewer or vendor", role)
	}
	if (role == model.RolePlatformAdmin) != (tenantID == "") {
		return "", nil, invalid("role", "platform-admin keys belong to no tenant, and tenant keys cannot be platform-admin")
	}
	if p != nil && rank[role] > rank[p.Role] {
		return "", nil, &ForbiddenError{"a " + string(p.Role) + " cannot create a " + string(role) + " key"}
	}
	if expires != nil && !expires.After(s.now()) {
		return "", nil, invalid("expires_at", "must be in the future")
	}
	secret, k := authz.NewKey(tenantID, name, role, p.Actor(), expires)
	err := s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "apikey.create", Target: k.ID,
		Summary: map[string]any{"name": name, "role": role, "prefix": k.Prefix}}, "apikey.created", k.ID,
		func() any { return k }, func(tx store.Tx) error { return tx.CreateAPIKey(ctx, k) })
	if err != nil {
		return "", nil, err
	}
	return secret, k, nil
}

func (s *Service) RevokeAPIKey(ctx context.Context, p *authz.Principal, tenantID, id string) error {
	return s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "apikey.revoke", Target: id},
		"apikey.revoked", id, func() any { return map[string]string{"id": id} },
		func(tx store.Tx) error { return tx.RevokeAPIKey(ctx, tenantID, id, s.now()) })
}

// ---- webhooks ----

// WebhookInput subscribes a URL to events.
type WebhookInput struct {
	URL   string
	Types []string
}

// CreateWebhook stores a subscription and returns its signing secret, shown once.
func (s *Service) CreateWebhook(ctx context.Context, p *authz.Principal, tenantID string, in WebhookInput, allowHTTP bool) (*model.Webhook, error) {
	if err := checkURL("url", in.URL, !allowHTTP); err != nil {
		return nil, err
	}
	if len(in.Types) > 64 {
		return nil, invalid("types", "at most 64 event types")
	}
	for _, t := range in.Types {
		if t == "" || len(t) > 128 || strings.ContainsAny(t, " >") {
			return nil, invalid("types", "%q is not an event type (e.g. device.created or device.*)", t)
		}
	}
	w := &model.Webhook{ID: ids.New("whk"), TenantID: tenantID, URL: in.URL, Types: in.Types, Secret: "whsec_" + ids.Token(24),
		Active: true, CreatedAt: s.now()}
	err := s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "webhook.create", Target: w.ID,
		Summary: map[string]any{"url": w.URL, "types": w.Types}}, "webhook.created", w.ID,
		func() any { return map[string]any{"id": w.ID, "url": w.URL, "types": w.Types} },
		func(tx store.Tx) error { return tx.CreateWebhook(ctx, w) })
	return w, err
}

func (s *Service) DeleteWebhook(ctx context.Context, p *authz.Principal, tenantID, id string) error {
	return s.change(ctx, tenantID, model.AuditEntry{Actor: p.Actor(), Action: "webhook.delete", Target: id},
		"webhook.deleted", id, nil, func(tx store.Tx) error { return tx.DeleteWebhook(ctx, tenantID, id) })
}

// Bootstrap creates the first platform-admin key when none exists yet.
// It returns "" when keys already exist.
func (s *Service) Bootstrap(ctx context.Context) (string, *model.APIKey, error) {
	keys, _, err := s.st.ListAPIKeys(ctx, "", store.ListOptions{Limit: 1})
	if err != nil {
		return "", nil, err
	}
	if len(keys) > 0 {
		return "", nil, nil
	}
	system := &authz.Principal{KeyID: "bootstrap", Role: model.RolePlatformAdmin}
	return s.CreateAPIKey(ctx, system, "", "initial platform admin", model.RolePlatformAdmin, nil)
}
