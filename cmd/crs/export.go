package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/crs-relay/crs/internal/notify"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

// An export is one JSON object that carries a whole deployment from one
// store to another (SQLite to Redis and back, or between machines):
//
//	{"format":"crs-export","version":1,"exported_at":…,"backend":"sqlite",
//	 "key_check":…,"usage_count":N,
//	 "admin":{…},"settings":[…],"accounts":[…],"groups":[…],"keys":[…],
//	 "usage":[…]}
//
// It is written and read as a stream, one record at a time, because usage
// can run to millions of records. Account credentials and sealed settings
// stay sealed with the source's ENCRYPTION_KEY, so the file alone reveals
// no credential; relay keys are hashes already. key_check is a known text
// sealed with the same key: import opens it to learn, before writing
// anything, whether the target's key is the source's and whether the
// source key it was given is the right one.
const (
	exportFormat  = "crs-export"
	exportVersion = 1
	// keyCheckText is what key_check opens to.
	keyCheckText = "crs export key check v1"
	// usagePage is how many usage records export reads per query.
	usagePage = 1000
	// usageBatch is how many usage records import writes per transaction.
	usageBatch = 500
	// sourceKeyVar names the variable that can hold the source key.
	sourceKeyVar = "CRS_SOURCE_ENCRYPTION_KEY"
)

const exportSynopsis = "[--out FILE|-] [--data-dir DIR]"

// exportedSetting is a setting export carries. The store cannot list its
// settings, so every one worth moving is named here, with whether its
// owner seals it with the credential box (then import re-seals it).
type exportedSetting struct {
	name   string
	sealed bool
}

// exportedSettings lists the settings export carries.
func exportedSettings() []exportedSetting {
	return []exportedSetting{
		{notify.SettingName, true},   // webhook URLs and bot tokens
		{pricing.SettingName, false}, // a price table override, plain JSON
	}
}

// The records of an export. They are the store's types under stable JSON
// names, so a change of a Go field name never changes the file format.

type exportHeader struct {
	Format     string    `json:"format"`
	Version    int       `json:"version"`
	ExportedAt time.Time `json:"exported_at"`
	Backend    string    `json:"backend"`
	KeyCheck   []byte    `json:"key_check"`
	// UsageCount is the number of usage records when the export began;
	// records written meanwhile can make the file hold a few more.
	UsageCount int64 `json:"usage_count"`
}

type exportAdmin struct {
	Username     string    `json:"username"`
	PasswordHash string    `json:"password_hash"`
	UpdatedAt    time.Time `json:"updated_at"`
}

type exportSetting struct {
	Name   string `json:"name"`
	Sealed bool   `json:"sealed,omitempty"`
	Value  []byte `json:"value"`
}

type exportAccount struct {
	ID             store.AccountID      `json:"id"`
	Name           string               `json:"name"`
	Platform       store.Platform       `json:"platform"`
	Type           store.AccountType    `json:"type"`
	Priority       int                  `json:"priority"`
	Disabled       bool                 `json:"disabled,omitempty"`
	Unschedulable  bool                 `json:"unschedulable,omitempty"`
	BaseURL        string               `json:"base_url,omitempty"`
	SealedSecret   []byte               `json:"sealed_secret,omitempty"`
	SealedProxy    []byte               `json:"sealed_proxy,omitempty"`
	CooldownUntil  *time.Time           `json:"cooldown_until,omitempty"`
	CooldownKind   store.CooldownKind   `json:"cooldown_kind,omitempty"`
	CooldownReason string               `json:"cooldown_reason,omitempty"`
	Plan           string               `json:"plan,omitempty"`
	Options        store.AccountOptions `json:"options"`
	Quota          store.Quota          `json:"quota"`
	LastUsedAt     *time.Time           `json:"last_used_at,omitempty"`
	CreatedAt      time.Time            `json:"created_at"`
	UpdatedAt      time.Time            `json:"updated_at"`
}

type exportGroup struct {
	ID        store.GroupID     `json:"id"`
	Name      string            `json:"name"`
	Platform  store.Platform    `json:"platform"`
	Members   []store.AccountID `json:"members"`
	CreatedAt time.Time         `json:"created_at"`
}

type exportKey struct {
	ID          store.KeyID     `json:"id"`
	Name        string          `json:"name"`
	Hash        string          `json:"hash"`
	Hint        string          `json:"hint,omitempty"`
	Disabled    bool            `json:"disabled,omitempty"`
	Tags        []string        `json:"tags,omitempty"`
	Clients     []string        `json:"clients,omitempty"`
	Policy      store.KeyPolicy `json:"policy"`
	CreatedAt   time.Time       `json:"created_at"`
	LastUsedAt  *time.Time      `json:"last_used_at,omitempty"`
	ExpiresAt   *time.Time      `json:"expires_at,omitempty"`
	DeletedAt   *time.Time      `json:"deleted_at,omitempty"`
	ActivatedAt *time.Time      `json:"activated_at,omitempty"`
}

type exportUsage struct {
	RequestID     string          `json:"request_id"`
	Attempt       int             `json:"attempt,omitempty"`
	KeyID         store.KeyID     `json:"key_id"`
	AccountID     store.AccountID `json:"account_id"`
	Model         string          `json:"model"`
	Input         int64           `json:"input,omitempty"`
	Output        int64           `json:"output,omitempty"`
	CacheWrite5m  int64           `json:"cache_write_5m,omitempty"`
	CacheWrite1h  int64           `json:"cache_write_1h,omitempty"`
	CacheRead     int64           `json:"cache_read,omitempty"`
	CostPico      int64           `json:"cost_pico,omitempty"`
	RatedCostPico int64           `json:"rated_cost_pico,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	Status        int             `json:"status,omitempty"`
	LatencyMs     int64           `json:"latency_ms,omitempty"`
	FirstByteMs   int64           `json:"first_byte_ms,omitempty"`
	ClientAborted bool            `json:"client_aborted,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
}

func fromAdmin(a store.Admin) exportAdmin {
	return exportAdmin{a.Username, a.PasswordHash, a.UpdatedAt}
}

func (a exportAdmin) admin() store.Admin {
	return store.Admin{Username: a.Username, PasswordHash: a.PasswordHash, UpdatedAt: a.UpdatedAt}
}

func fromAccount(a store.Account) exportAccount {
	return exportAccount{a.ID, a.Name, a.Platform, a.Type, a.Priority, a.Disabled, a.Unschedulable, a.BaseURL,
		a.SealedSecret, a.SealedProxy, a.CooldownUntil, a.CooldownKind, a.CooldownReason, a.Plan,
		a.Options, a.Quota, a.LastUsedAt, a.CreatedAt, a.UpdatedAt}
}

func (a exportAccount) account() store.Account {
	return store.Account{ID: a.ID, Name: a.Name, Platform: a.Platform, Type: a.Type, Priority: a.Priority,
		Disabled: a.Disabled, Unschedulable: a.Unschedulable, BaseURL: a.BaseURL,
		SealedSecret: a.SealedSecret, SealedProxy: a.SealedProxy, CooldownUntil: a.CooldownUntil,
		CooldownKind: a.CooldownKind, CooldownReason: a.CooldownReason, Plan: a.Plan, Options: a.Options,
		Quota: a.Quota, LastUsedAt: a.LastUsedAt, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
}

func fromGroup(g store.Group) exportGroup {
	return exportGroup{g.ID, g.Name, g.Platform, g.Members, g.CreatedAt}
}

func (g exportGroup) group() store.Group {
	return store.Group{ID: g.ID, Name: g.Name, Platform: g.Platform, Members: g.Members, CreatedAt: g.CreatedAt}
}

func fromKey(k store.Key) exportKey {
	return exportKey{k.ID, k.Name, k.Hash, k.Hint, k.Disabled, k.Tags, k.Clients, k.Policy,
		k.CreatedAt, k.LastUsedAt, k.ExpiresAt, k.DeletedAt, k.ActivatedAt}
}

func (k exportKey) key() store.Key {
	return store.Key{ID: k.ID, Name: k.Name, Hash: k.Hash, Hint: k.Hint, Disabled: k.Disabled, Tags: k.Tags,
		Clients: k.Clients, Policy: k.Policy, CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt,
		ExpiresAt: k.ExpiresAt, DeletedAt: k.DeletedAt, ActivatedAt: k.ActivatedAt}
}

func fromUsage(r store.UsageRecord) exportUsage {
	return exportUsage{r.RequestID, r.Attempt, r.KeyID, r.AccountID, r.Model, r.Input, r.Output,
		r.CacheWrite5m, r.CacheWrite1h, r.CacheRead, r.CostPico, r.RatedCostPico, r.Stream, r.Status,
		r.LatencyMs, r.FirstByteMs, r.ClientAborted, r.CreatedAt}
}

func (r exportUsage) record() store.UsageRecord {
	return store.UsageRecord{RequestID: r.RequestID, Attempt: r.Attempt, KeyID: r.KeyID, AccountID: r.AccountID,
		Model: r.Model, Input: r.Input, Output: r.Output, CacheWrite5m: r.CacheWrite5m,
		CacheWrite1h: r.CacheWrite1h, CacheRead: r.CacheRead, CostPico: r.CostPico,
		RatedCostPico: r.RatedCostPico, Stream: r.Stream, Status: r.Status, LatencyMs: r.LatencyMs,
		FirstByteMs: r.FirstByteMs, ClientAborted: r.ClientAborted, CreatedAt: r.CreatedAt}
}

// exportCounts says how many records an export wrote.
type exportCounts struct {
	Keys, Accounts, Groups, Settings int
	Admin                            bool
	Usage                            int64
}

// exportCmd writes the deployment of DATA_DIR (or of the shared store the
// environment names) as one JSON document.
func exportCmd(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "export", exportSynopsis)
	out := fs.String("out", "-", "file to write, - for standard output; a file is written whole or not at all, mode 0600")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("export: unexpected argument %q (write the file with --out FILE)", pos[0])}
	}
	// With the document on standard output, what is said to people goes
	// to standard error.
	say := c.stdout
	if *out == "-" {
		say = c.stderr
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		var st store.Store = e.Store
		start := time.Now()
		prog := newProgress(c.stderr, "export: usage")
		var n exportCounts
		var size int64
		if *out == "-" {
			w := &countingWriter{w: c.stdout}
			n, err = writeExport(ctx, st, e.Box, w, usagePage, prog.update)
			size = w.n
		} else {
			size, err = streamFileAtomic(*out, func(w io.Writer) (err error) {
				n, err = writeExport(ctx, st, e.Box, w, usagePage, prog.update)
				return err
			})
		}
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		prog.finish(n.Usage)
		where := "standard output"
		if *out != "-" {
			where = *out
		}
		fmt.Fprintf(say, "exported %s to %s (%s, %.1fs)\n", n, where, byteSize(size), time.Since(start).Seconds())
		fmt.Fprintf(say, "its credentials stay sealed with this deployment's ENCRYPTION_KEY: crs import needs that key (--source-key-file or %s) unless the target uses the same one\n", sourceKeyVar)
		return nil
	})
}

// String lists the counts for a summary line.
func (n exportCounts) String() string {
	s := fmt.Sprintf("%s, %s, %s, %s, %s",
		count(int64(n.Keys), "key"), count(int64(n.Accounts), "account"), count(int64(n.Groups), "group"),
		count(int64(n.Settings), "setting"), count(n.Usage, "usage record"))
	if n.Admin {
		s += " and the admin login"
	}
	return s
}

// count says "1 key", "2 keys".
func count(n int64, noun string) string {
	return fmt.Sprintf("%d %s%s", n, noun, plural(int(min(n, 2))))
}

// writeExport writes the export of st to w, reading usage page records at
// a time and calling progress(done, total) after each page.
func writeExport(ctx context.Context, st store.Store, box *secret.Box, w io.Writer, page int,
	progress func(done, total int64)) (exportCounts, error) {
	var n exportCounts
	total, err := usageCount(ctx, st)
	if err != nil {
		return n, err
	}
	ow := &objectWriter{w: bufio.NewWriterSize(w, 64<<10)}
	ow.begin()
	ow.field("format", exportFormat)
	ow.field("version", exportVersion)
	ow.field("exported_at", time.Now().UTC())
	ow.field("backend", st.Backend())
	ow.field("key_check", box.Seal([]byte(keyCheckText)))
	ow.field("usage_count", total)

	adm, err := st.GetAdmin(ctx)
	switch {
	case err == nil:
		ow.field("admin", fromAdmin(adm))
		n.Admin = true
	case errors.Is(err, store.ErrNotFound):
		ow.field("admin", nil)
	default:
		return n, err
	}

	ow.array("settings")
	for _, s := range exportedSettings() {
		v, err := st.GetSetting(ctx, s.name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("setting %s: %w", s.name, err)
		}
		ow.elem(exportSetting{s.name, s.sealed, v})
		n.Settings++
	}
	ow.end(']')

	accounts, err := st.ListAccounts(ctx)
	if err != nil {
		return n, err
	}
	ow.array("accounts")
	for _, a := range accounts {
		ow.elem(fromAccount(a))
	}
	ow.end(']')
	n.Accounts = len(accounts)

	groups, err := st.ListGroups(ctx)
	if err != nil {
		return n, err
	}
	ow.array("groups")
	for _, g := range groups {
		ow.elem(fromGroup(g))
	}
	ow.end(']')
	n.Groups = len(groups)

	keys, err := st.ListKeys(ctx, true)
	if err != nil {
		return n, err
	}
	ow.array("keys")
	for _, k := range keys {
		ow.elem(fromKey(k))
	}
	ow.end(']')
	n.Keys = len(keys)

	ow.array("usage")
	err = eachUsage(ctx, st, page, func(recs []store.UsageRecord) error {
		for _, r := range recs {
			ow.elem(fromUsage(r))
		}
		n.Usage += int64(len(recs))
		progress(n.Usage, total)
		return ow.err
	})
	if err != nil {
		return n, err
	}
	ow.end(']')
	ow.end('}')
	return n, ow.flush()
}

// usageCount counts the usage records from the daily rollups, which hold
// one row per day, key, account and model instead of one per request.
func usageCount(ctx context.Context, st store.Store) (int64, error) {
	days, err := st.Rollups(ctx, store.Daily, time.Time{}, time.Time{})
	if err != nil {
		return 0, err
	}
	var total int64
	for _, d := range days {
		total += d.Requests
	}
	return total, nil
}

// usageID identifies a usage record.
type usageID struct {
	request string
	attempt int
}

// eachUsage calls f with every usage record of st, newest first, page
// records at a time. ListUsage pages by time only, so each next page asks
// for records before the oldest one seen plus a millisecond (the coarsest
// precision a backend keeps): records that share that instant but missed
// the page come along, and the ones already passed on are recognised by
// their (RequestID, Attempt) and dropped. A page that brings nothing new
// (more records in one millisecond than a page holds) is asked for again,
// twice as large, so the walk always moves on.
func eachUsage(ctx context.Context, st store.Store, page int, f func([]store.UsageRecord) error) error {
	var before time.Time // zero: no bound
	seen := map[usageID]time.Time{}
	for {
		recs, err := st.ListUsage(ctx, store.UsageFilter{To: before}, page)
		if err != nil {
			return err
		}
		var fresh []store.UsageRecord
		for _, r := range recs {
			id := usageID{r.RequestID, r.Attempt}
			if _, dup := seen[id]; dup {
				continue
			}
			seen[id] = r.CreatedAt
			fresh = append(fresh, r)
		}
		if len(fresh) > 0 {
			if err := f(fresh); err != nil {
				return err
			}
		}
		if len(recs) < page {
			return nil
		}
		if len(fresh) == 0 {
			page *= 2
			continue
		}
		before = recs[len(recs)-1].CreatedAt.Add(time.Millisecond)
		// Only records before the new bound can come again.
		for id, at := range seen {
			if !at.Before(before) {
				delete(seen, id)
			}
		}
	}
}

// objectWriter writes one JSON object field by field, so arrays can be
// streamed into it. The first error sticks; later writes do nothing.
type objectWriter struct {
	w      *bufio.Writer
	err    error
	fields int // fields written to the object
	elems  int // elements written to the open array
}

func (o *objectWriter) raw(s string) {
	if o.err == nil {
		_, o.err = o.w.WriteString(s)
	}
}

func (o *objectWriter) value(v any) {
	if o.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		o.err = err
		return
	}
	_, o.err = o.w.Write(b)
}

func (o *objectWriter) begin() { o.raw("{") }

func (o *objectWriter) name(n string) {
	if o.fields > 0 {
		o.raw(",\n")
	}
	o.fields++
	o.value(n)
	o.raw(":")
}

// field writes one field of the object.
func (o *objectWriter) field(name string, v any) {
	o.name(name)
	o.value(v)
}

// array opens an array field; elem adds to it and end(']') closes it.
func (o *objectWriter) array(name string) {
	o.name(name)
	o.raw("[")
	o.elems = 0
}

// elem writes one array element on a line of its own.
func (o *objectWriter) elem(v any) {
	if o.elems > 0 {
		o.raw(",")
	}
	o.elems++
	o.raw("\n")
	o.value(v)
}

// end closes the open array (']') or the object ('}').
func (o *objectWriter) end(delim byte) {
	if delim == ']' && o.elems > 0 {
		o.raw("\n")
	}
	o.raw(string(delim))
	if delim == '}' {
		o.raw("\n")
	}
}

func (o *objectWriter) flush() error {
	if o.err != nil {
		return o.err
	}
	return o.w.Flush()
}

// countingWriter counts what passes through.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// streamFileAtomic writes path through write and returns its size. It
// writes a temporary file (mode 0600: the export holds key hashes and
// sealed credentials) in path's directory and renames it into place only
// when write succeeded, so an interrupted export never leaves a partial
// file under the final name.
func streamFileAtomic(path string, write func(io.Writer) error) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	cw := &countingWriter{w: tmp}
	err = tmp.Chmod(0o600)
	if err == nil {
		err = write(cw)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return cw.n, err
}

// progress prints "<what> done/total" lines: each time another tenth of
// the total is done, and at least once a second while work goes on.
type progress struct {
	w     io.Writer
	what  string
	last  time.Time
	tenth int64 // tenths of the total reported so far
	shown int64 // the count last printed
}

func newProgress(w io.Writer, what string) *progress {
	return &progress{w: w, what: what, last: time.Now()}
}

func (p *progress) update(done, total int64) {
	var tenth int64
	if total > 0 {
		tenth = min(done*10/total, 10)
	}
	if tenth <= p.tenth && time.Since(p.last) < time.Second {
		return
	}
	p.tenth = max(p.tenth, tenth)
	p.print(done, total)
}

func (p *progress) print(done, total int64) {
	p.last, p.shown = time.Now(), done
	if total > 0 && done <= total {
		fmt.Fprintf(p.w, "%s %d/%d (%d%%)\n", p.what, done, total, done*100/total)
		return
	}
	fmt.Fprintf(p.w, "%s %d\n", p.what, done)
}

// finish prints the final count unless the last line already showed it.
func (p *progress) finish(done int64) {
	if done != p.shown {
		p.print(done, done)
	}
}
