//go:build !unix

package clitest

import "context"

// lockFile is a no-op where flock is unavailable; parallel installs there may
// race, which npm survives at the cost of duplicated work.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
