package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite deploy/crs.service from the unit template")

// fakeSystemd puts a systemctl and a journalctl on PATH that record their
// arguments, print a line, and exit with $FAKE_SYSTEMD_EXIT (default 0).
// It returns a function giving the calls so far, one per line.
func fakeSystemd(t *testing.T) (calls func() []string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("crs service is for Linux")
	}
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "calls")
	for _, tool := range []string{"systemctl", "journalctl"} {
		script := "#!/bin/sh\necho \"" + tool + " $*\" >> \"$FAKE_SYSTEMD_LOG\"\necho \"" + tool + " output\"\nexit ${FAKE_SYSTEMD_EXIT:-0}\n"
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	t.Setenv("FAKE_SYSTEMD_LOG", log)
	t.Setenv("FAKE_SYSTEMD_EXIT", "")
	return func() []string {
		b, err := os.ReadFile(log)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
}

func wantCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("systemd calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// testBinary is an executable file to name as --binary.
func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func currentUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Skipf("no current user: %v", err)
	}
	return u.Username
}

func TestServiceInstall(t *testing.T) {
	isolate(t)
	calls := fakeSystemd(t)
	unitDir := t.TempDir()
	dataDir := filepath.Join(t.TempDir(), "state")
	bin, me := testBinary(t), currentUser(t)
	args := []string{"service", "install", "--unit-dir", unitDir, "--binary", bin, "--user", me, "--data-dir", dataDir}

	out := ok(t, "", args...)
	unitPath := filepath.Join(unitDir, "crs.service")
	got, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := renderUnit(unitConfig{Name: "crs", Binary: bin, User: me, DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("unit file:\n%s\nwant:\n%s", got, want)
	}
	for _, line := range []string{"ExecStart=" + bin + " serve", "User=" + me, "Environment=DATA_DIR=" + dataDir, "ReadWritePaths=-" + dataDir} {
		if !strings.Contains(string(got), "\n"+line+"\n") {
			t.Errorf("unit lacks the line %q", line)
		}
	}
	if fi, err := os.Stat(unitPath); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("unit file mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(dataDir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("DATA_DIR not created 0700: %v %v", fi, err)
	}
	wantCalls(t, calls(), "systemctl daemon-reload", "systemctl enable crs.service")
	if !strings.Contains(out, "wrote "+unitPath) || !strings.Contains(out, "crs service start\n") {
		t.Errorf("install output %q", out)
	}

	// Installing again (say after moving the binary) rewrites the unit.
	other := filepath.Join(t.TempDir(), "crs")
	if err := os.WriteFile(other, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ok(t, "", "service", "install", "--unit-dir", unitDir, "--binary", other, "--user", me, "--data-dir", dataDir)
	if got, _ := os.ReadFile(unitPath); !strings.Contains(string(got), "ExecStart="+other+" serve\n") {
		t.Errorf("reinstall kept the old binary:\n%s", got)
	}

	// Another unit name, and DATA_DIR from the environment made absolute.
	t.Chdir(t.TempDir())
	t.Setenv("DATA_DIR", "rel-data")
	out = ok(t, "", "service", "install", "--unit-dir", unitDir, "--binary", bin, "--user", me, "--name", "crs-team.service")
	team, err := os.ReadFile(filepath.Join(unitDir, "crs-team.service"))
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if !strings.Contains(string(team), "Environment=DATA_DIR="+filepath.Join(wd, "rel-data")+"\n") ||
		!strings.Contains(string(team), "EnvironmentFile=-/etc/crs/crs-team.env\n") {
		t.Errorf("crs-team unit:\n%s", team)
	}
	if !strings.Contains(out, "crs service start --name crs-team") {
		t.Errorf("install --name output %q", out)
	}
}

func TestServiceInstallRefusals(t *testing.T) {
	isolate(t)
	calls := fakeSystemd(t)
	unitDir := t.TempDir()
	dataDir := t.TempDir()
	bin, me := testBinary(t), currentUser(t)
	base := []string{"service", "install", "--unit-dir", unitDir, "--data-dir", dataDir}
	for _, c := range []struct {
		code       int
		want       string
		extra      []string
		dataDirArg string
	}{
		{1, "user no-such-user-crs does not exist", []string{"--binary", bin, "--user", "no-such-user-crs"}, ""},
		{1, "not an executable file", []string{"--binary", dataDir, "--user", me}, ""},
		{2, "characters a systemd unit would misread", []string{"--binary", bin, "--user", me}, filepath.Join(dataDir, "my data")},
		{2, "not a unit name", []string{"--binary", bin, "--user", me, "--name", "../evil"}, ""},
		{2, "unexpected argument", []string{"--binary", bin, "--user", me, "now"}, ""},
	} {
		args := append(append([]string{}, base...), c.extra...)
		if c.dataDirArg != "" {
			args = append(args, "--data-dir", c.dataDirArg)
		}
		fails(t, c.code, c.want, args...)
	}
	if ents, _ := os.ReadDir(unitDir); len(ents) != 0 {
		t.Errorf("a refused install wrote %v", ents)
	}
	wantCalls(t, calls())

	// This test binary is a throwaway build, as a `go run` one is: without
	// --binary, install refuses to point a unit at it.
	if exe := testBinary(t); strings.Contains(exe, string(filepath.Separator)+"go-build") {
		fails(t, 1, "temporary go run build", append(base, "--user", me)...)
	}

	// A failing systemctl is reported with its command line.
	t.Setenv("FAKE_SYSTEMD_EXIT", "1")
	fails(t, 1, "systemctl daemon-reload exited with status 1", append(base, "--binary", bin, "--user", me)...)

	// Without systemctl at all.
	t.Setenv("PATH", t.TempDir())
	fails(t, 1, "systemctl not found on PATH", append(base, "--binary", bin, "--user", me)...)
}

// TestServiceInstallGivesDataDirToTheUser runs as root only: install for
// another user hands DATA_DIR (with what root left in it) to that user.
func TestServiceInstallGivesDataDirToTheUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	isolate(t)
	fakeSystemd(t)
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "crs.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(t, "", "service", "install", "--unit-dir", t.TempDir(), "--binary", testBinary(t), "--user", "nobody", "--data-dir", dataDir)
	want, _ := strconv.Atoi(nobody.Uid)
	for _, p := range []string{dataDir, filepath.Join(dataDir, "crs.db")} {
		if uid, _, ok := fileOwner(p); !ok || uid != want {
			t.Errorf("%s owned by %d, want nobody (%d)", p, uid, want)
		}
	}
}

func TestServiceUninstall(t *testing.T) {
	isolate(t)
	calls := fakeSystemd(t)
	unitDir := t.TempDir()
	dataDir := t.TempDir()
	ok(t, "", "service", "install", "--unit-dir", unitDir, "--binary", testBinary(t), "--user", currentUser(t), "--data-dir", dataDir)
	before := len(calls())

	out := ok(t, "", "service", "uninstall", "--unit-dir", unitDir)
	wantCalls(t, calls()[before:], "systemctl disable --now crs.service", "systemctl daemon-reload")
	if _, err := os.Stat(filepath.Join(unitDir, "crs.service")); !os.IsNotExist(err) {
		t.Errorf("unit file still there: %v", err)
	}
	if _, err := os.Stat(dataDir); err != nil {
		t.Errorf("uninstall touched DATA_DIR: %v", err)
	}
	if !strings.Contains(out, "removed crs.service") {
		t.Errorf("uninstall output %q", out)
	}

	// Nothing installed: nothing to do, and systemctl is not bothered.
	before = len(calls())
	out = ok(t, "", "service", "uninstall", "--unit-dir", unitDir)
	if !strings.Contains(out, "not installed") || len(calls()) != before {
		t.Errorf("second uninstall: %q, calls %v", out, calls()[before:])
	}

	// A unit that systemctl cannot disable stays, so nothing is half done.
	ok(t, "", "service", "install", "--unit-dir", unitDir, "--binary", testBinary(t), "--user", currentUser(t), "--data-dir", dataDir)
	t.Setenv("FAKE_SYSTEMD_EXIT", "1")
	fails(t, 1, "systemctl disable --now crs.service exited with status 1", "service", "uninstall", "--unit-dir", unitDir)
	if _, err := os.Stat(filepath.Join(unitDir, "crs.service")); err != nil {
		t.Errorf("unit removed although disable failed: %v", err)
	}
}

func TestServiceControl(t *testing.T) {
	isolate(t)
	calls := fakeSystemd(t)
	for _, verb := range []string{"start", "stop", "restart"} {
		out := ok(t, "", "service", verb)
		if !strings.Contains(out, "systemctl output\n") || !strings.Contains(out, "crs.service") {
			t.Errorf("service %s output %q", verb, out)
		}
	}
	ok(t, "", "service", "restart", "--name", "crs-team")
	ok(t, "", "service", "status")
	wantCalls(t, calls(), "systemctl start crs.service", "systemctl stop crs.service", "systemctl restart crs.service",
		"systemctl restart crs-team.service", "systemctl status --no-pager crs.service")

	// systemctl status speaks through its exit status.
	t.Setenv("FAKE_SYSTEMD_EXIT", "3")
	fails(t, 1, "crs.service is not running", "service", "status")
	t.Setenv("FAKE_SYSTEMD_EXIT", "4")
	fails(t, 1, "there is no crs.service", "service", "status")
	t.Setenv("FAKE_SYSTEMD_EXIT", "1")
	fails(t, 1, "systemctl start crs.service exited with status 1", "service", "start")
	fails(t, 2, "unexpected argument", "service", "stop", "now")
}

func TestServiceLogs(t *testing.T) {
	isolate(t)
	calls := fakeSystemd(t)
	out := ok(t, "", "service", "logs")
	if out != "journalctl output\n" {
		t.Errorf("logs output %q", out)
	}
	ok(t, "", "service", "logs", "--lines", "20", "--since", "1 hour ago", "-f", "--name", "crs-team")
	wantCalls(t, calls(),
		"journalctl --unit crs.service --no-pager --lines 100",
		"journalctl --unit crs-team.service --no-pager --lines 20 --since 1 hour ago --follow")
	fails(t, 2, "--lines", "service", "logs", "--lines", "-1")
}

// TestDeployUnitMatchesTemplate keeps deploy/crs.service equal to what
// install writes for the usual paths (go test -run DeployUnit -update
// rewrites it after a template change).
func TestDeployUnitMatchesTemplate(t *testing.T) {
	want, err := renderUnit(unitConfig{Name: "crs", Binary: "/usr/local/bin/crs", User: "crs", DataDir: "/var/lib/crs"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "deploy", "crs.service")
	if *updateGolden {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("deploy/crs.service differs from the unit template; run go test ./cmd/crs -run DeployUnit -update")
	}
}

// TestUnitVerifies has systemd check the unit install writes, where
// systemd-analyze exists: a misspelt directive is a warning it prints, so
// any line about the unit fails the test.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	unit, err := renderUnit(unitConfig{Name: "crs", Binary: testBinary(t), User: "root", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "crs.service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), analyze, "verify", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "crs.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
