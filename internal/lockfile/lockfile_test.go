package lockfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestSecondHolderLearnsFirstPID locks from a child process (flock locks
// are per open file, so a second process is the honest test) and checks
// that we are refused with its pid, then get the lock once it exits.
func TestSecondHolderLearnsFirstPID(t *testing.T) {
	if os.Getenv("LOCKFILE_CHILD") != "" {
		l, err := Acquire(os.Getenv("LOCKFILE_CHILD"))
		if err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		var b [1]byte
		os.Stdin.Read(b[:]) // hold until the parent closes stdin
		l.Release()
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "crs.pid")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondHolderLearnsFirstPID$")
	cmd.Env = append(os.Environ(), "LOCKFILE_CHILD="+path)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		t.Fatalf("child did not lock: %q %v", buf, err)
	}
	_, err := Acquire(path)
	var held *HeldError
	if !errors.As(err, &held) || held.PID != cmd.Process.Pid {
		t.Fatalf("err = %v, want HeldError with pid %d", err, cmd.Process.Pid)
	}
	stdin.Close()
	cmd.Wait()
	l, err := Acquire(path)
	if err != nil {
		t.Fatalf("after the holder exited: %v", err)
	}
	defer l.Release()
	b, _ := os.ReadFile(path)
	if string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Fatalf("pid file = %q", b)
	}
}
