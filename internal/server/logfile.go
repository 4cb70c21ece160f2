package server

import (
	"fmt"
	"os"
	"sync"
)

// RotatingFile appends to a log file and rotates it by size: once a write
// would take the file past its limit, the file becomes name.1 (name.1
// becomes name.2, and so on; the oldest past keep is removed) and a new
// one is started. Rotation by size, not by date, bounds the disk a busy
// relay's log can take without a logrotate setup. Safe for concurrent use.
type RotatingFile struct {
	mu   sync.Mutex
	path string
	max  int64
	keep int
	f    *os.File
	size int64
}

// OpenRotatingFile opens path for appending (mode 0600: logs name keys
// and accounts), rotating past maxBytes and keeping keep old files (at
// least 1).
func OpenRotatingFile(path string, maxBytes int64, keep int) (*RotatingFile, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("log file %s: size limit must be positive", path)
	}
	r := &RotatingFile{path: path, max: maxBytes, keep: max(keep, 1)}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first when p would take the file past its
// limit. A line is never split across files; a single write larger than
// the limit goes whole into a fresh file.
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			// Keep logging into the current file rather than lose lines.
			fmt.Fprintf(os.Stderr, "crs: log rotation failed: %v\n", err)
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate shifts the old files up by one and starts a new file. On failure
// the current file stays open for writing.
func (r *RotatingFile) rotate() error {
	name := func(i int) string { return fmt.Sprintf("%s.%d", r.path, i) }
	if err := os.Remove(name(r.keep)); err != nil && !os.IsNotExist(err) {
		return err
	}
	for i := r.keep - 1; i >= 1; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := os.Rename(r.path, name(1)); err != nil {
		return err
	}
	old := r.f
	if err := r.open(); err != nil {
		// The renamed file is still open: go on writing into it, and try
		// again only once it has taken another full share.
		r.size = 0
		return err
	}
	return old.Close()
}

// Close closes the file; later writes fail with os.ErrClosed.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
