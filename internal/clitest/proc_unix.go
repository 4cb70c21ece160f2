//go:build unix

package clitest

import (
	"os/exec"
	"syscall"
)

// killGroupOnCancel starts cmd in its own process group and makes context
// cancellation kill the whole group: the CLI may spawn helpers (shells, MCP
// servers) that would otherwise outlive the test and hold its pipes open.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
