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
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/lockfile"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
)

const importSynopsis = "--file FILE|- [--source-key-file PATH] [--json] [--data-dir DIR]"

// importCount is how many records of one kind import created, and how
// many it skipped because the target had them already.
type importCount struct {
	Created int64 `json:"created"`
	Existed int64 `json:"existed"`
}

// importSummary is what `crs import --json` prints.
type importSummary struct {
	From       string      `json:"from"` // the source backend
	ExportedAt time.Time   `json:"exported_at"`
	Into       string      `json:"into"` // the target backend
	SameKey    bool        `json:"same_key"`
	Admin      string      `json:"admin"` // "set", "unchanged" or "none" (none exported)
	Keys       importCount `json:"keys"`
	Accounts   importCount `json:"accounts"`
	Groups     importCount `json:"groups"`
	Settings   importCount `json:"settings"`
	Usage      importCount `json:"usage"`
}

// importCmd reads an export into the deployment of DATA_DIR (or the shared
// store the environment names).
func importCmd(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "import", importSynopsis)
	file := fs.String("file", "", "the export to read (made by crs export), - for standard input (required)")
	keyFile := fs.String("source-key-file", "", "file holding the exporting deployment's ENCRYPTION_KEY (its DATA_DIR/encryption.key); "+
		"also "+sourceKeyVar+"; not needed when this deployment uses the same key")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("import: unexpected argument %q (name the file with --file FILE)", pos[0])}
	}
	if *file == "" {
		return usageError{"import: --file is required"}
	}
	source, err := sourceBox(*keyFile, c.getenv(sourceKeyVar))
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	var in io.Reader = c.stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		in = f
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		var st store.Store = e.Store
		if st.Backend() == "sqlite" {
			// The embedded server keeps spend counters and caches in its
			// own memory; it would not see what import writes under it.
			lock, err := lockfile.Acquire(filepath.Join(e.Config.DataDir, pidFile))
			var held *lockfile.HeldError
			if errors.As(err, &held) {
				return fmt.Errorf("import: %v; stop it first (crs service stop), then import", held)
			}
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			defer lock.Release()
		}
		im := &importer{st: st, target: e.Box, source: source, warn: func(s string) {
			fmt.Fprintln(c.stderr, "import: "+s)
		}}
		im.progress = newProgress(c.stderr, "import: usage")
		sum, err := im.run(ctx, in)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		im.progress.finish(sum.Usage.Created + sum.Usage.Existed)
		if *asJSON {
			return printJSON(c.stdout, sum)
		}
		fmt.Fprintln(c.stdout, sum.String())
		return nil
	})
}

// String is the one-line summary of an import.
func (s importSummary) String() string {
	kinds := []struct {
		n    importCount
		noun string
	}{{s.Keys, "key"}, {s.Accounts, "account"}, {s.Groups, "group"}, {s.Settings, "setting"}, {s.Usage, "usage record"}}
	var made, had []string
	for _, k := range kinds {
		made = append(made, count(k.n.Created, k.noun))
		if k.n.Existed > 0 {
			had = append(had, count(k.n.Existed, k.noun))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "imported the %s export of %s into %s: %s", s.From, s.ExportedAt.Format(time.RFC3339), s.Into, strings.Join(made, ", "))
	switch s.Admin {
	case "set":
		b.WriteString(", the admin login")
	case "unchanged":
		had = append(had, "the admin login")
	}
	if len(had) > 0 {
		fmt.Fprintf(&b, "; already here, skipped: %s", strings.Join(had, ", "))
	}
	if s.SameKey {
		b.WriteString("; credentials kept as they were (same ENCRYPTION_KEY)")
	} else {
		b.WriteString("; credentials re-sealed with this deployment's ENCRYPTION_KEY")
	}
	return b.String()
}

// sourceBox opens the box of the exporting deployment's key, from the file
// when one is named, else from the variable's value; nil when neither.
func sourceBox(keyFile, keyVar string) (*secret.Box, error) {
	key, from := strings.TrimSpace(keyVar), sourceKeyVar
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("--source-key-file: %w", err)
		}
		key, from = strings.TrimSpace(string(b)), "--source-key-file "+keyFile
	}
	if key == "" {
		return nil, nil
	}
	box, err := secret.NewBox(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return box, nil
}

// importer reads one export into a store. The small sections are held
// until usage begins (or the document ends); then every sealed value is
// opened and re-sealed, and only when all of them opened is anything
// written.
type importer struct {
	st             store.Store
	target, source *secret.Box
	warn           func(string)
	progress       *progress

	hdr      exportHeader
	admin    *exportAdmin
	settings []exportSetting
	accounts []exportAccount
	groups   []exportGroup
	keys     []exportKey
	written  bool // the sections before usage are in the store
	sum      importSummary
}

// errNotExport is the reason for refusing a file that is not an export.
var errNotExport = errors.New("not a crs export (make one with crs export)")

func (im *importer) run(ctx context.Context, r io.Reader) (importSummary, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return im.sum, errNotExport
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return im.sum, err
		}
		name, _ := t.(string)
		var dst any
		switch name {
		case "format":
			if err := dec.Decode(&im.hdr.Format); err != nil || im.hdr.Format != exportFormat {
				return im.sum, errNotExport
			}
			continue
		case "version":
			dst = &im.hdr.Version
		case "exported_at":
			dst = &im.hdr.ExportedAt
		case "backend":
			dst = &im.hdr.Backend
		case "key_check":
			dst = &im.hdr.KeyCheck
		case "usage_count":
			dst = &im.hdr.UsageCount
		case "admin":
			dst = &im.admin
		case "settings":
			dst = &im.settings
		case "accounts":
			dst = &im.accounts
		case "groups":
			dst = &im.groups
		case "keys":
			dst = &im.keys
		case "usage":
			if err := im.write(ctx); err != nil {
				return im.sum, err
			}
			if err := im.usage(ctx, dec); err != nil {
				return im.sum, err
			}
			continue
		default:
			dst = new(json.RawMessage) // a field of a later version: skip it
		}
		if im.written {
			return im.sum, fmt.Errorf("%q comes after usage; import reads the order crs export writes", name)
		}
		if err := dec.Decode(dst); err != nil {
			return im.sum, fmt.Errorf("%s: %w", name, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return im.sum, fmt.Errorf("the file ends early: %w", err)
	}
	if err := im.write(ctx); err != nil {
		return im.sum, err
	}
	return im.sum, nil
}

// check refuses a file of another format or version, and learns which key
// opens its sealed values.
func (im *importer) check() (*secret.Box, error) {
	switch {
	case im.hdr.Format != exportFormat:
		return nil, errNotExport
	case im.hdr.Version > exportVersion:
		return nil, fmt.Errorf("the export is version %d; this crs reads version %d: upgrade crs", im.hdr.Version, exportVersion)
	case im.hdr.Version < 1 || len(im.hdr.KeyCheck) == 0:
		return nil, fmt.Errorf("%w: no version or key_check", errNotExport)
	}
	if opensCheck(im.target, im.hdr.KeyCheck) {
		im.sum.SameKey = true
		return im.target, nil
	}
	if im.source == nil {
		return nil, fmt.Errorf("the export was sealed with another ENCRYPTION_KEY than this deployment's; " +
			"give the exporting deployment's key with --source-key-file PATH (its DATA_DIR/encryption.key) or " + sourceKeyVar)
	}
	if !opensCheck(im.source, im.hdr.KeyCheck) {
		return nil, fmt.Errorf("the source key given does not open this export: it is not the ENCRYPTION_KEY of the deployment that exported it; nothing was imported")
	}
	return im.source, nil
}

func opensCheck(box *secret.Box, check []byte) bool {
	pt, err := box.Open(check)
	return err == nil && string(pt) == keyCheckText
}

// reseal opens v with from and seals it with the target's box.
func (im *importer) reseal(from *secret.Box, v []byte) ([]byte, error) {
	pt, err := from.Open(v)
	if err != nil {
		return nil, err
	}
	if im.sum.SameKey {
		return v, nil
	}
	return im.target.Seal(pt), nil
}

// write checks the file, re-seals every sealed value, and then stores the
// sections before usage. It runs once.
func (im *importer) write(ctx context.Context) error {
	if im.written {
		return nil
	}
	im.written = true
	from, err := im.check()
	if err != nil {
		return err
	}
	im.sum.From, im.sum.ExportedAt, im.sum.Into = im.hdr.Backend, im.hdr.ExportedAt, im.st.Backend()
	for i := range im.accounts {
		a := &im.accounts[i]
		if a.SealedSecret, err = im.reseal(from, a.SealedSecret); err != nil {
			return fmt.Errorf("account %s (%s): its credential does not open: %w; nothing was imported", a.ID, a.Name, err)
		}
		if a.SealedProxy, err = im.reseal(from, a.SealedProxy); err != nil {
			return fmt.Errorf("account %s (%s): its proxy does not open: %w; nothing was imported", a.ID, a.Name, err)
		}
	}
	for i := range im.settings {
		s := &im.settings[i]
		if !s.Sealed {
			continue
		}
		if s.Value, err = im.reseal(from, s.Value); err != nil {
			return fmt.Errorf("setting %s does not open: %w; nothing was imported", s.Name, err)
		}
	}

	if err := im.writeAdmin(ctx); err != nil {
		return err
	}
	for _, s := range im.settings {
		_, err := im.st.GetSetting(ctx, s.Name)
		switch {
		case err == nil:
			im.sum.Settings.Existed++
			continue
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if err := im.st.SetSetting(ctx, s.Name, s.Value); err != nil {
			return fmt.Errorf("setting %s: %w", s.Name, err)
		}
		im.sum.Settings.Created++
	}
	if err := im.writeAccounts(ctx); err != nil {
		return err
	}
	for _, g := range im.groups {
		err := im.st.CreateGroup(ctx, g.group())
		if errors.Is(err, store.ErrConflict) {
			if _, gerr := im.st.GetGroup(ctx, g.ID); gerr != nil {
				im.warn(fmt.Sprintf("group %s (%s): another group has that name here; skipped, so keys bound to group:%s find no group", g.ID, g.Name, g.ID))
			}
			im.sum.Groups.Existed++
			continue
		}
		if err != nil {
			return fmt.Errorf("group %s: %w", g.ID, err)
		}
		im.sum.Groups.Created++
	}
	return im.writeKeys(ctx)
}

// writeAdmin makes the exported admin login the target's: the people who
// ran the source log in to the target as before.
func (im *importer) writeAdmin(ctx context.Context) error {
	im.sum.Admin = "none"
	if im.admin == nil {
		return nil
	}
	cur, getErr := im.st.GetAdmin(ctx)
	if getErr != nil && !errors.Is(getErr, store.ErrNotFound) {
		return getErr
	}
	had := getErr == nil
	if had && cur.Username == im.admin.Username && cur.PasswordHash == im.admin.PasswordHash {
		im.sum.Admin = "unchanged"
		return nil
	}
	if err := im.st.SetAdmin(ctx, im.admin.admin()); err != nil {
		return err
	}
	if had {
		im.warn(fmt.Sprintf("the admin login is now the exported one (%s); a password in this DATA_DIR's init.json no longer applies", im.admin.Username))
	}
	im.sum.Admin = "set"
	return nil
}

// writeAccounts creates the accounts the target lacks, and puts back what
// CreateAccount may leave out on some backend: the cooldown, the quota
// and the last use.
func (im *importer) writeAccounts(ctx context.Context) error {
	used := map[store.AccountID]time.Time{}
	for _, ea := range im.accounts {
		a := ea.account()
		err := im.st.CreateAccount(ctx, a)
		if errors.Is(err, store.ErrConflict) {
			im.sum.Accounts.Existed++
			continue
		}
		if err != nil {
			return fmt.Errorf("account %s: %w", a.ID, err)
		}
		im.sum.Accounts.Created++
		if a.CooldownKind != store.CooldownNone && a.CooldownUntil != nil {
			if err := im.st.SetCooldown(ctx, a.ID, a.CooldownKind, *a.CooldownUntil, a.CooldownReason); err != nil {
				return fmt.Errorf("account %s: cooldown: %w", a.ID, err)
			}
		}
		if !a.Quota.Window5h.End.IsZero() || len(a.Quota.FamilyLimits) > 0 {
			if err := im.st.SetAccountQuota(ctx, a.ID, a.Quota); err != nil {
				return fmt.Errorf("account %s: quota: %w", a.ID, err)
			}
		}
		if a.LastUsedAt != nil {
			used[a.ID] = *a.LastUsedAt
		}
	}
	if len(used) == 0 {
		return nil
	}
	return im.st.TouchAccounts(ctx, used)
}

// writeKeys creates the keys the target lacks, with their activation and
// last use.
func (im *importer) writeKeys(ctx context.Context) error {
	used := map[store.KeyID]time.Time{}
	for _, ek := range im.keys {
		k := ek.key()
		err := im.st.CreateKey(ctx, k)
		if errors.Is(err, store.ErrConflict) {
			if _, gerr := im.st.GetKey(ctx, k.ID); gerr != nil {
				im.warn(fmt.Sprintf("key %s (%s): the same key is here under another ID; skipped", k.ID, k.Name))
			}
			im.sum.Keys.Existed++
			continue
		}
		if err != nil {
			return fmt.Errorf("key %s: %w", k.ID, err)
		}
		im.sum.Keys.Created++
		if k.ActivatedAt != nil {
			if _, err := im.st.ActivateKey(ctx, k.ID, *k.ActivatedAt); err != nil {
				return fmt.Errorf("key %s: activation: %w", k.ID, err)
			}
		}
		if k.LastUsedAt != nil {
			used[k.ID] = *k.LastUsedAt
		}
	}
	if len(used) == 0 {
		return nil
	}
	return im.st.TouchKeys(ctx, used)
}

// usage streams the usage array into the store in batches. InsertUsage
// skips records it has, so a second run adds nothing twice.
func (im *importer) usage(ctx context.Context, dec *json.Decoder) error {
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return fmt.Errorf("usage: want an array")
	}
	batch := make([]store.UsageRecord, 0, usageBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := im.st.InsertUsage(ctx, batch)
		if err != nil {
			return fmt.Errorf("usage: %w", err)
		}
		im.sum.Usage.Created += int64(n)
		im.sum.Usage.Existed += int64(len(batch) - n)
		batch = batch[:0]
		im.progress.update(im.sum.Usage.Created+im.sum.Usage.Existed, im.hdr.UsageCount)
		return nil
	}
	for dec.More() {
		var r exportUsage
		if err := dec.Decode(&r); err != nil {
			return fmt.Errorf("usage record %d: %w", im.sum.Usage.Created+im.sum.Usage.Existed+int64(len(batch))+1, err)
		}
		batch = append(batch, r.record())
		if len(batch) == usageBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("usage: the file ends early: %w", err)
	}
	return nil
}
