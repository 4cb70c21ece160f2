// Package config turns the environment into one validated Config. Every
// setting has a documented default; an invalid value fails at start with the
// variable's name, so a typo never silently becomes a default.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/oauth"
)

// Config is the whole runtime configuration of crs.
type Config struct {
	// Host and Port are where `crs serve` listens (HOST, PORT).
	Host string
	Port int
	// DataDir holds the SQLite database, generated secrets, init.json and
	// the usage spool (DATA_DIR).
	DataDir string
	// AdminUsername and AdminPassword seed the admin login on first start
	// (ADMIN_USERNAME, ADMIN_PASSWORD); random when empty.
	AdminUsername string
	AdminPassword string
	// LogLevel is debug, info, warn or error (LOG_LEVEL).
	LogLevel string
	// LogFormat is text or json (LOG_FORMAT); empty picks text when
	// standard error is a terminal and JSON otherwise.
	LogFormat string
	// LogDir, when set, also writes the log to LogDir/crs.log, rotated by
	// size (LOG_DIR).
	LogDir string
	// MetricsToken, when set, is the bearer token GET /metrics requires
	// (METRICS_TOKEN); without it /metrics is open to whoever reaches the
	// port.
	MetricsToken string
	// EncryptionKey seals credentials at rest (ENCRYPTION_KEY, ≥ 32
	// characters); generated into DataDir when unset.
	EncryptionKey string
	// JWTSecret signs admin sessions (JWT_SECRET); generated when unset.
	JWTSecret string
	// ClaudeAPIURL is the base URL of Claude accounts that have none
	// (CLAUDE_API_URL).
	ClaudeAPIURL string
	// OpenAIAPIURL, CodexAPIURL, GeminiAPIURL and CodeAssistAPIURL are the
	// upstream roots of the openai and gemini pools' accounts that have
	// none: OpenAI-compatible Responses API keys, ChatGPT subscriptions
	// (the Codex backend), Gemini API keys, and Gemini OAuth accounts (Code
	// Assist) (OPENAI_API_URL, CODEX_API_URL, GEMINI_API_URL,
	// CODE_ASSIST_API_URL).
	OpenAIAPIURL, CodexAPIURL, GeminiAPIURL, CodeAssistAPIURL string
	// ClaudeOAuth are the Claude OAuth service URLs used to onboard and
	// refresh subscription accounts (CLAUDE_OAUTH_AUTHORIZE_URL,
	// CLAUDE_OAUTH_TOKEN_URL, CLAUDE_OAUTH_PROFILE_URL,
	// CLAUDE_OAUTH_USAGE_URL). They are settable because the token endpoint
	// has moved before; a deployment can follow the next move without a new
	// release.
	ClaudeOAuth oauth.Endpoints
	// OpenAIOAuth and GoogleOAuth are the OAuth services of ChatGPT
	// (Codex) and Gemini CLI accounts (OPENAI_OAUTH_AUTHORIZE_URL,
	// OPENAI_OAUTH_TOKEN_URL, GOOGLE_OAUTH_AUTHORIZE_URL,
	// GOOGLE_OAUTH_TOKEN_URL; Code Assist is CODE_ASSIST_API_URL).
	OpenAIOAuth oauth.OpenAIEndpoints
	GoogleOAuth oauth.GoogleEndpoints
	// RefreshAhead is how long before expiry an OAuth access token is
	// refreshed in the background (CLAUDE_OAUTH_REFRESH_AHEAD).
	RefreshAhead time.Duration
	// ClaudeCodeOnly keeps subscription accounts for real Claude Code
	// traffic; other clients are served by API-key accounts only
	// (CLAUDE_CODE_ONLY).
	ClaudeCodeOnly bool
	// UserMessageQueueDelay and UserMessageQueueTimeout tune the serial
	// user-message queue of accounts that enable it: the minimum gap between
	// user turns, and the longest wait for a turn before another account is
	// tried (USER_MESSAGE_QUEUE_DELAY, USER_MESSAGE_QUEUE_TIMEOUT).
	UserMessageQueueDelay   time.Duration
	UserMessageQueueTimeout time.Duration
	// ConcurrencyQueue makes requests over a key's concurrency limit wait
	// for a slot instead of being refused (a key's own --queue wins), for
	// at most ConcurrencyQueueTimeout (CONCURRENCY_QUEUE,
	// CONCURRENCY_QUEUE_TIMEOUT).
	ConcurrencyQueue        bool
	ConcurrencyQueueTimeout time.Duration
	// Location is the zone of daily usage boundaries (TIMEZONE, an IANA
	// name); the machine's zone when unset.
	Location *time.Location
	// TrustProxy lists the peers whose X-Forwarded-For is believed
	// (TRUST_PROXY, comma-separated CIDRs or addresses).
	TrustProxy []netip.Prefix
	// MaxBodyBytes bounds a client request body (REQUEST_MAX_SIZE_MB).
	MaxBodyBytes int64
	// StickyTTL is how long a conversation stays on its account without
	// use (STICKY_SESSION_TTL_HOURS).
	StickyTTL time.Duration
	// MaxAttempts bounds the accounts tried for one request before its
	// first byte (UPSTREAM_MAX_ATTEMPTS).
	MaxAttempts int
	// FirstEventTimeout bounds the wait for an upstream's first real event
	// (UPSTREAM_FIRST_EVENT_TIMEOUT, a Go duration).
	FirstEventTimeout time.Duration
	// FailoverDeadline bounds all attempts of one request together
	// (UPSTREAM_FAILOVER_DEADLINE, a Go duration).
	FailoverDeadline time.Duration
	// ShutdownTimeout bounds the drain of in-flight streams on SIGTERM
	// (SHUTDOWN_TIMEOUT, a Go duration).
	ShutdownTimeout time.Duration
	// Redis configures the shared store (REDIS_URL or REDIS_HOST and
	// friends, REDIS_KEY_PREFIX); unset means the embedded store.
	Redis Redis
	// SlotLease is how long a concurrency slot outlives an instance that
	// died holding it (CONCURRENCY_LEASE); held slots are renewed while
	// their request runs.
	SlotLease time.Duration
	// PprofAddr, when set, serves net/http/pprof there (PPROF_ADDR, e.g.
	// 127.0.0.1:6060); off by default, and never on the main listener.
	PprofAddr string
	// PricesURL is where `crs prices update` fetches a price table when it
	// is given neither --file nor --url (PRICES_URL); empty means none.
	PricesURL string
	// UsageRetentionDays is how many days per-request usage records are
	// kept (USAGE_RETENTION_DAYS); 0 keeps them forever. The hourly and
	// daily totals are kept regardless.
	UsageRetentionDays int
}

// Var documents one environment variable for `crs serve --help`.
type Var struct {
	Name, Default, Doc string
}

// Vars lists every variable Load reads, in the order of the help text.
func Vars() []Var {
	return []Var{
		{"HOST", "0.0.0.0", "listen address"},
		{"PORT", "3000", "listen port (0 picks a free one; the address is printed)"},
		{"DATA_DIR", "./data", "state: SQLite database, generated secrets, init.json, usage spool"},
		{"ADMIN_USERNAME", "admin", "admin login created on first start"},
		{"ADMIN_PASSWORD", "(random)", "admin password set on first start; printed once and kept in DATA_DIR/init.json until changed"},
		{"LOG_LEVEL", "info", "debug, info, warn or error"},
		{"LOG_FORMAT", "(text on a terminal, else json)", "text or json"},
		{"LOG_DIR", "(none)", "also log to DIR/crs.log, rotated at 100 MiB, 5 old files kept"},
		{"METRICS_TOKEN", "(none: /metrics is open)", "bearer token GET /metrics requires"},
		{"ENCRYPTION_KEY", "(generated)", "≥ 32 characters; seals upstream credentials; generated once into DATA_DIR/encryption.key (shared mode: required, the same on every instance)"},
		{"JWT_SECRET", "(generated)", "signs admin sessions; generated once into DATA_DIR/jwt.secret (shared mode: required, the same on every instance)"},
		{"REDIS_URL", "(none: embedded store)", "shared mode: redis[s]://[user:pass@]host:port[,host:port…][/db][?cluster=true|sentinel_master=NAME]"},
		{"REDIS_HOST", "(none)", "shared mode without REDIS_URL: Redis host (with REDIS_PORT 6379, REDIS_PASSWORD, REDIS_DB 0, REDIS_ENABLE_TLS false)"},
		{"REDIS_KEY_PREFIX", DefaultRedisPrefix, "prefix of every key crs writes in Redis"},
		{"CONCURRENCY_LEASE", "60s", "a concurrency slot held by an instance that died frees itself after this long"},
		{"CLAUDE_API_URL", "https://api.anthropic.com", "base URL of Claude accounts that have none"},
		{"CLAUDE_OAUTH_AUTHORIZE_URL", oauth.DefaultClaudeEndpoints().AuthorizeURL, "page an admin opens to approve a Claude OAuth onboarding"},
		{"CLAUDE_OAUTH_TOKEN_URL", oauth.DefaultClaudeEndpoints().TokenURL, "Claude OAuth token endpoint (code exchange and refresh)"},
		{"CLAUDE_OAUTH_PROFILE_URL", oauth.DefaultClaudeEndpoints().ProfileURL, "Claude OAuth profile endpoint (account plan)"},
		{"CLAUDE_OAUTH_USAGE_URL", oauth.DefaultClaudeEndpoints().UsageURL, "Claude OAuth usage endpoint (subscription quota)"},
		{"OPENAI_API_URL", "https://api.openai.com", "Responses API root of openai API-key accounts that have none"},
		{"CODEX_API_URL", "https://chatgpt.com/backend-api/codex", "Codex backend of ChatGPT subscription accounts"},
		{"GEMINI_API_URL", "https://generativelanguage.googleapis.com", "Gemini API root of gemini API-key accounts that have none"},
		{"CODE_ASSIST_API_URL", "https://cloudcode-pa.googleapis.com", "Code Assist backend of Gemini OAuth accounts"},
		{"OPENAI_OAUTH_AUTHORIZE_URL", oauth.DefaultOpenAIEndpoints().AuthorizeURL, "page an admin opens to approve a ChatGPT (Codex) onboarding"},
		{"OPENAI_OAUTH_TOKEN_URL", oauth.DefaultOpenAIEndpoints().TokenURL, "OpenAI OAuth token endpoint (code exchange and refresh)"},
		{"GOOGLE_OAUTH_AUTHORIZE_URL", oauth.DefaultGoogleEndpoints().AuthorizeURL, "page an admin opens to approve a Gemini (Google) onboarding"},
		{"GOOGLE_OAUTH_TOKEN_URL", oauth.DefaultGoogleEndpoints().TokenURL, "Google OAuth token endpoint (code exchange and refresh)"},
		{"CLAUDE_OAUTH_REFRESH_AHEAD", "5m", "refresh OAuth access tokens this long before they expire"},
		{"CLAUDE_CODE_ONLY", "false", "true: subscription accounts serve only real Claude Code; other clients use API-key accounts"},
		{"USER_MESSAGE_QUEUE_DELAY", "200ms", "minimum gap between user turns on accounts with the serial queue"},
		{"USER_MESSAGE_QUEUE_TIMEOUT", "60s", "longest wait for an account's serial queue before another account is tried"},
		{"CONCURRENCY_QUEUE", "false", "true: requests over a key's concurrency limit wait (room for 2× the limit) instead of 429; a key's --queue wins"},
		{"CONCURRENCY_QUEUE_TIMEOUT", "30s", "longest wait in a key's concurrency queue before 429"},
		{"TIMEZONE", "(machine zone)", "IANA zone for daily usage boundaries, e.g. Asia/Shanghai"},
		{"TRUST_PROXY", "(none)", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For is trusted"},
		{"REQUEST_MAX_SIZE_MB", "60", "largest accepted request body, MiB"},
		{"STICKY_SESSION_TTL_HOURS", "1", "how long a conversation keeps its account without use"},
		{"UPSTREAM_MAX_ATTEMPTS", "3", "accounts tried for one request before its first byte"},
		{"UPSTREAM_FIRST_EVENT_TIMEOUT", "120s", "wait for an upstream's first event before failing over"},
		{"UPSTREAM_FAILOVER_DEADLINE", "180s", "all attempts of one request together"},
		{"SHUTDOWN_TIMEOUT", "30s", "drain time for in-flight streams on SIGTERM"},
		{"PPROF_ADDR", "(off)", "serve Go profiling (net/http/pprof) on this address, e.g. 127.0.0.1:6060"},
		{"PRICES_URL", "(none)", "http(s) URL of a price table that `crs prices update` fetches when given no --file or --url"},
		{"USAGE_RETENTION_DAYS", "90", "days per-request usage records are kept (0: forever); hourly and daily totals stay"},
	}
}

// Load reads the configuration through getenv (os.Getenv in production,
// a map in tests). Secrets may stay empty here; EnsureSecrets fills them.
func Load(getenv func(string) string) (Config, error) {
	p := parser{getenv: getenv}
	oauthDefaults := oauth.DefaultClaudeEndpoints()
	c := Config{
		Host:             p.str("HOST", "0.0.0.0"),
		Port:             p.intRange("PORT", 3000, 0, 65535),
		DataDir:          p.str("DATA_DIR", "./data"),
		AdminUsername:    p.str("ADMIN_USERNAME", "admin"),
		AdminPassword:    getenv("ADMIN_PASSWORD"),
		LogLevel:         p.oneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		LogFormat:        p.optionalOneOf("LOG_FORMAT", "text", "json"),
		LogDir:           strings.TrimSpace(getenv("LOG_DIR")),
		MetricsToken:     strings.TrimSpace(getenv("METRICS_TOKEN")),
		EncryptionKey:    getenv("ENCRYPTION_KEY"),
		JWTSecret:        getenv("JWT_SECRET"),
		ClaudeAPIURL:     p.baseURL("CLAUDE_API_URL", "https://api.anthropic.com"),
		OpenAIAPIURL:     p.baseURL("OPENAI_API_URL", "https://api.openai.com"),
		CodexAPIURL:      p.baseURL("CODEX_API_URL", "https://chatgpt.com/backend-api/codex"),
		GeminiAPIURL:     p.baseURL("GEMINI_API_URL", "https://generativelanguage.googleapis.com"),
		CodeAssistAPIURL: p.baseURL("CODE_ASSIST_API_URL", "https://cloudcode-pa.googleapis.com"),
		ClaudeOAuth: oauth.Endpoints{
			AuthorizeURL: p.endpointURL("CLAUDE_OAUTH_AUTHORIZE_URL", oauthDefaults.AuthorizeURL),
			TokenURL:     p.endpointURL("CLAUDE_OAUTH_TOKEN_URL", oauthDefaults.TokenURL),
			ProfileURL:   p.endpointURL("CLAUDE_OAUTH_PROFILE_URL", oauthDefaults.ProfileURL),
			UsageURL:     p.endpointURL("CLAUDE_OAUTH_USAGE_URL", oauthDefaults.UsageURL),
		},
		RefreshAhead:            p.duration("CLAUDE_OAUTH_REFRESH_AHEAD", oauth.DefaultRefreshAhead),
		ClaudeCodeOnly:          p.boolean("CLAUDE_CODE_ONLY", false),
		UserMessageQueueDelay:   p.duration("USER_MESSAGE_QUEUE_DELAY", 200*time.Millisecond),
		UserMessageQueueTimeout: p.duration("USER_MESSAGE_QUEUE_TIMEOUT", 60*time.Second),
		ConcurrencyQueue:        p.boolean("CONCURRENCY_QUEUE", false),
		ConcurrencyQueueTimeout: p.duration("CONCURRENCY_QUEUE_TIMEOUT", 30*time.Second),
		OpenAIOAuth: oauth.OpenAIEndpoints{
			AuthorizeURL: p.endpointURL("OPENAI_OAUTH_AUTHORIZE_URL", oauth.DefaultOpenAIEndpoints().AuthorizeURL),
			TokenURL:     p.endpointURL("OPENAI_OAUTH_TOKEN_URL", oauth.DefaultOpenAIEndpoints().TokenURL),
		},
		Location:          p.zone("TIMEZONE"),
		TrustProxy:        p.prefixes("TRUST_PROXY"),
		MaxBodyBytes:      int64(p.intRange("REQUEST_MAX_SIZE_MB", 60, 1, 4096)) << 20,
		StickyTTL:         time.Duration(p.intRange("STICKY_SESSION_TTL_HOURS", 1, 1, 24*30)) * time.Hour,
		MaxAttempts:       p.intRange("UPSTREAM_MAX_ATTEMPTS", 3, 1, 20),
		FirstEventTimeout: p.duration("UPSTREAM_FIRST_EVENT_TIMEOUT", 120*time.Second),
		FailoverDeadline:  p.duration("UPSTREAM_FAILOVER_DEADLINE", 180*time.Second),
		ShutdownTimeout:   p.duration("SHUTDOWN_TIMEOUT", 30*time.Second),
		PprofAddr:         strings.TrimSpace(getenv("PPROF_ADDR")),
		SlotLease:         p.duration("CONCURRENCY_LEASE", defaultSlotLease),
		// Up to a century: a larger number is a typo, not a policy.
		UsageRetentionDays: p.intRange("USAGE_RETENTION_DAYS", 90, 0, 36500),
	}
	c.Redis = p.redis()
	if c.Redis.Enabled() {
		// Every instance must seal and sign alike, or credentials one
		// instance saved are unreadable to another and sessions break
		// behind a load balancer; a secret generated into one instance's
		// DATA_DIR cannot be that.
		for _, v := range []struct{ name, val string }{{"ENCRYPTION_KEY", c.EncryptionKey}, {"JWT_SECRET", c.JWTSecret}} {
			if v.val == "" {
				p.fail(v.name, "shared mode (REDIS_URL or REDIS_HOST is set) needs it set explicitly, the same on every instance; generate one with: openssl rand -hex 32")
			}
		}
	}
	c.GoogleOAuth = oauth.GoogleEndpoints{
		AuthorizeURL:  p.endpointURL("GOOGLE_OAUTH_AUTHORIZE_URL", oauth.DefaultGoogleEndpoints().AuthorizeURL),
		TokenURL:      p.endpointURL("GOOGLE_OAUTH_TOKEN_URL", oauth.DefaultGoogleEndpoints().TokenURL),
		CodeAssistURL: c.CodeAssistAPIURL,
	}
	if c.PricesURL = strings.TrimSpace(getenv("PRICES_URL")); c.PricesURL != "" {
		if u, err := url.Parse(c.PricesURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The value is not echoed: a URL may carry a token.
			p.fail("PRICES_URL", "want an http:// or https:// URL of a price table")
		}
	}
	if c.PprofAddr != "" {
		if _, _, err := net.SplitHostPort(c.PprofAddr); err != nil {
			p.fail("PPROF_ADDR", fmt.Sprintf("want host:port such as 127.0.0.1:6060, got %q", c.PprofAddr))
		}
	}
	if c.EncryptionKey != "" && len(c.EncryptionKey) < 32 {
		p.fail("ENCRYPTION_KEY", "must be at least 32 characters")
	}
	if c.Host != "" && net.ParseIP(c.Host) == nil && strings.ContainsAny(c.Host, " /:") {
		p.fail("HOST", "not a host name or IP address: "+strconv.Quote(c.Host))
	}
	return c, errors.Join(p.errs...)
}

// Addr is the listen address.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

type parser struct {
	getenv func(string) string
	errs   []error
}

func (p *parser) fail(name, why string) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", name, why))
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) intRange(name string, def, lo, hi int) int {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, fmt.Sprintf("want a whole number from %d to %d, got %q", lo, hi, v))
		return def
	}
	return n
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(name, fmt.Sprintf("want a positive duration such as 30s or 2m, got %q", v))
		return def
	}
	return d
}

func (p *parser) boolean(name string, def bool) bool {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, fmt.Sprintf("want true or false, got %q", v))
		return def
	}
	return b
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(p.str(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.fail(name, fmt.Sprintf("want one of %s, got %q", strings.Join(allowed, ", "), v))
	return def
}

// optionalOneOf is oneOf where unset means "" (decided later).
func (p *parser) optionalOneOf(name string, allowed ...string) string {
	if strings.TrimSpace(p.getenv(name)) == "" {
		return ""
	}
	return p.oneOf(name, "", allowed...)
}

func (p *parser) baseURL(name, def string) string {
	v := p.str(name, def)
	if err := CheckBaseURL(v); err != nil {
		p.fail(name, err.Error())
		return def
	}
	return strings.TrimRight(v, "/")
}

// endpointURL reads a full endpoint URL: the CheckBaseURL rules, kept as
// given (a trailing slash may be part of an endpoint's path).
func (p *parser) endpointURL(name, def string) string {
	v := p.str(name, def)
	if err := CheckBaseURL(v); err != nil {
		p.fail(name, err.Error())
		return def
	}
	return v
}

// CheckBaseURL accepts an absolute http(s) URL without query or fragment.
func CheckBaseURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("want an http:// or https:// URL such as https://api.anthropic.com, got %q", v)
	}
	return nil
}

func (p *parser) zone(name string) *time.Location {
	v := strings.TrimSpace(p.getenv(name))
	if v == "" {
		return time.Local
	}
	loc, err := time.LoadLocation(v)
	if err != nil {
		p.fail(name, fmt.Sprintf("unknown IANA time zone %q", v))
		return time.Local
	}
	return loc
}

func (p *parser) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range strings.Split(p.getenv(name), ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				p.fail(name, fmt.Sprintf("%q is not an IP address or CIDR", f))
				continue
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pr, err := netip.ParsePrefix(f)
		if err != nil {
			p.fail(name, fmt.Sprintf("%q is not an IP address or CIDR", f))
			continue
		}
		out = append(out, pr.Masked())
	}
	return out
}

// Secret file names inside DataDir.
const (
	EncryptionKeyFile = "encryption.key"
	JWTSecretFile     = "jwt.secret"
)

// EnsureSecrets fills EncryptionKey and JWTSecret: from the environment if
// set, else from their files in DataDir, else freshly generated into those
// files (mode 0600). It returns the names of the secrets it generated, so
// the first start can say so. DataDir is created (0700) if missing.
func (c *Config) EnsureSecrets(random func(n int) string) (generated []string, err error) {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	for _, s := range []struct {
		env, file string
		val       *string
	}{
		{"ENCRYPTION_KEY", EncryptionKeyFile, &c.EncryptionKey},
		{"JWT_SECRET", JWTSecretFile, &c.JWTSecret},
	} {
		if *s.val != "" {
			continue
		}
		path := filepath.Join(c.DataDir, s.file)
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			v := strings.TrimSpace(string(b))
			if len(v) < 32 {
				return generated, fmt.Errorf("%s: %s holds fewer than 32 characters", s.env, path)
			}
			*s.val = v
		case errors.Is(err, os.ErrNotExist):
			v := random(32)
			if err := writeNew(path, []byte(v+"\n")); err != nil {
				return generated, fmt.Errorf("%s: %w", s.env, err)
			}
			*s.val = v
			generated = append(generated, s.env)
		default:
			return generated, fmt.Errorf("%s: %w", s.env, err)
		}
	}
	return generated, nil
}

// writeNew creates path with mode 0600, failing if it exists, so two
// processes starting at once cannot both generate a different secret.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
