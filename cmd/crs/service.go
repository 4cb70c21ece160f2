package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/template"
	"unicode"
)

// `crs service …` runs crs as a systemd service: install writes a unit for
// `crs serve` and the other commands drive it through systemctl and
// journalctl, so an admin never needs a daemonising shell script. The
// tools are found on PATH and the unit directory is a flag, which is how
// the tests run all of it against a fake systemctl without systemd.

// Where units go, and the unit name, unless flags say otherwise.
const (
	defaultUnitDir  = "/etc/systemd/system"
	defaultUnitName = "crs"
)

const (
	serviceInstallSynopsis = "[--user NAME] [--binary PATH] [--name crs] [--unit-dir DIR] [--data-dir DIR]"
	serviceNameSynopsis    = "[--name crs]"
	serviceRemoveSynopsis  = "[--name crs] [--unit-dir DIR]"
	serviceLogsSynopsis    = "[--name crs] [--lines N] [--follow] [--since TIME]"
)

// unitConfig is what a unit file is made of. Every field is checked by
// renderUnit before it reaches the file.
type unitConfig struct {
	Name    string // unit name without ".service"
	Binary  string // absolute path of the crs binary
	User    string // account the server runs as
	DataDir string // absolute DATA_DIR
}

// unitTemplate is the unit `crs service install` writes. deploy/crs.service
// is this template rendered for /usr/local/bin/crs, user crs and
// /var/lib/crs (a test keeps the two equal), for packagers who install the
// file themselves.
var unitTemplate = template.Must(template.New("unit").Parse(`# {{.Name}}.service: the crs relay as a systemd service, as
# "crs service install" writes it; run that again after moving the binary
# or DATA_DIR instead of editing this file. Settings other than DATA_DIR
# (PORT, HOST, TIMEZONE, …; see "crs serve -h") go in the optional
# environment file named below, one VAR=value a line, mode 0600.
[Unit]
Description=crs relay
Documentation=https://github.com/crs-relay/crs/blob/main/docs/deploy.md
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={{.User}}
Environment=DATA_DIR={{.DataDir}}
EnvironmentFile=-/etc/crs/{{.Name}}.env
ExecStart={{.Binary}} serve
Restart=on-failure
RestartSec=2s
# On SIGTERM crs stops accepting and lets open streams finish for
# SHUTDOWN_TIMEOUT (30s by default); give it longer than that.
TimeoutStopSec=60s
LimitNOFILE=65536
UMask=0077
# crs writes its DATA_DIR and nothing else.
NoNewPrivileges=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectSystem=full
ProtectHome=read-only
ReadWritePaths=-{{.DataDir}}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
`))

// renderUnit checks u and fills the template. Paths and names are limited
// to characters that mean nothing to systemd: no quoting, "%" specifiers
// or "$" expansions can change what the unit says.
func renderUnit(u unitConfig) ([]byte, error) {
	if err := checkUnitName(u.Name); err != nil {
		return nil, err
	}
	for _, p := range []struct{ what, path string }{{"--binary", u.Binary}, {"--data-dir", u.DataDir}} {
		if !filepath.IsAbs(p.path) {
			return nil, fmt.Errorf("%s: %q is not an absolute path", p.what, p.path)
		}
		if !plainPath(p.path) {
			return nil, fmt.Errorf("%s: %q has characters a systemd unit would misread (spaces, quotes, %%, $, \\); use a plainer path", p.what, p.path)
		}
	}
	if u.User == "" || strings.HasPrefix(u.User, "-") || !onlyRunes(u.User, "_.-") {
		return nil, fmt.Errorf("--user: %q is not a user name", u.User)
	}
	var b bytes.Buffer
	if err := unitTemplate.Execute(&b, u); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// plainPath reports whether p holds only letters, digits and / . _ - + @ , ~ :.
func plainPath(p string) bool { return onlyRunes(p, "/._-+@,~:") }

// onlyRunes reports whether s holds only letters, digits and the runes
// in extra.
func onlyRunes(s, extra string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(extra, r) {
			return false
		}
	}
	return true
}

// checkUnitName accepts a unit name such as "crs" or "crs-team".
func checkUnitName(name string) error {
	if name == "" || strings.HasPrefix(name, "-") || strings.HasPrefix(name, ".") || !onlyRunes(name, "_.-@") {
		return fmt.Errorf("--name: %q is not a unit name (letters, digits, _ . - @)", name)
	}
	return nil
}

// unitName normalises --name: "crs.service" and "crs" are the same unit.
func unitName(name string) (string, error) {
	name = strings.TrimSuffix(name, ".service")
	return name, checkUnitName(name)
}

// needSystemd refuses to run `crs service` where systemd cannot be.
func needSystemd() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("crs service drives systemd, which needs Linux; on %s run crs serve under your own supervisor (see docs/deploy.md)", runtime.GOOS)
	}
	return nil
}

// systemd runs systemctl or journalctl (found on PATH) with the command's
// own standard streams, so their output, prompts and colours reach the
// admin unchanged.
func (c *cli) systemd(ctx context.Context, tool string, args ...string) error {
	path, err := exec.LookPath(tool)
	if err != nil {
		return fmt.Errorf("%s not found on PATH: crs service needs systemd (see docs/deploy.md)", tool)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.stdin, c.stdout, c.stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &toolError{tool: tool, args: args, code: ee.ExitCode()}
		}
		return fmt.Errorf("%s: %w", tool, err)
	}
	return nil
}

// toolError is a systemctl or journalctl that ran and exited non-zero; it
// has printed its own explanation already.
type toolError struct {
	tool string
	args []string
	code int
}

func (e *toolError) Error() string {
	return fmt.Sprintf("%s %s exited with status %d", e.tool, strings.Join(e.args, " "), e.code)
}

// serviceInstall writes the unit, makes sure DATA_DIR exists and belongs
// to the service's user, and enables the unit so it starts at boot.
func serviceInstall(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "service install", serviceInstallSynopsis)
	userName := fs.String("user", "", "run the server as this user (default: the user who ran sudo, else the current one)")
	binary := fs.String("binary", "", "crs binary the unit starts (default: this one)")
	name := fs.String("name", defaultUnitName, "unit name")
	unitDir := fs.String("unit-dir", defaultUnitDir, "directory the unit file goes in")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("service install: unexpected argument %q", pos[0])}
	}
	if err := needSystemd(); err != nil {
		return err
	}
	u := unitConfig{User: *userName}
	if u.Name, err = unitName(*name); err != nil {
		return usageError{err.Error()}
	}
	if u.Binary, err = serviceBinary(*binary); err != nil {
		return err
	}
	if u.DataDir, err = absDataDir(*dataDir, c.getenv); err != nil {
		return err
	}
	if u.DataDir == "/" {
		return usageError{"--data-dir: / is not a data directory"}
	}
	if u.User == "" {
		if u.User, err = defaultServiceUser(c.getenv); err != nil {
			return err
		}
	}
	account, err := user.Lookup(u.User)
	if err != nil {
		return fmt.Errorf("user %s does not exist; create one for crs (useradd --system --home-dir %s --shell /usr/sbin/nologin %s) or pass --user", u.User, u.DataDir, u.User)
	}
	unit, err := renderUnit(u)
	if err != nil {
		return usageError{err.Error()}
	}

	if err := os.MkdirAll(u.DataDir, 0o700); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("DATA_DIR: %w; run it as root (sudo crs service install …)", err)
		}
		return fmt.Errorf("DATA_DIR: %w", err)
	}
	if err := giveTo(u.DataDir, account); err != nil {
		return fmt.Errorf("giving %s to %s: %w", u.DataDir, u.User, err)
	}
	path := filepath.Join(*unitDir, u.Name+".service")
	if err := writeFileAtomic(path, unit, 0o644); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("writing %s: permission denied; run it as root (sudo crs service install …)", path)
		}
		return fmt.Errorf("writing %s: %w", path, err)
	}
	fmt.Fprintf(c.stdout, "wrote %s: %s serve as user %s, DATA_DIR %s\n", path, u.Binary, u.User, u.DataDir)
	if account.Uid == "0" {
		fmt.Fprintln(c.stdout, "note: the server will run as root; a user of its own is safer (useradd --system crs, then --user crs)")
	}
	if err := c.systemd(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	if err := c.systemd(ctx, "systemctl", "enable", u.Name+".service"); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "enabled %s.service (it starts at boot); start it now with: crs service start%s\n", u.Name, nameFlag(u.Name))
	return nil
}

// serviceUninstall stops and disables the unit and removes its file.
// DATA_DIR is left alone: it holds the keys, accounts and usage.
func serviceUninstall(ctx context.Context, c *cli, args []string) error {
	var unitDir *string
	n, err := serviceArgs(c, "service uninstall", serviceRemoveSynopsis, args, func(fs *flag.FlagSet) {
		unitDir = fs.String("unit-dir", defaultUnitDir, "directory the unit file is in")
	})
	if err != nil {
		return err
	}
	path := filepath.Join(*unitDir, n+".service")
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(c.stdout, "%s.service is not installed (no %s); nothing to do\n", n, path)
		return nil
	}
	if err := c.systemd(ctx, "systemctl", "disable", "--now", n+".service"); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	if err := c.systemd(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "stopped, disabled and removed %s.service; DATA_DIR is untouched\n", n)
	return nil
}

// serviceVerb makes start, stop and restart: each one systemctl call.
func serviceVerb(verb string) func(context.Context, *cli, []string) error {
	past := map[string]string{"start": "started", "stop": "stopped", "restart": "restarted"}[verb]
	return func(ctx context.Context, c *cli, args []string) error {
		n, err := serviceArgs(c, "service "+verb, serviceNameSynopsis, args, nil)
		if err != nil {
			return err
		}
		if err := c.systemd(ctx, "systemctl", verb, n+".service"); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s %s.service (crs service status%s shows how it is doing)\n", past, n, nameFlag(n))
		return nil
	}
}

// serviceStatus shows systemctl's status of the unit. Its exit status
// carries meaning for scripts (0 running, 3 not running, 4 no such unit),
// so a failure is put in words.
func serviceStatus(ctx context.Context, c *cli, args []string) error {
	n, err := serviceArgs(c, "service status", serviceNameSynopsis, args, nil)
	if err != nil {
		return err
	}
	err = c.systemd(ctx, "systemctl", "status", "--no-pager", n+".service")
	var te *toolError
	if errors.As(err, &te) {
		switch te.code {
		case 3:
			return fmt.Errorf("%s.service is not running", n)
		case 4:
			return fmt.Errorf("there is no %s.service; install it with crs service install", n)
		}
	}
	return err
}

// serviceLogs shows the unit's journal.
func serviceLogs(ctx context.Context, c *cli, args []string) error {
	var lines *int
	var since *string
	var follow bool
	n, err := serviceArgs(c, "service logs", serviceLogsSynopsis, args, func(fs *flag.FlagSet) {
		lines = fs.Int("lines", 100, "how many of the latest lines to show")
		fs.BoolVar(&follow, "follow", false, "keep printing new lines until interrupted")
		fs.BoolVar(&follow, "f", false, "short for --follow")
		since = fs.String("since", "", `only lines since this time ("2025-01-02 10:00", "1 hour ago", "today")`)
	})
	if err != nil {
		return err
	}
	if *lines < 0 {
		return usageError{"--lines: must not be negative"}
	}
	jargs := []string{"--unit", n + ".service", "--no-pager", "--lines", strconv.Itoa(*lines)}
	if *since != "" {
		jargs = append(jargs, "--since", *since)
	}
	if follow {
		jargs = append(jargs, "--follow")
	}
	err = c.systemd(ctx, "journalctl", jargs...)
	if ctx.Err() != nil && follow {
		return nil // Ctrl-C ends --follow; that is no failure
	}
	return err
}

// serviceArgs parses the command line of a service command other than
// install: flags only, --name and those more defines (it may be nil), no
// --data-dir. It returns the unit name, once it is sure systemd can be
// there.
func serviceArgs(c *cli, cmd, synopsis string, args []string, more func(*flag.FlagSet)) (string, error) {
	fs := flag.NewFlagSet("crs "+cmd, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: crs %s %s\n", cmd, synopsis)
		fs.PrintDefaults()
	}
	name := fs.String("name", defaultUnitName, "unit name")
	if more != nil {
		more(fs)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) > 0 {
		return "", usageError{fmt.Sprintf("%s: unexpected argument %q", cmd, pos[0])}
	}
	if err := needSystemd(); err != nil {
		return "", err
	}
	n, err := unitName(*name)
	if err != nil {
		return "", usageError{err.Error()}
	}
	return n, nil
}

// nameFlag is the --name flag a follow-up command needs, or nothing for
// the default unit.
func nameFlag(name string) string {
	if name == defaultUnitName {
		return ""
	}
	return " --name " + name
}

// serviceBinary resolves the crs binary a unit should start: --binary, or
// this very binary, unless that is a throwaway `go run` build.
func serviceBinary(flagValue string) (string, error) {
	p := flagValue
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("cannot tell where this crs binary is (%v); pass --binary", err)
		}
		p = exe
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil && flagValue == "" {
		abs = resolved
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("--binary: %w", err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("--binary: %s is not an executable file", abs)
	}
	if flagValue == "" && strings.Contains(abs, string(filepath.Separator)+"go-build") {
		return "", fmt.Errorf("this crs is a temporary go run build (%s); install the binary (e.g. to /usr/local/bin/crs) and run install from there, or pass --binary", abs)
	}
	return abs, nil
}

// absDataDir resolves DATA_DIR the way the server will (flag, then
// $DATA_DIR, then ./data) and makes it absolute, since the service does not
// start in this directory.
func absDataDir(flagValue string, getenv func(string) string) (string, error) {
	d := flagValue
	if d == "" {
		d = strings.TrimSpace(getenv("DATA_DIR"))
	}
	if d == "" {
		d = "./data"
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", fmt.Errorf("DATA_DIR: %w", err)
	}
	return abs, nil
}

// defaultServiceUser is the user who ran sudo, or else the current user:
// the one who set crs up, and so the one whose files DATA_DIR holds.
func defaultServiceUser(getenv func(string) string) (string, error) {
	if os.Geteuid() == 0 {
		if su := getenv("SUDO_USER"); su != "" && su != "root" {
			return su, nil
		}
	}
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("cannot tell the current user (%v); pass --user", err)
	}
	return u.Username, nil
}

// giveTo makes dir and everything in it belong to account, when we are
// root and account is not: a DATA_DIR that root prepared (or that an
// earlier `sudo crs serve` wrote) would otherwise be unreadable to the
// service.
func giveTo(dir string, account *user.User) error {
	if os.Geteuid() != 0 || account.Uid == "0" {
		return nil
	}
	uid, err1 := strconv.Atoi(account.Uid)
	gid, err2 := strconv.Atoi(account.Gid)
	if err1 != nil || err2 != nil {
		return nil // not a POSIX account; nothing to chown
	}
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// writeFileAtomic replaces path with data, so a unit file is never seen
// half written.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
