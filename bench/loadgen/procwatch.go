package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports; the kernel ABI fixes it.
const clockTicks = 100

// rssEvery is how often the watcher samples resident memory. 50 ms is fine
// enough to catch the peak of a hold run that lasts seconds.
const rssEvery = 50 * time.Millisecond

// watcher samples one process's CPU time and resident memory while a run
// goes on, so the proxy's cost is attributed to exactly this run's requests.
type watcher struct {
	pid      int
	cpuStart float64
	rssStart int64
	mu       sync.Mutex
	rssPeak  int64
	done     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
}

// watchStats is what a watcher saw between start and stop.
type watchStats struct {
	cpuSeconds  float64
	rssStartKiB int64
	rssPeakKiB  int64
}

func startWatch(ctx context.Context, pid int) (*watcher, error) {
	cpu, err := cpuSeconds(pid)
	if err != nil {
		return nil, err
	}
	rss, err := rssKiB(pid)
	if err != nil {
		return nil, err
	}
	w := &watcher{pid: pid, cpuStart: cpu, rssStart: rss, rssPeak: rss,
		done: make(chan struct{}), stopped: make(chan struct{})}
	go w.loop(ctx)
	return w, nil
}

func (w *watcher) loop(ctx context.Context) {
	defer close(w.stopped)
	t := time.NewTicker(rssEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.done:
			return
		case <-t.C:
		}
		rss, err := rssKiB(w.pid)
		if err != nil {
			continue // the process may be gone; stop reports what was seen
		}
		w.mu.Lock()
		w.rssPeak = max(w.rssPeak, rss)
		w.mu.Unlock()
	}
}

// stop ends sampling and reads the CPU time consumed since start. A process
// that exited meanwhile reports what was sampled before it went.
func (w *watcher) stop() watchStats {
	w.stopOnce.Do(func() { close(w.done) })
	<-w.stopped
	st := watchStats{rssStartKiB: w.rssStart}
	if rss, err := rssKiB(w.pid); err == nil {
		w.mu.Lock()
		w.rssPeak = max(w.rssPeak, rss)
		w.mu.Unlock()
	}
	w.mu.Lock()
	st.rssPeakKiB = w.rssPeak
	w.mu.Unlock()
	if cpu, err := cpuSeconds(w.pid); err == nil {
		st.cpuSeconds = cpu - w.cpuStart
	}
	return st
}

// cpuSeconds is utime+stime of pid (all its threads) from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads fields 14 (utime) and 15 (stime) of a /proc/PID/stat
// line. The command name (field 2) may contain spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')' come field 3 (state) onwards: utime is field 14 → index 11.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat line")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	stt, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed utime/stime in /proc stat line")
	}
	return float64(ut+stt) / clockTicks, nil
}

// rssKiB is VmRSS of pid from /proc/PID/status.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

func parseVmRSS(b []byte) (int64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS line")
}
