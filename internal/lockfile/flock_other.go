//go:build !unix

package lockfile

import "os"

// Without flock the lock is advisory only: the pid is still written.
func tryLock(*os.File) error { return nil }

func unlock(*os.File) {}
