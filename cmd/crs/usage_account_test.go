package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAccountsUsageCommand(t *testing.T) {
	isolate(t)
	fake := pointAtFakeOAuth(t)
	fake.SetUsage(`{"five_hour":{"utilization":42.5,"resets_at":"2030-01-02T03:04:05Z"},"seven_day":{"utilization":77,"resets_at":"2030-01-05T00:00:00Z"},"seven_day_opus":null,"seven_day_sonnet":{"utilization":3,"resets_at":null}}`)
	d := []string{"--data-dir", t.TempDir()}
	proxy, proxied := forwardProxy(t)

	out := ok(t, "", append([]string{"accounts", "oauth", "start", "--platform", "claude", "--proxy", proxy, "--json"}, d...)...)
	var st struct {
		SessionID string `json:"session_id"`
		AuthURL   string `json:"auth_url"`
	}
	decodeJSON(t, out, &st)
	out = ok(t, "", append([]string{"accounts", "oauth", "finish", st.SessionID, "--code", browserApprove(t, fake, st.AuthURL), "--name", "max", "--json"}, d...)...)
	var acct struct {
		ID string `json:"id"`
	}
	decodeJSON(t, out, &acct)
	before := proxied.Load()

	out = ok(t, "", append([]string{"accounts", "usage", acct.ID, "--json"}, d...)...)
	var m map[string]json.RawMessage
	decodeJSON(t, out, &m)
	wantFields(t, "usage", m, map[string]string{
		"account_id":       `"` + acct.ID + `"`,
		"seven_day_opus":   "null",
		"five_hour":        `{"utilization":42.5,"resets_at":"2030-01-02T03:04:05Z"}`,
		"seven_day_sonnet": `{"utilization":3,"resets_at":null}`,
	}, "seven_day", "fetched_at")
	if proxied.Load() != before+1 {
		t.Fatalf("proxy carried %d usage requests, want 1", proxied.Load()-before)
	}

	out = ok(t, "", append([]string{"accounts", "usage", acct.ID}, d...)...)
	lines := strings.Split(out, "\n")
	if len(lines) < 6 || !strings.HasPrefix(lines[0], "WINDOW") ||
		!strings.Contains(lines[1], "5 hours") || !strings.Contains(lines[1], "42.5%") || !strings.Contains(lines[1], "2030-01-0") ||
		!strings.Contains(lines[2], "7 days") || !strings.Contains(lines[2], "77%") ||
		!strings.Contains(lines[3], "Opus") || !strings.Contains(lines[3], "not reported") ||
		!strings.Contains(lines[4], "Sonnet") || !strings.Contains(lines[4], "3%") || !strings.Contains(lines[5], "fetched") {
		t.Fatalf("human output:\n%s", out)
	}

	ok(t, "", append([]string{"accounts", "add", "--platform", "claude", "--type", "api-key", "--name", "k", "--api-key", "sk-ant-api03-x"}, d...)...)
	out = ok(t, "", append([]string{"accounts", "list", "--json"}, d...)...)
	var list []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	decodeJSON(t, out, &list)
	var keyID string
	for _, a := range list {
		if a.Type == "api-key" {
			keyID = a.ID
		}
	}
	fails(t, 1, "only available for Claude subscription accounts", append([]string{"accounts", "usage", keyID}, d...)...)
	fails(t, 1, "not found", append([]string{"accounts", "usage", "acc_nope"}, d...)...)
	fails(t, 2, "account ID", append([]string{"accounts", "usage"}, d...)...)

	if help := ok(t, "", "help"); !strings.Contains(help, "crs accounts usage ID") {
		t.Errorf("help lacks accounts usage")
	}
}
