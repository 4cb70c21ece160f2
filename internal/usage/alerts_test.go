package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crs-relay/crs/internal/notify"
	"github.com/crs-relay/crs/internal/notify/notifytest"
	"github.com/crs-relay/crs/internal/secret"
)

var _ Alerts = (*notify.Dispatcher)(nil)

// TestSpoolAlertsOnce: a store that refuses commits sends records to the
// spool; the admin hears once (per SpoolWindow), with the count and the
// file, however many batches follow.
func TestSpoolAlertsOnce(t *testing.T) {
	st := openStore(t)
	box, _ := secret.NewBox(strings.Repeat("s", 32))
	rcv := notifytest.NewReceiver(t)
	ctx := context.Background()
	if _, err := (notify.ChannelStore{Settings: st, Box: box}).Add(ctx, notify.Channel{Name: "ops", Type: notify.TypeWebhook, URL: rcv.URL()}); err != nil {
		t.Fatal(err)
	}
	d := notify.New(notify.Options{Store: st, Box: box, WatchEvery: time.Hour})
	dctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(dctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })

	f := &flaky{Store: st}
	f.fail.Store(true)
	spool := t.TempDir()
	r := NewRecorder(f, Options{SpoolDir: spool, Alerts: d})
	r.Start()
	if err := r.Record(ctx, rec("r0", 1)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		r.Record(ctx, rec(fmt.Sprint("r", i+1), 1))
	}
	r.Close(ctx)

	rcv.Wait(t, 1, 3*time.Second)
	time.Sleep(100 * time.Millisecond)
	reqs := rcv.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d alerts, want exactly 1", len(reqs))
	}
	var doc struct {
		Event notify.Kind
		Count int
		Text  string
	}
	json.Unmarshal(reqs[0].Body, &doc)
	files, _ := filepath.Glob(filepath.Join(spool, "spool-*.jsonl"))
	if doc.Event != notify.UsageSpooled || doc.Count != 1 || len(files) != 1 || !strings.Contains(doc.Text, files[0]) {
		t.Fatalf("alert %+v (spool files %v)", doc, files)
	}
}
