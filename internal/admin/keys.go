package admin

import (
	"context"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// Limits on user-chosen key fields. They keep listings readable and stop a
// script bug from storing megabytes in a name.
const (
	maxNameLen = 100
	maxTags    = 20
	maxTagLen  = 40
)

// KeyView is a relay key as shown to users and scripts (`crs keys list
// --json`, GET /admin/keys). It never carries the key or its hash.
type KeyView struct {
	ID     store.KeyID `json:"id"`
	Name   string      `json:"name"`
	Status string      `json:"status"` // active|disabled|expired|deleted
	Tags   []string    `json:"tags"`   // never null
	// Clients restricts the client programs that may use the key
	// (claude_code, …); empty allows every client. Never null.
	Clients    []string   `json:"clients"`
	Hint       string     `json:"hint"` // last 4 characters of the key
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	DeletedAt  *time.Time `json:"deleted_at"`
}

// CreatedKey is the answer to creating a key: the view plus the key itself,
// which exists nowhere else afterwards (only its hash is stored).
type CreatedKey struct {
	KeyView
	Key string `json:"key"`
}

// KeyInput describes a key to create.
type KeyInput struct {
	Name      string
	Tags      []string
	Clients   []string   // empty: every client
	ExpiresAt *time.Time // nil: never expires
}

// KeyPatch changes a key; nil fields stay as they are. ExpiresAt is a
// pointer to a pointer so that "clear the expiry" (non-nil pointer to nil)
// differs from "leave it" (nil).
type KeyPatch struct {
	Name      *string
	Tags      *[]string
	Clients   *[]string
	Disabled  *bool
	ExpiresAt **time.Time
}

func (s *Service) keyView(k store.Key) KeyView {
	tags, clients := k.Tags, k.Clients
	if tags == nil {
		tags = []string{}
	}
	if clients == nil {
		clients = []string{}
	}
	return KeyView{
		ID:         k.ID,
		Name:       k.Name,
		Status:     k.Status(s.now()),
		Tags:       tags,
		Clients:    clients,
		Hint:       k.Hint,
		CreatedAt:  k.CreatedAt.UTC(),
		LastUsedAt: utc(k.LastUsedAt),
		ExpiresAt:  utc(k.ExpiresAt),
		DeletedAt:  utc(k.DeletedAt),
	}
}

func checkName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", invalid("name", "must not be empty")
	case utf8.RuneCountInString(name) > maxNameLen:
		return "", invalid("name", "longer than %d characters", maxNameLen)
	case strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "", invalid("name", "must not contain control characters")
	}
	return name, nil
}

// checkTags trims, drops duplicates and keeps the order given.
func checkTags(tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		t = strings.TrimSpace(t)
		switch {
		case t == "":
			return nil, invalid("tags", "a tag must not be empty")
		case utf8.RuneCountInString(t) > maxTagLen:
			return nil, invalid("tags", "tag %q is longer than %d characters", t, maxTagLen)
		case strings.ContainsFunc(t, func(r rune) bool { return r < ' ' || r == 0x7f || r == ',' }):
			return nil, invalid("tags", "tag %q must not contain commas or control characters", t)
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) > maxTags {
		return nil, invalid("tags", "at most %d tags", maxTags)
	}
	return out, nil
}

// Clients a key can be restricted to. Only Claude Code is recognised on
// the Claude routes today; the others name the clients of pools still to
// come, so a key can be prepared for them.
var knownClients = []string{"claude_code", "gemini_cli", "codex_cli", "droid_cli"}

// checkClients trims, lower-cases and deduplicates a client list.
func checkClients(in []string) ([]string, error) {
	var out []string
	for _, c := range in {
		c = strings.ToLower(strings.TrimSpace(c))
		if c == "" {
			continue
		}
		if !slices.Contains(knownClients, c) {
			return nil, invalid("clients", "%q is not one of %s", c, strings.Join(knownClients, ", "))
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (s *Service) checkExpiry(t *time.Time) (*time.Time, error) {
	if t == nil {
		return nil, nil
	}
	if !t.After(s.now()) {
		return nil, invalid("expires_at", "%s is not in the future", t.UTC().Format(time.RFC3339))
	}
	return utc(t), nil
}

// CreateKey makes a new relay key and returns its view and the key itself.
// The key is shown once: only its SHA-256 is stored.
func (s *Service) CreateKey(ctx context.Context, in KeyInput) (KeyView, string, error) {
	name, err := checkName(in.Name)
	if err != nil {
		return KeyView{}, "", err
	}
	tags, err := checkTags(in.Tags)
	if err != nil {
		return KeyView{}, "", err
	}
	clients, err := checkClients(in.Clients)
	if err != nil {
		return KeyView{}, "", err
	}
	exp, err := s.checkExpiry(in.ExpiresAt)
	if err != nil {
		return KeyView{}, "", err
	}
	plain := secret.NewRelayKey()
	k := store.Key{
		ID:        store.KeyID(newID("key_")),
		Name:      name,
		Hash:      secret.Hash(plain),
		Hint:      plain[len(plain)-4:],
		Tags:      tags,
		Clients:   clients,
		CreatedAt: s.now().UTC(),
		ExpiresAt: exp,
	}
	if err := s.Store.CreateKey(ctx, k); err != nil {
		return KeyView{}, "", err
	}
	return s.keyView(k), plain, nil
}

// ListKeys returns keys in creation order; soft-deleted ones only when
// includeDeleted.
func (s *Service) ListKeys(ctx context.Context, includeDeleted bool) ([]KeyView, error) {
	ks, err := s.Store.ListKeys(ctx, includeDeleted)
	if err != nil {
		return nil, err
	}
	out := make([]KeyView, 0, len(ks))
	for _, k := range ks {
		out = append(out, s.keyView(k))
	}
	return out, nil
}

// GetKey returns one key, soft-deleted or not.
func (s *Service) GetKey(ctx context.Context, id store.KeyID) (KeyView, error) {
	k, err := s.Store.GetKey(ctx, id)
	if err != nil {
		return KeyView{}, err
	}
	return s.keyView(k), nil
}

// UpdateKey applies p to the key. A soft-deleted key can be changed too, so
// it can be fixed before it is restored.
func (s *Service) UpdateKey(ctx context.Context, id store.KeyID, p KeyPatch) (KeyView, error) {
	return s.changeKey(ctx, id, func(k *store.Key) error {
		if p.Name != nil {
			name, err := checkName(*p.Name)
			if err != nil {
				return err
			}
			k.Name = name
		}
		if p.Tags != nil {
			tags, err := checkTags(*p.Tags)
			if err != nil {
				return err
			}
			k.Tags = tags
		}
		if p.Clients != nil {
			clients, err := checkClients(*p.Clients)
			if err != nil {
				return err
			}
			k.Clients = clients
		}
		if p.Disabled != nil {
			k.Disabled = *p.Disabled
		}
		if p.ExpiresAt != nil {
			exp, err := s.checkExpiry(*p.ExpiresAt)
			if err != nil {
				return err
			}
			k.ExpiresAt = exp
		}
		return nil
	})
}

// RemoveKey soft-deletes a key: it stops working at once but stays listed
// under `--deleted` and can be restored, so a slip costs nothing.
func (s *Service) RemoveKey(ctx context.Context, id store.KeyID) error {
	_, err := s.changeKey(ctx, id, func(k *store.Key) error {
		if k.DeletedAt == nil {
			now := s.now().UTC()
			k.DeletedAt = &now
		}
		return nil
	})
	return err
}

// RestoreKey undoes RemoveKey.
func (s *Service) RestoreKey(ctx context.Context, id store.KeyID) error {
	_, err := s.changeKey(ctx, id, func(k *store.Key) error {
		k.DeletedAt = nil
		return nil
	})
	return err
}

// PurgeKey removes a key for good, whether or not it was removed first:
// purging is the explicit, irreversible act, so it needs no second step.
// Its usage records stay (they are the accounting) and show the key ID
// without a name.
func (s *Service) PurgeKey(ctx context.Context, id store.KeyID) error {
	if _, err := s.Store.GetKey(ctx, id); err != nil {
		return err
	}
	return s.Store.PurgeKey(ctx, id)
}

func (s *Service) changeKey(ctx context.Context, id store.KeyID, change func(*store.Key) error) (KeyView, error) {
	k, err := s.Store.GetKey(ctx, id)
	if err != nil {
		return KeyView{}, err
	}
	if err := change(&k); err != nil {
		return KeyView{}, err
	}
	if err := s.Store.UpdateKey(ctx, k); err != nil {
		return KeyView{}, err
	}
	return s.keyView(k), nil
}
