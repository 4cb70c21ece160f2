package shots

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/chromedp/chromedp"
)

// Console records what a tab writes to its console: calls of the console API,
// uncaught exceptions and the browser's own log (failed loads, Content
// Security Policy violations). Its methods are safe for concurrent use.
type Console struct {
	mu      sync.Mutex
	msgs    []chromedp.ConsoleMessage
	markers map[string]chan struct{}
	seq     atomic.Uint64
	done    chan struct{}
}

// WatchConsole starts recording the console of the tab. Recording ends when
// the tab's context ends. Messages written before WatchConsole are lost, so
// call it before the first navigation.
func WatchConsole(tab context.Context) *Console {
	c := &Console{markers: make(map[string]chan struct{}), done: make(chan struct{})}
	// Console subscribes when it returns, not when ranged over, so nothing
	// written between here and the goroutine's start is lost.
	messages := chromedp.Console(tab)
	go func() {
		defer close(c.done)
		for m, err := range messages {
			if err != nil {
				return
			}
			c.add(m)
		}
	}()
	return c
}

// syncPrefix starts the text of the marker messages Sync writes.
const syncPrefix = "crs-console-sync-"

func (c *Console) add(m chromedp.ConsoleMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.Type == chromedp.ConsoleDebug && strings.HasPrefix(m.Text, syncPrefix) {
		if ch, ok := c.markers[m.Text]; ok {
			close(ch)
			delete(c.markers, m.Text)
		}
		return
	}
	c.msgs = append(c.msgs, m)
}

// Sync waits until every message the page wrote before the call is recorded.
// The browser delivers console events in order but the recording runs in its
// own goroutine, so a test that looks at the messages right after an action
// would otherwise race with it. Sync writes a marker message through
// chromedp's own evaluation (not a script in the page, so a strict Content
// Security Policy does not get in the way) and waits for the marker to come
// back.
func (c *Console) Sync(ctx context.Context) error {
	marker := fmt.Sprintf("%s%d", syncPrefix, c.seq.Add(1))
	seen := make(chan struct{})
	c.mu.Lock()
	c.markers[marker] = seen
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.markers, marker)
		c.mu.Unlock()
	}()

	js, _ := json.Marshal(marker)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void]("console.debug("+string(js)+")")); err != nil {
		return fmt.Errorf("shots: syncing the console: %w", err)
	}
	select {
	case <-seen:
		return nil
	case <-c.done:
		return fmt.Errorf("shots: syncing the console: the tab closed")
	case <-ctx.Done():
		return fmt.Errorf("shots: syncing the console: %w", ctx.Err())
	}
}

// Messages returns every message recorded so far, oldest first.
func (c *Console) Messages() []chromedp.ConsoleMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), c.msgs...)
}

// Errors returns the recorded messages that IsPageError counts as defects,
// oldest first.
func (c *Console) Errors() []chromedp.ConsoleMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return pageErrors(c.msgs)
}

// TakeErrors returns what Errors returns and forgets those messages, so that
// a later check only sees errors that come after. The other messages stay.
func (c *Console) TakeErrors() []chromedp.ConsoleMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs, rest []chromedp.ConsoleMessage
	for _, m := range c.msgs {
		if IsPageError(m) {
			errs = append(errs, m)
		} else {
			rest = append(rest, m)
		}
	}
	c.msgs = rest
	return errs
}

func pageErrors(msgs []chromedp.ConsoleMessage) []chromedp.ConsoleMessage {
	var errs []chromedp.ConsoleMessage
	for _, m := range msgs {
		if IsPageError(m) {
			errs = append(errs, m)
		}
	}
	return errs
}

// IsPageError reports whether a console message shows a defect in the page:
// an uncaught exception or unhandled rejection, a console.error call, or an
// error in the browser's log other than a network one, which is where
// Chromium reports a Content Security Policy violation (source "security").
// A message that names the Content Security Policy counts at any level, so
// that report-only violations are caught too.
//
// Failed network loads (source "network") do not count: Chromium logs one for
// every response with an error status, including the 403 or 404 page a test
// asks for on purpose. A test that cares reads Messages.
func IsPageError(m chromedp.ConsoleMessage) bool {
	switch {
	case m.Type == chromedp.ConsoleException:
		return true
	case strings.Contains(m.Text, "Content Security Policy"):
		return true
	case m.Type == chromedp.ConsoleError:
		return m.Source != "network"
	}
	return false
}

// FormatMessages renders messages one per line as "type (source) url:line:
// text", for error messages and test failures.
func FormatMessages(msgs []chromedp.ConsoleMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString("\n\t")
		b.WriteString(string(m.Type))
		if m.Source != "" {
			b.WriteString(" (" + m.Source + ")")
		}
		if m.URL != "" {
			fmt.Fprintf(&b, " %s:%d", m.URL, m.Line+1)
		}
		b.WriteString(": ")
		b.WriteString(m.Text)
	}
	return b.String()
}
