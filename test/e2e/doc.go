// Package e2e tests the built crs binary from the outside, the way an
// operator runs it: `go build` once, then `crs serve` as a child process on a
// loopback port with its own DATA_DIR, set up through the binary's own CLI,
// and driven by the official Anthropic Go SDK, raw HTTP and the real Claude
// Code CLI against fake upstreams. It covers what in-process tests cannot:
// process signals (SIGTERM drain, kill -9 durability), the pid lock between
// two processes, exit codes and stderr of a failed start, and environment
// parsing as the real process sees it.
//
// The package holds no production code; everything is in _test.go files.
package e2e
