// Package lockfile keeps two `crs serve` processes off one DATA_DIR: the
// first holds an exclusive lock on DATA_DIR/crs.pid (released by the kernel
// when the process dies, even by kill -9), and a second learns its pid.
package lockfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// HeldError says another process holds the lock.
type HeldError struct {
	Path string
	PID  int // 0 when the file did not name one
}

func (e *HeldError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("another crs serve (pid %d) is using this DATA_DIR (%s)", e.PID, e.Path)
	}
	return fmt.Sprintf("another crs serve is using this DATA_DIR (%s)", e.Path)
}

// Lock is a held lock file.
type Lock struct{ f *os.File }

// Acquire takes the lock at path and writes our pid into it, or returns a
// *HeldError naming the holder.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := tryLock(f); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if errors.Is(err, errLocked) {
			return nil, &HeldError{Path: path, PID: pid}
		}
		return nil, err
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, err
	}
	return &Lock{f: f}, nil
}

// Release unlocks and closes. The file stays; its pid is stale but harmless.
func (l *Lock) Release() error {
	unlock(l.f)
	return l.f.Close()
}

var errLocked = errors.New("locked")
