// Command crs is the relay: `crs serve` runs it, and the other commands
// manage relay keys, upstream accounts and usage in the same DATA_DIR, also
// while the server runs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed
	exitUsage = 2 // the command line was wrong
)

// cli carries a command's standard streams and environment, so tests run
// commands in-process with their own.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is one leaf command such as `crs keys create`.
type command struct {
	name     string // "keys create"
	synopsis string // the arguments, for usage lines
	short    string // one line of help
	run      func(ctx context.Context, c *cli, args []string) error
}

// commands lists every leaf command in help order.
func commands() []command {
	return []command{
		{"serve", "[flags]", "run the relay (see crs serve -h)", nil},
		{"keys create", keysCreateSynopsis, "create a relay key and print it once", keysCreate},
		{"keys update", keysUpdateSynopsis, "change a key's name, tags, limits, restrictions, binding or expiry", keysUpdate},
		{"keys list", "[--deleted] [--json]", "list relay keys", keysList},
		{"keys disable", "ID", "stop a key from working (reversible)", keysSet("disable")},
		{"keys enable", "ID", "let a disabled key work again", keysSet("enable")},
		{"keys remove", "ID", "soft-delete a key (restore brings it back)", keysSet("remove")},
		{"keys restore", "ID", "undo keys remove", keysSet("restore")},
		{"keys purge", "ID", "delete a key for good", keysSet("purge")},
		{"accounts add", accountsAddSynopsis, "add an upstream account", accountsAdd},
		{"accounts oauth start", oauthStartSynopsis, "begin onboarding a Claude subscription account: prints the URL to approve", accountsOAuthStart},
		{"accounts oauth finish", oauthFinishSynopsis, "finish an onboarding with the code the approval page showed", accountsOAuthFinish},
		{"accounts oauth import", oauthImportSynopsis, "add a Claude account from Claude Code's credentials.json", accountsOAuthImport},
		{"accounts list", "[--json]", "list upstream accounts with status and cooldowns", accountsList},
		{"accounts update", accountsUpdateSynopsis, "change an account's settings and per-account options", accountsUpdate},
		{"accounts usage", accountsUsageSynopsis, "show a subscription account's live 5h / 7d quota use", accountsUsage},
		{"accounts disable", "ID", "stop scheduling an account", accountsSet("disable")},
		{"accounts enable", "ID", "schedule a disabled account again", accountsSet("enable")},
		{"accounts remove", "ID", "delete an account for good", accountsSet("remove")},
		{"accounts reset", "ID", "clear an account's cooldown", accountsSet("reset")},
		{"groups create", groupsCreateSynopsis, "make an account group that keys can bind to (--account group:ID)", groupsCreate},
		{"groups add", "GROUP ACCOUNT [--json]", "add an account of the group's platform to a group", groupsMember("add")},
		{"groups remove", "GROUP ACCOUNT [--json]", "take an account out of a group", groupsMember("remove")},
		{"groups delete", "GROUP", "delete a group no key is bound to", groupsDelete},
		{"groups list", "[--json]", "list groups with their members", groupsList},
		{"usage", "[--key ID] [--json]", "tokens and cost per key, account and model", usageCmd},
		{"notify add", notifyAddSynopsis, "add an alert channel (webhook, Telegram, Slack, Discord, DingTalk, Feishu, WeCom, Bark, e-mail)", notifyAdd},
		{"notify list", "[--json]", "list alert channels (secrets masked)", notifyList},
		{"notify test", "NAME|ID [--json]", "send a test message to a channel now and say whether it arrived", notifyTest},
		{"notify remove", "NAME|ID", "delete an alert channel", notifyRemove},
		{"doctor", doctorSynopsis, "check config, store, clock and each account's reachability; say what is wrong", doctorCmd},
		{"backup", backupSynopsis, "write a consistent copy of the database to FILE, also while the server runs", backupCmd},
		{"restore", restoreSynopsis, "put a backup in place of the database (server stopped); the old one stays as crs.db.bak", restoreCmd},
		{"export", exportSynopsis, "write keys, accounts, groups, admin and usage as one JSON file (credentials stay sealed)", exportCmd},
		{"import", importSynopsis, "read a crs export into this deployment, re-sealing credentials with its key; safe to re-run", importCmd},
		{"healthcheck", healthcheckSynopsis, "exit 0 when the server's /health answers 200 (for container health checks)", healthcheckCmd},
		{"service install", serviceInstallSynopsis, "run crs serve as a systemd service that starts at boot (Linux, as root)", serviceInstall},
		{"service uninstall", serviceRemoveSynopsis, "stop, disable and remove the systemd service (DATA_DIR stays)", serviceUninstall},
		{"service start", serviceNameSynopsis, "start the service", serviceVerb("start")},
		{"service stop", serviceNameSynopsis, "stop the service (open streams drain first)", serviceVerb("stop")},
		{"service restart", serviceNameSynopsis, "restart the service, e.g. after an upgrade", serviceVerb("restart")},
		{"service status", serviceNameSynopsis, "show whether the service runs (systemctl status)", serviceStatus},
		{"service logs", serviceLogsSynopsis, "show the service's log (journalctl)", serviceLogs},
		{"prices show", "[--json]", "show the price table in use: version, date, origin, model count", pricesShow},
		{"prices update", pricesUpdateSynopsis, "store a new price table from FILE or URL (default $PRICES_URL); running servers switch to it", pricesUpdate},
		{"prices reset", "", "go back to the price table built into this binary", pricesReset},
		{"version", "[--data-dir DIR]", "print the version and the price table in use", versionCmd},
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: crs <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  crs %s %s\n      %s\n", c.name, c.synopsis, c.short)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every command takes --data-dir DIR (default $DATA_DIR, else ./data).")
	fmt.Fprintln(w, "Run crs <command> -h for its flags.")
}

// run executes one command line and returns the exit status. Errors are
// one line "crs: <reason>" on stderr; a wrong command line prints usage
// and returns 2.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			// `crs help keys create` shows that command's flags.
			return run(ctx, append(append([]string{}, args[1:]...), "-h"), stdin, stdout, stderr)
		}
		printUsage(stdout)
		return exitOK
	case "serve":
		return c.exit(runServe(ctx, args[1:], stdout, stderr))
	}
	all := commands()
	// Longest match first: "keys create" before a bare group name.
	for _, cmd := range all {
		words := strings.Fields(cmd.name)
		if cmd.run == nil || len(args) < len(words) || strings.Join(args[:len(words)], " ") != cmd.name {
			continue
		}
		return c.exit(cmd.run(ctx, c, args[len(words):]))
	}
	// A known group without (or with a wrong) subcommand: list the group.
	var group []command
	for _, cmd := range all {
		if g, _, ok := strings.Cut(cmd.name, " "); ok && g == args[0] {
			group = append(group, cmd)
		}
	}
	if len(group) > 0 {
		if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
			fmt.Fprintf(stderr, "crs: unknown command %q\n\n", args[0]+" "+args[1])
		}
		fmt.Fprintf(stderr, "Usage of crs %s:\n", args[0])
		for _, cmd := range group {
			fmt.Fprintf(stderr, "  crs %s %s\n      %s\n", cmd.name, cmd.synopsis, cmd.short)
		}
		if len(args) > 1 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	fmt.Fprintf(stderr, "crs: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return exitUsage
}

// usageError is a wrong command line that has not been reported yet.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errReported is a wrong command line the flag package already reported
// (with the command's usage).
var errReported = errors.New("reported")

// exit reports err as one line and maps it to an exit status.
func (c *cli) exit(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errReported):
		return exitUsage
	case errors.As(err, &ue):
		fmt.Fprintln(c.stderr, "crs: "+oneLine(ue.msg))
		return exitUsage
	}
	fmt.Fprintln(c.stderr, "crs: "+oneLine(describe(err)))
	return exitError
}

// describe phrases errors from the admin service in the CLI's terms: a
// field becomes its flag, a missing record says what was missing.
func describe(err error) string {
	var inv *admin.InvalidError
	switch {
	case errors.As(err, &inv):
		return flagName(inv.Field) + ": " + inv.Reason
	case errors.Is(err, store.ErrNotFound):
		return "not found (check the ID with the list command)"
	case errors.Is(err, store.ErrConflict):
		return "already exists"
	}
	return err.Error()
}

// flagName maps an admin JSON field to the CLI flag that sets it.
func flagName(field string) string {
	switch field {
	case "expires_at":
		return "--expires"
	case "binding_fallback":
		return "--account-fallback"
	case "body":
		return "input"
	}
	return "--" + strings.ReplaceAll(field, "_", "-")
}

// oneLine joins a multi-line error (config errors list every bad variable)
// into one line, as scripts expect.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// newFlags makes the FlagSet of one command, with --data-dir on it.
func newFlags(c *cli, name, synopsis string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("crs "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: crs %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	dataDir := fs.String("data-dir", "", "state directory (default $DATA_DIR, else ./data)")
	return fs, dataDir
}

// parse parses args, allowing flags after positional arguments (`crs keys
// disable ID --data-dir d`), and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errReported
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// withEnv opens the env for dataDir, runs f, and closes the env.
func (c *cli) withEnv(ctx context.Context, dataDir string, f func(*env) error) error {
	e, err := openEnv(ctx, dataDir, c.getenv)
	if err != nil {
		return err
	}
	ferr := f(e)
	if cerr := e.Close(); ferr == nil {
		ferr = cerr
	}
	return ferr
}
