package config

import (
	"strings"
	"testing"
)

// TestUsageRetentionDays: 90 by default, 0 keeps usage forever, and a
// negative, fractional or absurd value fails naming the variable.
func TestUsageRetentionDays(t *testing.T) {
	for _, tc := range []struct {
		val  string
		want int
	}{{"", 90}, {"0", 0}, {" 30 ", 30}, {"36500", 36500}} {
		c, err := Load(env(map[string]string{"USAGE_RETENTION_DAYS": tc.val}))
		if err != nil || c.UsageRetentionDays != tc.want {
			t.Errorf("USAGE_RETENTION_DAYS=%q: %d, %v; want %d", tc.val, c.UsageRetentionDays, err, tc.want)
		}
	}
	for _, val := range []string{"-1", "1.5", "ninety", "36501"} {
		_, err := Load(env(map[string]string{"USAGE_RETENTION_DAYS": val}))
		if err == nil || !strings.Contains(err.Error(), "USAGE_RETENTION_DAYS") {
			t.Errorf("USAGE_RETENTION_DAYS=%q: %v, want an error naming it", val, err)
		}
	}
	documented := false
	for _, v := range Vars() {
		if v.Name == "USAGE_RETENTION_DAYS" && v.Default == "90" {
			documented = true
		}
	}
	if !documented {
		t.Error("Vars() lacks USAGE_RETENTION_DAYS with its default 90")
	}
}
