package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr() != "0.0.0.0:3000" || c.DataDir != "./data" || c.MaxBodyBytes != 60<<20 ||
		c.StickyTTL != time.Hour || c.ClaudeAPIURL != "https://api.anthropic.com" || c.LogLevel != "info" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	for name, val := range map[string]string{
		"PORT":                         "70000",
		"LOG_LEVEL":                    "loud",
		"ENCRYPTION_KEY":               "short",
		"CLAUDE_API_URL":               "ftp://x",
		"TIMEZONE":                     "Mars/Olympus",
		"TRUST_PROXY":                  "10.0.0.0/99",
		"REQUEST_MAX_SIZE_MB":          "zero",
		"UPSTREAM_FIRST_EVENT_TIMEOUT": "-1s",
		"PPROF_ADDR":                   "6060",
	} {
		_, err := Load(env(map[string]string{name: val}))
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: err = %v, want one naming %s", name, val, err, name)
		}
	}
}

func TestParsesValues(t *testing.T) {
	c, err := Load(env(map[string]string{
		"HOST": "127.0.0.1", "PORT": "8080", "TIMEZONE": "Asia/Shanghai",
		"TRUST_PROXY": "10.0.0.0/8, 127.0.0.1", "REQUEST_MAX_SIZE_MB": "2",
		"CLAUDE_API_URL": "http://127.0.0.1:9/", "LOG_LEVEL": "DEBUG",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr() != "127.0.0.1:8080" || c.Location.String() != "Asia/Shanghai" || len(c.TrustProxy) != 2 ||
		c.MaxBodyBytes != 2<<20 || c.ClaudeAPIURL != "http://127.0.0.1:9" || c.LogLevel != "debug" {
		t.Fatalf("parsed: %+v", c)
	}
}

func TestEnsureSecretsGeneratesOnceWithMode0600(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c := Config{DataDir: dir}
	n := 0
	rnd := func(int) string { n++; return strings.Repeat(string(rune('a'+n)), 64) }
	gen, err := c.EnsureSecrets(rnd)
	if err != nil || len(gen) != 2 {
		t.Fatalf("gen=%v err=%v", gen, err)
	}
	for _, f := range []string{EncryptionKeyFile, JWTSecretFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st.Mode(), err)
		}
	}
	c2 := Config{DataDir: dir}
	gen2, err := c2.EnsureSecrets(rnd)
	if err != nil || len(gen2) != 0 || c2.EncryptionKey != c.EncryptionKey || c2.JWTSecret != c.JWTSecret {
		t.Fatalf("second start regenerated: %v %v", gen2, err)
	}
	c3 := Config{DataDir: dir, EncryptionKey: strings.Repeat("e", 40)}
	if _, err := c3.EnsureSecrets(rnd); err != nil || c3.EncryptionKey != strings.Repeat("e", 40) {
		t.Fatal("env value not preferred")
	}
}
