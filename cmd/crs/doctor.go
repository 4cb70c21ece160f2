package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crs-relay/crs/internal/config"
	"github.com/crs-relay/crs/internal/lockfile"
	"github.com/crs-relay/crs/internal/netx"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/backend"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

const doctorSynopsis = "[--data-dir DIR] [--timeout 10s] [--offline]"

// maxClockSkew is how far this machine's clock may be from an upstream's
// before doctor calls it a problem: token expiry, daily usage boundaries
// and rate windows are all computed from it.
const maxClockSkew = 2 * time.Minute

// probeParallel bounds the reachability probes in flight at once.
const probeParallel = 8

// doctor is one run of `crs doctor`: it prints a line per finding and
// counts the problems, which make the exit status non-zero.
type doctor struct {
	out      io.Writer
	problems int
}

func (d *doctor) ok(what, format string, args ...any)   { d.line("ok     ", what, format, args...) }
func (d *doctor) note(what, format string, args ...any) { d.line("note   ", what, format, args...) }
func (d *doctor) problem(what, format string, args ...any) {
	d.problems++
	d.line("PROBLEM", what, format, args...)
}

func (d *doctor) line(level, what, format string, args ...any) {
	fmt.Fprintf(d.out, "%s %s: %s\n", level, what, fmt.Sprintf(format, args...))
}

// doctorCmd checks what a working relay needs — configuration, DATA_DIR,
// the store, the encryption key, the clock, and each account's way to its
// upstream — and says in plain words what is wrong. It sends no
// credential anywhere: reachability is a HEAD to the account's API root.
func doctorCmd(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "doctor", doctorSynopsis)
	timeout := fs.Duration("timeout", 10*time.Second, "how long each network check may take")
	offline := fs.Bool("offline", false, "skip the checks that need the network (clock, reachability)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("doctor: unexpected argument %q", pos[0])}
	}
	d := &doctor{out: c.stdout}
	d.run(ctx, c.getenv, *dataDir, *timeout, *offline)
	if d.problems > 0 {
		return fmt.Errorf("doctor found %d problem%s (marked PROBLEM above)", d.problems, plural(d.problems))
	}
	fmt.Fprintln(c.stdout, "no problems found")
	return nil
}

func (d *doctor) run(ctx context.Context, getenv func(string) string, dataDirFlag string, timeout time.Duration, offline bool) {
	getenv = withDataDir(getenv, dataDirFlag)
	cfg, err := config.Load(getenv)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			d.problem("config", "%s", line)
		}
		return
	}
	d.ok("config", "valid; DATA_DIR %s, listening on %s", cfg.DataDir, cfg.Addr())

	fi, err := os.Stat(cfg.DataDir)
	switch {
	case errors.Is(err, os.ErrNotExist) && cfg.Shared():
		// The shared store is in Redis; DATA_DIR holds only this
		// instance's spool and init.json, made at its first start.
		d.note("DATA_DIR", "%s does not exist yet; crs serve creates it on first start", cfg.DataDir)
	case errors.Is(err, os.ErrNotExist):
		d.problem("DATA_DIR", "%s does not exist; crs serve creates it on first start, so if crs has run before, DATA_DIR (or --data-dir) points at the wrong place", cfg.DataDir)
		return
	case err != nil:
		d.problem("DATA_DIR", "%v", err)
		return
	case !fi.IsDir():
		d.problem("DATA_DIR", "%s is not a directory", cfg.DataDir)
		return
	}
	if err == nil {
		d.checkOwners(cfg.DataDir)
	}
	box := d.checkKey(cfg)

	db := filepath.Join(cfg.DataDir, DBFile)
	var accounts []store.Account
	if cfg.Shared() {
		accounts = d.checkSharedStore(ctx, cfg, box)
	} else if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		d.note("store", "no database yet at %s; crs serve creates it on first start", db)
	} else {
		accounts = d.checkStore(ctx, db)
	}
	d.checkServer(ctx, cfg, timeout)
	checks := planAccounts(cfg, box, accounts)
	if offline {
		d.report(checks, false, timeout)
		d.note("network", "clock and reachability not checked (--offline)")
		return
	}
	pool := netx.NewPool(netx.Options{DialTimeout: timeout, TLSHandshakeTimeout: timeout})
	defer pool.CloseIdle()
	probeAccounts(ctx, pool, checks, timeout)
	d.report(checks, true, timeout)
	d.checkClock(ctx, pool, cfg, checks, timeout)
}

// checkOwners finds crs's files that belong to someone other than DATA_DIR's
// owner, typically left by a command run with sudo: the server, running
// as the owner, then cannot write them.
func (d *doctor) checkOwners(dir string) {
	uid, _, ok := fileOwner(dir)
	if !ok {
		return
	}
	for _, n := range append(ownedNames(dir), config.EncryptionKeyFile, config.JWTSecretFile) {
		if u, _, ok := fileOwner(filepath.Join(dir, n)); ok && u != uid {
			d.problem("DATA_DIR", "%s belongs to uid %d but DATA_DIR to uid %d, so a server running as its owner cannot use it; fix: chown %d %s",
				n, u, uid, uid, filepath.Join(dir, n))
		}
	}
}

// checkKey finds the encryption key the server would use, without
// generating one, and returns the box it makes (nil when there is none).
func (d *doctor) checkKey(cfg config.Config) *secret.Box {
	key, from := cfg.EncryptionKey, "ENCRYPTION_KEY"
	if key == "" {
		path := filepath.Join(cfg.DataDir, config.EncryptionKeyFile)
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			d.note("encryption key", "ENCRYPTION_KEY is not set and %s does not exist; crs serve generates one on first start", path)
			return nil
		case err != nil:
			d.problem("encryption key", "%v", err)
			return nil
		}
		key, from = strings.TrimSpace(string(b)), path
		if len(key) < 32 {
			d.problem("encryption key", "%s holds fewer than 32 characters", path)
			return nil
		}
	}
	box, err := secret.NewBox(key)
	if err != nil {
		d.problem("encryption key", "%v", err)
		return nil
	}
	d.ok("encryption key", "from %s", from)
	return box
}

// checkStore checks the database file, opens it as the server would
// (migrating it), and returns the accounts.
func (d *doctor) checkStore(ctx context.Context, db string) []store.Account {
	version, err := sqlite.CheckFile(ctx, db)
	if err != nil {
		d.problem("store", "%v; restore a backup (crs restore FILE)", err)
		return nil
	}
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		d.problem("store", "%s does not open: %v", db, err)
		return nil
	}
	defer st.Close()
	if err := st.Ping(ctx); err != nil {
		d.problem("store", "%v", err)
		return nil
	}
	keys, err := st.ListKeys(ctx, false)
	if err != nil {
		d.problem("store", "listing keys: %v", err)
		return nil
	}
	accounts, err := st.ListAccounts(ctx)
	if err != nil {
		d.problem("store", "listing accounts: %v", err)
		return nil
	}
	d.ok("store", "%s (schema v%d) answers; %d key%s, %d account%s", db, version, len(keys), plural(len(keys)), len(accounts), plural(len(accounts)))
	if len(accounts) == 0 {
		d.note("accounts", "none yet; add one with crs accounts add (or crs accounts oauth start)")
	}
	return accounts
}

// checkSharedStore opens the shared store as the server would, and says
// whether Redis answers, keeps what it is told, and seals with this
// ENCRYPTION_KEY.
func (d *doctor) checkSharedStore(ctx context.Context, cfg config.Config, box *secret.Box) []store.Account {
	where := strings.Join(cfg.Redis.Addrs, ",")
	st, err := backend.Open(ctx, cfg)
	if err != nil {
		d.problem("store", "Redis at %s: %v", where, err)
		return nil
	}
	defer st.Close()
	keys, err := st.ListKeys(ctx, false)
	if err != nil {
		d.problem("store", "listing keys: %v", err)
		return nil
	}
	accounts, err := st.ListAccounts(ctx)
	if err != nil {
		d.problem("store", "listing accounts: %v", err)
		return nil
	}
	d.ok("store", "shared, Redis at %s (prefix %s) answers; %d key%s, %d account%s", where, cfg.Redis.Prefix,
		len(keys), plural(len(keys)), len(accounts), plural(len(accounts)))
	findings, err := backend.Durability(ctx, st)
	switch {
	case err != nil:
		d.problem("redis persistence", "%v", err)
	case len(findings) == 0:
		d.ok("redis persistence", "append-only file on, no eviction")
	default:
		for _, f := range findings {
			if strings.Contains(f, "does not let crs read") {
				d.note("redis persistence", "%s", f)
			} else {
				d.problem("redis persistence", "%s", f)
			}
		}
	}
	if box != nil {
		if _, err := checkKey(ctx, st, box, true); err != nil {
			d.problem("encryption key", "%v", err)
		}
	}
	if len(accounts) == 0 {
		d.note("accounts", "none yet; add one with crs accounts add (or crs accounts oauth start)")
	}
	return accounts
}

// checkServer says whether a server runs on this DATA_DIR and, if so,
// whether it answers its health check.
func (d *doctor) checkServer(ctx context.Context, cfg config.Config, timeout time.Duration) {
	path := filepath.Join(cfg.DataDir, pidFile)
	if _, err := os.Stat(path); err != nil {
		// crs serve makes the lockfile; not making it here keeps a root
		// doctor from leaving a file the service's user cannot open.
		d.note("server", "crs serve has not run on this DATA_DIR")
		return
	}
	lock, err := lockfile.Acquire(path)
	var held *lockfile.HeldError
	switch {
	case errors.As(err, &held):
		u, _ := healthURL(localURL(cfg.Host, strconv.Itoa(cfg.Port)))
		if _, err := checkHealth(ctx, u, timeout); err != nil {
			d.problem("server", "crs serve runs (pid %d) but %v", held.PID, err)
			return
		}
		d.ok("server", "crs serve runs (pid %d) and %s answers", held.PID, u)
	case err != nil:
		d.problem("server", "cannot read the lockfile %s: %v", path, err)
	default:
		lock.Release()
		d.note("server", "crs serve is not running on this DATA_DIR")
	}
}

// accountCheck is what doctor learns about one account: findings from its
// stored state, and the probe of its way upstream when one is worth
// making. An account's lines are printed together once the probes are in.
type accountCheck struct {
	label    string
	findings []finding
	base     string // API root the account sends to; "" when not probed
	proxy    string // proxy URL, "" for direct
	result   probeResult
}

// finding is one line doctor prints.
type finding struct {
	problem bool
	text    string
}

func (a *accountCheck) problem(format string, args ...any) {
	a.findings = append(a.findings, finding{true, fmt.Sprintf(format, args...)})
}

func (a *accountCheck) note(format string, args ...any) {
	a.findings = append(a.findings, finding{false, fmt.Sprintf(format, args...)})
}

// planAccounts judges each account's state and credential without the
// network, and decides which ones to probe.
func planAccounts(cfg config.Config, box *secret.Box, accounts []store.Account) []*accountCheck {
	now := time.Now()
	checks := make([]*accountCheck, 0, len(accounts))
	for _, a := range accounts {
		c := &accountCheck{label: fmt.Sprintf("account %q (%s, %s %s)", a.Name, a.ID, a.Platform, a.Type)}
		checks = append(checks, c)
		if a.Disabled {
			c.note("disabled; not checked")
			continue
		}
		if len(a.SealedSecret) > 0 {
			if box == nil {
				c.problem("there is no ENCRYPTION_KEY to open its credential with")
			} else if _, err := box.Open(a.SealedSecret); err != nil {
				c.problem("its credential does not open with this ENCRYPTION_KEY: the key changed since the account was added; put the old key back or add the account again")
			}
		}
		if len(a.SealedProxy) > 0 {
			if box == nil {
				c.problem("there is no ENCRYPTION_KEY to open its proxy setting with")
				continue
			}
			raw, err := box.Open(a.SealedProxy)
			if err != nil {
				c.problem("its proxy setting does not open with this ENCRYPTION_KEY")
				continue
			}
			if err := netx.ValidateProxyURL(string(raw)); err != nil {
				c.problem("its proxy is not usable: %v; fix it with crs accounts update %s --proxy URL", err, a.ID)
				continue
			}
			c.proxy = string(raw)
		}
		if a.CooldownUntil != nil && a.CooldownUntil.After(now) {
			until := a.CooldownUntil.Local().Format("2006-01-02 15:04")
			reason := a.CooldownReason
			if reason == "" {
				reason = "no reason given"
			}
			switch a.CooldownKind {
			case store.CooldownCredentialDead:
				c.problem("its credential was refused (%s); authorise it again or give it a new key, then crs accounts reset %s", reason, a.ID)
			case store.CooldownBlocked:
				c.problem("the upstream blocked it (%s); it is out of service until %s", reason, until)
			case store.CooldownRateLimited:
				c.note("rate-limited until %s", until)
			default:
				c.note("resting until %s after upstream errors (%s)", until, reason)
			}
		}
		if a.Unschedulable {
			c.note("marked unschedulable: kept out of routing")
		}
		if c.base = accountBase(cfg, a); c.base == "" {
			c.note("has no API root to check reachability against")
		}
	}
	return checks
}

// report prints each account's findings and probe outcome together; an
// account with no problem and nothing probed gets an ok line of its own.
func (d *doctor) report(checks []*accountCheck, probed bool, timeout time.Duration) {
	for _, c := range checks {
		sound := true
		for _, f := range c.findings {
			if f.problem {
				sound = false
				d.problem(c.label, "%s", f.text)
			} else {
				d.note(c.label, "%s", f.text)
			}
		}
		switch {
		case probed && c.base != "":
			via := "directly"
			if c.proxy != "" {
				via = "through " + netx.RedactProxyURL(c.proxy)
			}
			if r := c.result; r.err != nil {
				d.problem(c.label, "cannot reach %s %s: %s", redactURL(c.base), via, explainProbe(r.err, timeout))
			} else {
				d.ok(c.label, "reached %s %s (HTTP %d in %s)", redactURL(c.base), via, r.status, r.took.Round(time.Millisecond))
			}
		case sound && len(c.findings) == 0:
			d.ok(c.label, "credential opens; state usable")
		}
	}
}

// accountBase is the API root the relay sends an account's requests to:
// its own base URL, or its platform's default.
func accountBase(cfg config.Config, a store.Account) string {
	if a.BaseURL != "" {
		return a.BaseURL
	}
	switch {
	case a.Platform == store.PlatformClaude:
		return cfg.ClaudeAPIURL
	case a.Platform == store.PlatformOpenAI && a.Type == store.TypeOAuth:
		return cfg.CodexAPIURL
	case a.Platform == store.PlatformOpenAI:
		return cfg.OpenAIAPIURL
	case a.Platform == store.PlatformGemini && a.Type == store.TypeOAuth:
		return cfg.CodeAssistAPIURL
	case a.Platform == store.PlatformGemini:
		return cfg.GeminiAPIURL
	}
	return ""
}

// probeResult is what one HEAD learned.
type probeResult struct {
	status int
	took   time.Duration
	date   time.Time // the upstream's Date header; zero without one
	mid    time.Time // our clock halfway through the exchange
	err    error
}

// probeAccounts probes every account worth probing, each through its own
// proxy, a few at a time.
func probeAccounts(ctx context.Context, pool *netx.Pool, checks []*accountCheck, timeout time.Duration) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, probeParallel)
	for _, c := range checks {
		if c.base == "" {
			continue
		}
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			c.result = probe(ctx, pool, c.base, c.proxy, timeout)
		})
	}
	wg.Wait()
}

// checkClock compares this machine's clock with the first upstream Date
// header the account probes brought back. Without any account to probe it
// asks the Claude API root directly.
func (d *doctor) checkClock(ctx context.Context, pool *netx.Pool, cfg config.Config, checks []*accountCheck, timeout time.Duration) {
	var clock *probeResult
	from, probed := "", false
	for _, c := range checks {
		probed = probed || c.base != ""
		if c.base != "" && c.result.err == nil && !c.result.date.IsZero() {
			clock, from = &c.result, redactURL(c.base)
			break
		}
	}
	if clock == nil && !probed {
		r := probe(ctx, pool, cfg.ClaudeAPIURL, "", timeout)
		if r.err != nil {
			d.note("network", "cannot reach %s directly: %s (accounts behind a proxy may still work)", redactURL(cfg.ClaudeAPIURL), explainProbe(r.err, timeout))
		} else if !r.date.IsZero() {
			clock, from = &r, redactURL(cfg.ClaudeAPIURL)
		}
	}
	if clock == nil {
		d.note("clock", "not checked: no upstream answered with a Date header (offline?)")
		return
	}
	// Date has whole seconds: the upstream's time was half a second
	// later on average.
	d.judgeSkew(clock.date.Add(500*time.Millisecond).Sub(clock.mid), from)
}

// judgeSkew reports skew, the upstream's clock minus ours.
func (d *doctor) judgeSkew(skew time.Duration, from string) {
	abs, way := skew, "behind"
	if skew < 0 {
		abs, way = -skew, "ahead of"
	}
	if abs > maxClockSkew {
		d.problem("clock", "this machine's clock is %s %s %s's; token expiry, daily usage and rate windows go wrong; turn on time sync (timedatectl set-ntp true)",
			abs.Round(time.Second), way, from)
		return
	}
	d.ok("clock", "within %s of %s", maxClockSkew, from)
}

// probe sends HEAD base through proxy. It carries no credential, only a
// user agent naming the check; any HTTP answer, whatever its status, means
// the way to the upstream works.
func probe(ctx context.Context, pool *netx.Pool, base, proxy string, timeout time.Duration) probeResult {
	client, err := pool.Client(proxy)
	if err != nil {
		return probeResult{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, base, nil)
	if err != nil {
		return probeResult{err: err}
	}
	req.Header.Set("User-Agent", "crs-doctor/"+strings.Fields(version())[0])
	start := time.Now()
	resp, err := client.Do(req)
	end := time.Now()
	if err != nil {
		return probeResult{err: err}
	}
	resp.Body.Close()
	r := probeResult{status: resp.StatusCode, took: end.Sub(start), mid: start.Add(end.Sub(start) / 2)}
	if t, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		r.date = t
	}
	return r
}

// explainProbe puts a failed probe in an operator's words.
func explainProbe(err error, timeout time.Duration) string {
	var pe *netx.ProxyError
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(err, &pe):
		return fmt.Sprintf("the proxy failed (%s): %v", pe.Op, pe.Err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s", timeout)
	case errors.As(err, &dns):
		return fmt.Sprintf("the name %s does not resolve (%v)", dns.Name, dns.Err)
	case errors.As(err, &op) && op.Op == "dial":
		return "cannot connect: " + strings.TrimPrefix(op.Err.Error(), "connect: ")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// redactURL hides a password in a base URL, should one carry userinfo.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
