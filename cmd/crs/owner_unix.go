//go:build unix

package main

import (
	"os"
	"syscall"
)

// fileOwner returns the numeric owner and group of path, and false where
// the system has no such thing or path cannot be read.
func fileOwner(path string) (uid, gid int, ok bool) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
