package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// newGroup returns a group named n without members.
func newGroup(n string, created time.Time) store.Group {
	return store.Group{
		ID:        store.GroupID("grp-" + n),
		Name:      "group " + n,
		Platform:  store.PlatformClaude,
		CreatedAt: created,
	}
}

// normGroup puts a group in a canonical form for comparison: its time in
// UTC, and no members as nil.
func normGroup(g store.Group) store.Group {
	g.CreatedAt = g.CreatedAt.UTC()
	if len(g.Members) == 0 {
		g.Members = nil
	}
	return g
}

func sameGroup(t *testing.T, what string, got, want store.Group) {
	t.Helper()
	if g, w := normGroup(got), normGroup(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

// createAccounts stores minimal accounts named after ns, in that order.
func createAccounts(t *testing.T, s store.Store, ns ...string) []store.AccountID {
	t.Helper()
	var ids []store.AccountID
	for i, n := range ns {
		a := newAccount(n, at(time.Duration(i)*time.Second))
		must(t, s.CreateAccount(t.Context(), a))
		ids = append(ids, a.ID)
	}
	return ids
}

// members returns the stored members of the group id.
func members(t *testing.T, s store.Store, id store.GroupID) []store.AccountID {
	t.Helper()
	g, err := s.GetGroup(t.Context(), id)
	must(t, err)
	return g.Members
}

// wantMembers fails unless the group id has exactly want, in that order.
func wantMembers(t *testing.T, what string, s store.Store, id store.GroupID, want ...store.AccountID) {
	t.Helper()
	if got := members(t, s, id); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: %s has members %v, want %v", what, id, got, want)
	}
}

// testGroupRoundTrip round-trips groups, the members given at creation
// included (in their order, which is not the accounts' creation order),
// through GetGroup and ListGroups.
func testGroupRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	accts := createAccounts(t, s, "g1", "g2", "g3")
	withMembers := newGroup("members", at(time.Minute))
	withMembers.Name = "中文 \"quoted\" group"
	withMembers.Platform = store.PlatformOpenAI
	withMembers.Members = []store.AccountID{accts[2], accts[0], accts[1]}
	zoned := newGroup("zoned", at(2*time.Minute+7*time.Millisecond).In(Zone()))
	zoned.Members = []store.AccountID{accts[1]}
	groups := []store.Group{newGroup("empty", at(0)), withMembers, zoned}
	for _, g := range groups {
		must(t, s.CreateGroup(ctx, g))
		got, err := s.GetGroup(ctx, g.ID)
		must(t, err)
		sameGroup(t, string(g.ID)+": GetGroup", got, g)
	}
	listed, err := s.ListGroups(ctx)
	must(t, err)
	if len(listed) != len(groups) {
		t.Fatalf("ListGroups returned %d groups, want %d", len(listed), len(groups))
	}
	for i, g := range groups {
		sameGroup(t, string(g.ID)+": ListGroups", listed[i], g)
	}

	// A member that is not an account fails the whole group.
	dangling := newGroup("dangling", at(0))
	dangling.Members = []store.AccountID{accts[0], "acct-missing"}
	wantErr(t, "CreateGroup with a missing member", s.CreateGroup(ctx, dangling), store.ErrNotFound)
	_, err = s.GetGroup(ctx, dangling.ID)
	wantErr(t, "GetGroup after a failed CreateGroup", err, store.ErrNotFound)
}

func testGroupConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	accts := createAccounts(t, s, "c1", "c2")
	orig := newGroup("a", at(0))
	orig.Members = []store.AccountID{accts[0]}
	must(t, s.CreateGroup(ctx, orig))

	sameID := newGroup("b", at(time.Second))
	sameID.ID = orig.ID
	sameID.Members = []store.AccountID{accts[1]}
	wantErr(t, "CreateGroup with a taken ID", s.CreateGroup(ctx, sameID), store.ErrConflict)

	sameName := newGroup("c", at(time.Second))
	sameName.Name = orig.Name
	wantErr(t, "CreateGroup with a taken name", s.CreateGroup(ctx, sameName), store.ErrConflict)

	got, err := s.GetGroup(ctx, orig.ID)
	must(t, err)
	sameGroup(t, "group after conflicts", got, orig)
	_, err = s.GetGroup(ctx, sameName.ID)
	wantErr(t, "GetGroup of the group with a taken name", err, store.ErrNotFound)
	groups, err := s.ListGroups(ctx)
	must(t, err)
	if len(groups) != 1 {
		t.Errorf("ListGroups after conflicts: %d groups, want 1", len(groups))
	}
}

func testGroupNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	accts := createAccounts(t, s, "nf")
	present := newGroup("present", at(0))
	must(t, s.CreateGroup(ctx, present))
	missing := store.GroupID("grp-missing")

	_, err := s.GetGroup(ctx, missing)
	wantErr(t, "GetGroup", err, store.ErrNotFound)
	wantErr(t, "DeleteGroup", s.DeleteGroup(ctx, missing), store.ErrNotFound)
	wantErr(t, "AddGroupMember to a missing group", s.AddGroupMember(ctx, missing, accts[0]), store.ErrNotFound)
	wantErr(t, "RemoveGroupMember from a missing group", s.RemoveGroupMember(ctx, missing, accts[0]), store.ErrNotFound)
	wantErr(t, "AddGroupMember of a missing account", s.AddGroupMember(ctx, present.ID, "acct-missing"), store.ErrNotFound)

	_, err = s.GetGroup(ctx, missing)
	wantErr(t, "GetGroup after operations on a missing group", err, store.ErrNotFound)
	wantMembers(t, "after adding a missing account", s, present.ID)
	if _, err := s.GetAccount(ctx, "acct-missing"); err == nil {
		t.Error("AddGroupMember created the missing account")
	}
}

func testListGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	groups, err := s.ListGroups(ctx)
	must(t, err)
	if len(groups) != 0 {
		t.Fatalf("empty store lists %d groups", len(groups))
	}
	accts := createAccounts(t, s, "l1", "l2", "l3")
	// Inserted out of creation order, each with its own members: the list
	// follows CreatedAt, and members stay with their group.
	c := newGroup("c", at(3*time.Hour))
	c.Members = []store.AccountID{accts[2]}
	a := newGroup("a", at(1*time.Hour))
	a.Members = []store.AccountID{accts[0], accts[1]}
	b := newGroup("b", at(2*time.Hour))
	for _, g := range []store.Group{c, a, b} {
		must(t, s.CreateGroup(ctx, g))
	}
	must(t, s.AddGroupMember(ctx, b.ID, accts[1]))
	b.Members = []store.AccountID{accts[1]}

	groups, err = s.ListGroups(ctx)
	must(t, err)
	want := []store.Group{a, b, c}
	if len(groups) != len(want) {
		t.Fatalf("ListGroups returned %d groups, want %d", len(groups), len(want))
	}
	for i := range want {
		sameGroup(t, fmt.Sprintf("ListGroups[%d]", i), groups[i], want[i])
	}
}

// testGroupMembers walks membership changes: members keep the order they
// were added in, adding a member again changes nothing, a removed member
// added back goes last, removing a non-member changes nothing, and one
// account may be in several groups.
func testGroupMembers(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := createAccounts(t, s, "m1", "m2", "m3", "m4")
	g, h := newGroup("g", at(0)), newGroup("h", at(time.Second))
	must(t, s.CreateGroup(ctx, g))
	must(t, s.CreateGroup(ctx, h))

	must(t, s.AddGroupMember(ctx, g.ID, a[2]))
	must(t, s.AddGroupMember(ctx, g.ID, a[0]))
	must(t, s.AddGroupMember(ctx, g.ID, a[1]))
	wantMembers(t, "after adding three", s, g.ID, a[2], a[0], a[1])

	must(t, s.AddGroupMember(ctx, g.ID, a[0]))
	wantMembers(t, "after adding a member again", s, g.ID, a[2], a[0], a[1])

	must(t, s.RemoveGroupMember(ctx, g.ID, a[0]))
	wantMembers(t, "after removing the middle one", s, g.ID, a[2], a[1])
	must(t, s.AddGroupMember(ctx, g.ID, a[0]))
	wantMembers(t, "after adding it back", s, g.ID, a[2], a[1], a[0])

	must(t, s.RemoveGroupMember(ctx, g.ID, a[3]))
	wantMembers(t, "after removing a non-member", s, g.ID, a[2], a[1], a[0])

	must(t, s.RemoveGroupMember(ctx, g.ID, a[0]))
	must(t, s.AddGroupMember(ctx, g.ID, a[3]))
	wantMembers(t, "after replacing the last one", s, g.ID, a[2], a[1], a[3])

	must(t, s.AddGroupMember(ctx, h.ID, a[1]))
	must(t, s.AddGroupMember(ctx, h.ID, a[2]))
	wantMembers(t, "the other group", s, h.ID, a[1], a[2])
	must(t, s.RemoveGroupMember(ctx, h.ID, a[2]))
	wantMembers(t, "after removing from the other group", s, h.ID, a[1])
	wantMembers(t, "after a removal from the other group", s, g.ID, a[2], a[1], a[3])

	for _, acct := range a {
		if _, err := s.GetAccount(ctx, acct); err != nil {
			t.Errorf("account %s after membership changes: %v", acct, err)
		}
	}
}

// testDeleteGroup deletes a group with members: the group, its name and
// its memberships are gone, the accounts stay, and other groups keep their
// members.
func testDeleteGroup(t *testing.T, s store.Store) {
	ctx := t.Context()
	accts := createAccounts(t, s, "d1", "d2")
	g := newGroup("del", at(0))
	g.Members = accts
	other := newGroup("other", at(time.Second))
	other.Members = []store.AccountID{accts[1]}
	must(t, s.CreateGroup(ctx, g))
	must(t, s.CreateGroup(ctx, other))

	must(t, s.DeleteGroup(ctx, g.ID))
	_, err := s.GetGroup(ctx, g.ID)
	wantErr(t, "GetGroup after DeleteGroup", err, store.ErrNotFound)
	wantErr(t, "second DeleteGroup", s.DeleteGroup(ctx, g.ID), store.ErrNotFound)
	groups, err := s.ListGroups(ctx)
	must(t, err)
	if len(groups) != 1 || groups[0].ID != other.ID {
		t.Errorf("ListGroups after DeleteGroup = %+v, want only %s", groups, other.ID)
	}
	wantMembers(t, "after deleting another group", s, other.ID, accts[1])
	for _, a := range accts {
		if _, err := s.GetAccount(ctx, a); err != nil {
			t.Errorf("account %s after DeleteGroup: %v", a, err)
		}
	}

	// The ID and the name are free again, and the new group starts empty.
	fresh := g
	fresh.Members = nil
	must(t, s.CreateGroup(ctx, fresh))
	got, err := s.GetGroup(ctx, g.ID)
	must(t, err)
	sameGroup(t, "group created again", got, fresh)
}

// testDeleteAccountLeavesGroups deletes an account that is in two groups:
// it leaves both, the others keep their order, and an account created
// again with the same ID is in no group until added.
func testDeleteAccountLeavesGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := createAccounts(t, s, "x1", "x2", "x3")
	g1 := newGroup("one", at(0))
	g1.Members = []store.AccountID{a[0], a[1], a[2]}
	g2 := newGroup("two", at(time.Second))
	g2.Members = []store.AccountID{a[1], a[0]}
	must(t, s.CreateGroup(ctx, g1))
	must(t, s.CreateGroup(ctx, g2))

	must(t, s.DeleteAccount(ctx, a[1]))
	wantMembers(t, "after DeleteAccount", s, g1.ID, a[0], a[2])
	wantMembers(t, "after DeleteAccount", s, g2.ID, a[0])
	groups, err := s.ListGroups(ctx)
	must(t, err)
	for _, g := range groups {
		for _, m := range g.Members {
			if m == a[1] {
				t.Errorf("ListGroups: %s still lists the deleted account", g.ID)
			}
		}
	}

	must(t, s.CreateAccount(ctx, newAccount("x2", at(time.Hour))))
	wantMembers(t, "after creating the account again", s, g1.ID, a[0], a[2])
	must(t, s.AddGroupMember(ctx, g1.ID, a[1]))
	wantMembers(t, "after adding the new account", s, g1.ID, a[0], a[2], a[1])
}
