package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

const groupsCreateSynopsis = "NAME --platform claude|openai|gemini|droid [--json]"

func groupsCreate(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "groups create", groupsCreateSynopsis)
	platform := fs.String("platform", "", "the platform of every member: claude, openai, gemini or droid (required)")
	asJSON := fs.Bool("json", false, "print the group as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return usageError{fmt.Sprintf("groups create: want exactly one group NAME, got %d arguments", len(pos))}
	}
	if strings.TrimSpace(*platform) == "" {
		return usageError{"groups create: --platform is required"}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.CreateGroup(ctx, admin.GroupInput{Name: pos[0], Platform: *platform})
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("groups create: a group named %q already exists", strings.TrimSpace(pos[0]))
		}
		if err != nil {
			return fmt.Errorf("groups create: %s", describeGroupErr(err))
		}
		if *asJSON {
			return printJSON(c.stdout, v)
		}
		fmt.Fprintf(c.stdout, "Created group %s (%s, %s). Add accounts with: crs groups add %s ACCOUNT\n", v.ID, v.Name, v.Platform, v.ID)
		return nil
	})
}

// groupsMember returns groups add or groups remove.
func groupsMember(action string) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		name := "groups " + action
		fs, dataDir := newFlags(c, name, "GROUP ACCOUNT [--json]")
		asJSON := fs.Bool("json", false, "print the group as JSON")
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 2 || strings.TrimSpace(pos[0]) == "" || strings.TrimSpace(pos[1]) == "" {
			return usageError{fmt.Sprintf("%s: want a group ID and an account ID, got %d arguments", name, len(pos))}
		}
		gid, aid := store.GroupID(pos[0]), store.AccountID(pos[1])
		return c.withEnv(ctx, *dataDir, func(e *env) error {
			var before admin.GroupView
			var v admin.GroupView
			var err error
			if action == "add" {
				v, err = e.Admin.AddGroupMember(ctx, gid, aid)
			} else if before, err = e.Admin.GetGroup(ctx, gid); err == nil {
				v, err = e.Admin.RemoveGroupMember(ctx, gid, aid)
			}
			if err != nil {
				return fmt.Errorf("%s %s %s: %s", name, gid, aid, describeGroupErr(err))
			}
			if *asJSON {
				return printJSON(c.stdout, v)
			}
			switch {
			case action == "add":
				fmt.Fprintf(c.stdout, "group %s: account %s added (%d members)\n", gid, aid, len(v.Members))
			case len(before.Members) == len(v.Members):
				fmt.Fprintf(c.stdout, "group %s: account %s was not a member\n", gid, aid)
			default:
				fmt.Fprintf(c.stdout, "group %s: account %s removed (%d members)\n", gid, aid, len(v.Members))
			}
			return nil
		})
	}
}

func groupsDelete(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "groups delete", "GROUP")
	id, err := oneID(fs, "groups delete", "group", args)
	if err != nil {
		return err
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		if err := e.Admin.DeleteGroup(ctx, store.GroupID(id)); err != nil {
			return fmt.Errorf("groups delete %s: %s", id, describeGroupErr(err))
		}
		fmt.Fprintf(c.stdout, "group %s: deleted\n", id)
		return nil
	})
}

func groupsList(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "groups list", "[--json]")
	asJSON := fs.Bool("json", false, "print a JSON array")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("groups list: unexpected argument %q", pos[0])}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		gs, err := e.Admin.ListGroups(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, gs)
		}
		if len(gs) == 0 {
			fmt.Fprintln(c.stdout, "No groups yet. Create one with: crs groups create NAME --platform claude")
			return nil
		}
		tw := table(c.stdout)
		fmt.Fprintln(tw, "ID\tNAME\tPLATFORM\tMEMBERS\tCREATED")
		for _, g := range gs {
			members := make([]string, len(g.Members))
			for i, m := range g.Members {
				members[i] = string(m)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.ID, g.Name, g.Platform, orDash(strings.Join(members, ",")), when(&g.CreatedAt))
		}
		return tw.Flush()
	})
}

// describeGroupErr is describe for the groups commands, whose name and
// account are arguments rather than flags.
func describeGroupErr(err error) string {
	var inv *admin.InvalidError
	if errors.As(err, &inv) {
		switch inv.Field {
		case "name":
			return "NAME: " + inv.Reason
		case "account_id":
			return "ACCOUNT: " + inv.Reason
		}
	}
	return describe(err)
}
