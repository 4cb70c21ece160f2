package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// No Docker engine runs the tests, so the Dockerfile and the compose file
// are checked for what they promise: a static, non-root image whose health
// check is a real crs command, and a compose file that keeps crs's and
// Redis's state in volumes with Redis's append-only file on.

// dockerInstruction is one Dockerfile instruction, continuation lines
// joined.
type dockerInstruction struct{ op, args string }

func readDockerfile(t *testing.T) []dockerInstruction {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstruction
	var cur string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || (line == "" && cur == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur += cont + " "
			continue
		}
		cur += line
		op, args, _ := strings.Cut(cur, " ")
		out = append(out, dockerInstruction{strings.ToUpper(op), strings.TrimSpace(args)})
		cur = ""
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := readDockerfile(t)
	// The instructions of the final stage decide what runs.
	last := 0
	for i, in := range ins {
		if in.op == "FROM" {
			last = i
		}
	}
	final := ins[last:]
	var build, user, health, entry, volume string
	env := map[string]string{}
	for _, in := range ins[:last] {
		if in.op == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	for _, in := range final {
		switch in.op {
		case "USER":
			user = in.args
		case "HEALTHCHECK":
			health = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "VOLUME":
			volume = in.args
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		}
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/crs") {
		t.Errorf("build step %q: want a static (CGO_ENABLED=0) build of ./cmd/crs", build)
	}
	if last == 0 || !strings.Contains(ins[last].args, "scratch") && !strings.Contains(ins[last].args, "distroless") {
		t.Errorf("final stage %q: want a multi-stage build ending on a minimal image", ins[last].args)
	}
	uid, _, _ := strings.Cut(user, ":")
	if user == "" || uid == "0" || uid == "root" {
		t.Errorf("USER %q: the image must not run as root", user)
	}
	if env["DATA_DIR"] == "" || !strings.Contains(volume, env["DATA_DIR"]) {
		t.Errorf("DATA_DIR %q is not the VOLUME %s", env["DATA_DIR"], volume)
	}

	// The health check and the entrypoint run this binary's commands.
	_, cmdJSON, ok := strings.Cut(health, "CMD ")
	var hc []string
	if !ok || json.Unmarshal([]byte(cmdJSON), &hc) != nil || len(hc) < 2 {
		t.Fatalf("HEALTHCHECK %q: want the exec form CMD [\"…/crs\", \"healthcheck\"]", health)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entry), &ep); err != nil || len(ep) != 1 || ep[0] != hc[0] {
		t.Errorf("ENTRYPOINT %q and HEALTHCHECK %q run different binaries", entry, health)
	}
	if !isCommand(strings.Join(hc[1:], " ")) {
		t.Errorf("HEALTHCHECK runs %v, which is not a crs command", hc[1:])
	}
}

// isCommand reports whether line is a crs command line (without flags).
func isCommand(line string) bool {
	return slices.ContainsFunc(commands(), func(c command) bool { return c.name == line })
}

func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	type service struct {
		Build       any      `yaml:"build"`
		Image       string   `yaml:"image"`
		Command     []string `yaml:"command"`
		Volumes     []string `yaml:"volumes"`
		Ports       []string `yaml:"ports"`
		Restart     string   `yaml:"restart"`
		StopGrace   string   `yaml:"stop_grace_period"`
		Environment map[string]string
	}
	var compose struct {
		Services map[string]service `yaml:"services"`
		Volumes  map[string]any     `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	crs, ok := compose.Services["crs"]
	if !ok || crs.Build == nil {
		t.Fatalf("no crs service built from the Dockerfile: %+v", compose.Services)
	}
	redis, ok := compose.Services["redis"]
	if !ok {
		t.Fatal("no redis service")
	}
	cmd := " " + strings.Join(redis.Command, " ") + " "
	if !strings.Contains(cmd, " --appendonly yes ") || !strings.Contains(cmd, " --appendfsync everysec ") {
		t.Errorf("redis command %v: want --appendonly yes --appendfsync everysec", redis.Command)
	}
	// State lives in named, declared volumes at the paths the images use.
	for name, want := range map[string]string{"crs": "/data", "redis": "/data"} {
		s := compose.Services[name]
		found := false
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			if dst == want {
				found = true
				if _, declared := compose.Volumes[src]; !declared {
					t.Errorf("%s mounts volume %q, which is not declared", name, src)
				}
			}
		}
		if !found {
			t.Errorf("%s keeps no volume at %s: %v", name, want, s.Volumes)
		}
	}
	if crs.Restart == "" || crs.StopGrace == "" {
		t.Errorf("crs service: restart %q, stop_grace_period %q; want both set", crs.Restart, crs.StopGrace)
	}
	for _, p := range crs.Ports {
		if !strings.HasSuffix(p, ":3000") {
			t.Errorf("crs port %q does not reach the image's port 3000", p)
		}
	}
}
