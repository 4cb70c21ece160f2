package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestRotatingFileRotatesBySize writes lines past the limit several times
// over and checks: no file passes the limit, no line is split or lost
// among the kept files, the newest lines are in the live file, and only
// keep old files remain.
func TestRotatingFileRotatesBySize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "crs.log")
	const limit, keep = 1000, 3
	f, err := OpenRotatingFile(path, limit, keep)
	if err != nil {
		t.Fatal(err)
	}
	const lines = 200
	for i := range lines {
		fmt.Fprintf(f, "line %04d %s\n", i, strings.Repeat("x", 39)) // 50 bytes: 20 a file
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("late\n")); err == nil {
		t.Error("write after Close succeeded")
	}

	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "crs.log crs.log.1 crs.log.2 crs.log.3" {
		t.Fatalf("files %v, want crs.log and 3 rotated", names)
	}
	// Oldest kept first: .3, .2, .1, then the live file.
	var all []string
	for _, n := range []string{"crs.log.3", "crs.log.2", "crs.log.1", "crs.log"} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > limit {
			t.Errorf("%s is %d bytes, over the %d limit", n, len(b), limit)
		}
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Errorf("%s does not end with a whole line", n)
		}
		all = append(all, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	// 4 files × 20 lines hold the last 80 lines, in order.
	if len(all) != 80 {
		t.Fatalf("%d lines kept, want 80", len(all))
	}
	for i, l := range all {
		if want := fmt.Sprintf("line %04d ", lines-80+i); !strings.HasPrefix(l, want) {
			t.Fatalf("kept line %d = %q, want prefix %q", i, l, want)
		}
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestRotatingFileAppendsAndIsConcurrencySafe: reopening appends to what
// is there (and counts it toward the limit); concurrent writers never
// interleave within a line.
func TestRotatingFileAppendsAndIsConcurrencySafe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crs.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenRotatingFile(path, 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				fmt.Fprintf(f, "g%d-%03d %s\n", g, i, strings.Repeat("y", 30))
			}
		})
	}
	wg.Wait()
	f.Close()
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != "old" || len(lines) != 801 {
		t.Fatalf("first line %q, %d lines", lines[0], len(lines))
	}
	for _, l := range lines[1:] {
		if len(l) != len("g0-000 ")+30 {
			t.Fatalf("torn line %q", l)
		}
	}
}

// TestNewLoggerFormatsAndFile: JSON or text on the console as asked (JSON
// when the console is not a terminal and nothing was asked), the level
// honoured, and with a directory every line also in its crs.log as JSON.
func TestNewLoggerFormatsAndFile(t *testing.T) {
	for _, c := range []struct {
		format string
		json   bool
	}{{"", true}, {"json", true}, {"text", false}} {
		var console bytes.Buffer
		log, closeLog, err := NewLogger(&console, LogOptions{Level: "warn", Format: c.format})
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hidden")
		log.Warn("shown", "key", "alice")
		closeLog()
		out := console.String()
		if strings.Contains(out, "hidden") || !strings.Contains(out, "shown") {
			t.Errorf("format %q: level not applied: %s", c.format, out)
		}
		if isJSON := json.Valid(bytes.TrimSpace(console.Bytes())); isJSON != c.json {
			t.Errorf("format %q: JSON %v, want %v: %s", c.format, isJSON, c.json, out)
		}
	}

	dir := filepath.Join(t.TempDir(), "logs")
	var console bytes.Buffer
	log, closeLog, err := NewLogger(&console, LogOptions{Level: "info", Format: "", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("request", "key", "alice", "status", 200)
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, LogFileName))
	if err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(b, &line); err != nil || line["msg"] != "request" || line["key"] != "alice" {
		t.Fatalf("log file %q: %v", b, err)
	}
	if !strings.Contains(console.String(), `"key":"alice"`) {
		t.Fatalf("console lost the line: %s", console.String())
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("LOG_DIR mode %v", fi.Mode().Perm())
	}
}
