package pricing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crs-relay/crs/internal/store"
)

// SettingName is the store setting that holds a price table stored by
// `crs prices update`. When it is unset the embedded table applies. Its
// value is plain JSON (see stored), so every instance of a shared
// deployment reads the same table, and an export carries it as it is.
const SettingName = "prices.table"

// OriginEmbedded is the Origin of the table built into the binary.
const OriginEmbedded = "embedded"

// MaxTableBytes bounds a replacement table. The embedded one is about
// 10 KB; a file thousands of times that is not a price table.
const MaxTableBytes = 8 << 20

// Source hands out the price table to use now. A *Table is a Source of
// itself; a *Live hands out whichever table was stored last.
type Source interface {
	Table() *Table
}

// Reloader is a Source whose table can change while the server runs.
type Reloader interface {
	Source
	// Reload looks for a new table; changed reports that Table now
	// returns another one.
	Reload(ctx context.Context) (changed bool, err error)
}

// Info describes a table for people: `crs version`, `crs prices show` and
// the crs_price_table_info metric.
type Info struct {
	// Version names the table (Table.Version); AsOf is the date its
	// prices were checked; Source says where they were taken from.
	Version string `json:"version"`
	AsOf    string `json:"as_of"`
	Source  string `json:"source"`
	// Origin is where crs loaded the table from: OriginEmbedded, or the
	// file or URL `crs prices update` read (a URL without its query or
	// credentials, which may be secret).
	Origin string `json:"origin"`
	// UpdatedAt is when the table was stored; zero for the embedded one.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Models counts the table's models.
	Models int `json:"models"`
}

// Info describes t.
func (t *Table) Info() Info {
	return Info{Version: t.version, AsOf: t.asOf, Source: t.source, Origin: t.origin, UpdatedAt: t.updatedAt, Models: len(t.models)}
}

// stored is the JSON value of SettingName: the table file as it was given,
// and where and when it came from.
type stored struct {
	Origin    string          `json:"origin"`
	UpdatedAt time.Time       `json:"updated_at"`
	Table     json.RawMessage `json:"table"`
}

// CheckUpdate parses data as a table meant to replace the one in use, and
// refuses what would only be a mistake there: nothing at all, a file too
// large, anything Parse refuses, a table without models (every request
// would be priced at the default), or one without its as_of date (which
// `crs version` shows).
func CheckUpdate(data []byte) (*Table, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("pricing: the table is empty")
	}
	if len(data) > MaxTableBytes {
		return nil, fmt.Errorf("pricing: the table is %d bytes; the limit is %d", len(data), MaxTableBytes)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if len(t.models) == 0 {
		return nil, errors.New(`pricing: the table lists no models ("models" is missing or empty)`)
	}
	if _, err := time.Parse(time.DateOnly, t.asOf); err != nil {
		return nil, fmt.Errorf(`pricing: "as_of" must be the date the prices were checked, YYYY-MM-DD; got %q`, t.asOf)
	}
	return t, nil
}

// Save checks data with CheckUpdate and stores it as the table in use,
// noting origin (a path or URL fit to show) and now. On any error nothing
// is stored and the table in use stays. Running servers pick the new
// table up when they next reload (Live.Reload).
func Save(ctx context.Context, st store.Settings, data []byte, origin string, now time.Time) (*Table, error) {
	if _, err := CheckUpdate(data); err != nil {
		return nil, err
	}
	v, err := json.Marshal(stored{Origin: origin, UpdatedAt: now.UTC().Truncate(time.Second), Table: data})
	if err != nil {
		return nil, fmt.Errorf("pricing: %w", err)
	}
	// Parse what is stored, not data: the table is compacted on the way
	// in, and the returned Info must be what every reader of the setting
	// will see.
	t, err := decodeStored(v)
	if err != nil {
		return nil, err
	}
	if err := st.SetSetting(ctx, SettingName, v); err != nil {
		return nil, fmt.Errorf("pricing: storing the table: %w", err)
	}
	return t, nil
}

// Reset removes the stored table, so the embedded one applies again.
func Reset(ctx context.Context, st store.Settings) error {
	if err := st.SetSetting(ctx, SettingName, nil); err != nil {
		return fmt.Errorf("pricing: removing the stored table: %w", err)
	}
	return nil
}

// Load returns the table in use according to st: the stored one, or the
// embedded one when none is stored. A stored value that no longer parses
// (written by a newer crs, say) is an error; the caller decides whether
// to fall back.
func Load(ctx context.Context, st store.Settings) (*Table, error) {
	v, err := st.GetSetting(ctx, SettingName)
	if errors.Is(err, store.ErrNotFound) {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("pricing: reading the stored table: %w", err)
	}
	return decodeStored(v)
}

func decodeStored(v []byte) (*Table, error) {
	var s stored
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("pricing: the stored table (setting %s) is not readable: %w", SettingName, err)
	}
	t, err := Parse(s.Table)
	if err != nil {
		return nil, fmt.Errorf("pricing: the stored table (setting %s) does not parse: %s",
			SettingName, strings.TrimPrefix(err.Error(), "pricing: "))
	}
	t.origin, t.updatedAt = s.Origin, s.UpdatedAt
	if t.origin == "" {
		t.origin = "store"
	}
	return t, nil
}

// Live is the price table of a running server: the stored table when
// there is one, else the embedded one. Reload swaps in a newly stored
// table while requests go on reading the old one; readers take no lock,
// and a request that has its table keeps it to the end.
type Live struct {
	st  store.Settings
	cur atomic.Pointer[Table]

	mu   sync.Mutex // one Reload at a time
	read bool       // seen is meaningful
	seen []byte     // the setting's value at the last Reload; nil when unset
}

// NewLive returns a Live on st that hands out the embedded table until
// the first Reload.
func NewLive(st store.Settings) *Live {
	l := &Live{st: st}
	l.cur.Store(Default())
	return l
}

// Table returns the table in use.
func (l *Live) Table() *Table { return l.cur.Load() }

// Reload reads the stored table and swaps it in when the setting changed
// since the last Reload (the first one always counts as a change). A
// stored table that does not parse is reported once and the current table
// stays; removing the stored table brings back the embedded one.
func (l *Live) Reload(ctx context.Context) (changed bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, err := l.st.GetSetting(ctx, SettingName)
	switch {
	case errors.Is(err, store.ErrNotFound):
		v = nil
	case err != nil:
		return false, fmt.Errorf("pricing: reading the stored table: %w", err)
	}
	if l.read && bytes.Equal(v, l.seen) {
		return false, nil
	}
	l.read, l.seen = true, v
	t := Default()
	if v != nil {
		if t, err = decodeStored(v); err != nil {
			return false, fmt.Errorf("%w; still using %s", err, l.Table().Version())
		}
	}
	l.cur.Store(t)
	return true, nil
}
