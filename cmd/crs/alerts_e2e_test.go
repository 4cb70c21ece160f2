package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/notify/notifytest"
)

// TestAlertsEndToEnd: a channel added with the CLI while crs serve runs
// receives exactly one alert when the only account is rate-limited.
func TestAlertsEndToEnd(t *testing.T) {
	dir := newDataDir(t)
	up := fakeupstream.StartAnthropic(t, fakeupstream.Options{})
	acct := addAccount(t, dir, up, "main", 50)
	_, key := createKey(t, dir, "alice")
	srv := startRelay(t, dir, nil)
	rcv := notifytest.NewReceiver(t)
	cliRun(t, dir, "", "notify", "add", "--type", "webhook", "--name", "ops", "--url", rcv.URL()+"/hook")
	time.Sleep(1500 * time.Millisecond) // the server reloads channels on the change version
	up.Push(fakeupstream.Fault{Status: 429, Header: http.Header{"Retry-After": {"300"}}})
	for range 3 {
		resp := rawPost(t, srv.url+"/api/v1/messages", key, `{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	reqs := rcv.Wait(t, 1, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	if reqs = rcv.Requests(); len(reqs) != 1 {
		t.Fatalf("%d alerts", len(reqs))
	}
	var doc struct {
		Event   string
		Account struct{ ID string }
	}
	json.Unmarshal(reqs[0].Body, &doc)
	if doc.Event != "account.rate_limited" || doc.Account.ID != acct {
		t.Fatalf("alert %s", reqs[0].Body)
	}
	if !strings.Contains(srv.stderr.String(), "") {
		t.Fatal()
	}
}
