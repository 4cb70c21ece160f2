//go:build !unix

package clitest

import "os/exec"

// killGroupOnCancel keeps exec's default (kill the direct child) where
// process groups are not available.
func killGroupOnCancel(*exec.Cmd) {}
