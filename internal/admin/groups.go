package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// GroupView is an account group as shown to users and scripts (`crs groups
// list --json`, GET /admin/groups). A key binds to it with
// account "group:<id>".
type GroupView struct {
	ID       store.GroupID  `json:"id"`
	Name     string         `json:"name"`
	Platform store.Platform `json:"platform"`
	// Members are account IDs in the order they were added. Never null.
	Members   []store.AccountID `json:"members"`
	CreatedAt time.Time         `json:"created_at"`
}

// GroupInput describes a group to create. Every member must be an account
// of Platform, so a key bound to the group only ever meets accounts that
// speak its pool's protocol.
type GroupInput struct {
	Name     string `json:"name"`
	Platform string `json:"platform"`
}

// InUseError refuses to delete a group or an account that keys are bound
// to: those keys would then serve nothing (a binding never silently falls
// back to the shared pool). It names the keys to rebind first.
type InUseError struct {
	What string // "group" or "account"
	ID   string
	Keys []store.KeyID
}

func (e *InUseError) Error() string {
	ids := make([]string, len(e.Keys))
	for i, k := range e.Keys {
		ids[i] = string(k)
	}
	return fmt.Sprintf("%s %s is bound by keys %s; rebind or unbind them first", e.What, e.ID, strings.Join(ids, ", "))
}

// boundKeys lists the keys (removed ones included, since they can be
// restored) bound to binding: an account id or "group:ID".
func (s *Service) boundKeys(ctx context.Context, binding string) ([]store.KeyID, error) {
	keys, err := s.Store.ListKeys(ctx, true)
	if err != nil {
		return nil, err
	}
	var bound []store.KeyID
	for _, k := range keys {
		if k.Policy.Account == binding {
			bound = append(bound, k.ID)
		}
	}
	return bound, nil
}

func groupView(g store.Group) GroupView {
	return GroupView{
		ID:        g.ID,
		Name:      g.Name,
		Platform:  g.Platform,
		Members:   nonNil(g.Members),
		CreatedAt: g.CreatedAt.UTC(),
	}
}

// CreateGroup makes an empty group of one platform. Names are unique
// (store.ErrConflict otherwise), so they can be told apart in listings.
func (s *Service) CreateGroup(ctx context.Context, in GroupInput) (GroupView, error) {
	name, err := checkName(in.Name)
	if err != nil {
		return GroupView{}, err
	}
	platform, err := parsePlatform("platform", in.Platform)
	if err != nil {
		return GroupView{}, err
	}
	g := store.Group{
		ID:        store.GroupID(newID("grp_")),
		Name:      name,
		Platform:  platform,
		CreatedAt: s.now().UTC(),
	}
	if err := s.Store.CreateGroup(ctx, g); err != nil {
		return GroupView{}, err
	}
	return groupView(g), nil
}

// ListGroups returns every group in creation order.
func (s *Service) ListGroups(ctx context.Context) ([]GroupView, error) {
	gs, err := s.Store.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]GroupView, 0, len(gs))
	for _, g := range gs {
		out = append(out, groupView(g))
	}
	return out, nil
}

// GetGroup returns one group.
func (s *Service) GetGroup(ctx context.Context, id store.GroupID) (GroupView, error) {
	g, err := s.Store.GetGroup(ctx, id)
	if err != nil {
		return GroupView{}, err
	}
	return groupView(g), nil
}

// AddGroupMember adds an account to a group (nothing changes if it is one
// already). The store accepts any account; the platform check is here.
// A missing group is store.ErrNotFound; a missing or mismatched account is
// an *InvalidError on account_id, so the two cannot be confused.
func (s *Service) AddGroupMember(ctx context.Context, id store.GroupID, acct store.AccountID) (GroupView, error) {
	g, err := s.Store.GetGroup(ctx, id)
	if err != nil {
		return GroupView{}, err
	}
	if strings.TrimSpace(string(acct)) == "" {
		return GroupView{}, invalid("account_id", "must not be empty")
	}
	a, err := s.Store.GetAccount(ctx, acct)
	if errors.Is(err, store.ErrNotFound) {
		return GroupView{}, invalid("account_id", "no account %q (see the accounts list)", acct)
	}
	if err != nil {
		return GroupView{}, err
	}
	if a.Platform != g.Platform {
		return GroupView{}, invalid("account_id", "account %s is a %s account; group %s holds %s accounts",
			a.ID, a.Platform, g.ID, g.Platform)
	}
	if err := s.Store.AddGroupMember(ctx, id, acct); err != nil {
		return GroupView{}, err
	}
	return s.GetGroup(ctx, id)
}

// RemoveGroupMember takes an account out of a group. Removing an account
// that is not a member changes nothing and is not an error, so a retried
// request succeeds; the answer shows the members either way.
func (s *Service) RemoveGroupMember(ctx context.Context, id store.GroupID, acct store.AccountID) (GroupView, error) {
	if err := s.Store.RemoveGroupMember(ctx, id, acct); err != nil {
		return GroupView{}, err
	}
	return s.GetGroup(ctx, id)
}

// DeleteGroup deletes a group that no key (removed ones included) is bound
// to; otherwise it answers an *InUseError naming the keys. The check
// and the delete are two steps: a key bound in between is left bound to a
// missing group, which serves nothing rather than the shared pool.
func (s *Service) DeleteGroup(ctx context.Context, id store.GroupID) error {
	if _, err := s.Store.GetGroup(ctx, id); err != nil {
		return err
	}
	bound, err := s.boundKeys(ctx, groupPrefix+string(id))
	if err != nil {
		return err
	}
	if len(bound) > 0 {
		return &InUseError{What: "group", ID: string(id), Keys: bound}
	}
	return s.Store.DeleteGroup(ctx, id)
}
