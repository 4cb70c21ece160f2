// Package redistest gives tests a real Redis: the server on 127.0.0.1:6379
// (or REDIS_TEST_ADDR) when it answers, else a redis-server of their own on
// a free port, and a real 3-node Redis Cluster started from the
// redis-server binary. Tests never FLUSHALL: each one gets its own key
// prefix, whose keys are removed when it ends.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

var (
	serverOnce sync.Once
	serverAddr string
	serverErr  error
)

// Addr returns the address of a Redis server for tests: REDIS_TEST_ADDR,
// else 127.0.0.1:6379 if it answers, else one started for this test
// process (it lives until the process exits).
func Addr(t testing.TB) string {
	t.Helper()
	serverOnce.Do(func() {
		if a := os.Getenv("REDIS_TEST_ADDR"); a != "" {
			serverAddr = a
			return
		}
		if answers("127.0.0.1:6379") {
			serverAddr = "127.0.0.1:6379"
			return
		}
		serverAddr, serverErr = startOwn()
	})
	if serverErr != nil {
		unavailable(t, fmt.Sprintf("no Redis on 127.0.0.1:6379 and none could be started: %v", serverErr))
	}
	return serverAddr
}

// unavailable skips a test that needs Redis on a machine without it (the
// README's `go test ./...` works with Go alone), and fails it under CI=true,
// where .ci/run provides Redis and a skip would hide a broken setup.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal("redistest: " + why)
	}
	t.Skip("redistest: " + why + " (install redis-server to run this test)")
}

func answers(addr string) bool {
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: 300 * time.Millisecond})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err() == nil
}

// startOwn starts a redis-server that keeps nothing on disk. It is not
// stopped: it belongs to the test binary's process group and is killed by
// the kernel's reaping of -test processes only when the machine stops, so
// use it only when no server runs (CI starts one).
func startOwn() (string, error) {
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting redis-server: %w", err)
	}
	go cmd.Wait()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if answers(addr) {
			return addr, nil
		}
	}
	cmd.Process.Kill()
	return "", fmt.Errorf("redis-server on %s did not answer", addr)
}

// Client returns a client of Addr, closed when the test ends.
func Client(t testing.TB) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: Addr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// Prefix returns a key prefix of the test's own ("crs-test:<random>:"); when
// the test ends every key under it is deleted from rdb (SCAN, on every
// master of a cluster).
func Prefix(t testing.TB, rdb goredis.UniversalClient) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	p := "crs-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() { DeletePrefix(rdb, p) })
	return p
}

// DeletePrefix removes every key that starts with prefix.
func DeletePrefix(rdb goredis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	del := func(ctx context.Context, c *goredis.Client) error {
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		return iter.Err()
	}
	if cc, ok := rdb.(*goredis.ClusterClient); ok {
		cc.ForEachMaster(ctx, del)
		return
	}
	if c, ok := rdb.(*goredis.Client); ok {
		del(ctx, c)
	}
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Cluster starts a 3-master Redis Cluster (no replicas) from the
// redis-server binary, each node on a free port with its files in a
// temporary directory, assigns the 16384 slots, waits until the cluster
// says ok, and stops it when the test ends. It returns the nodes'
// addresses.
func Cluster(t testing.TB) []string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, "redis-server not installed")
	}
	const nodes = 3
	addrs := make([]string, nodes)
	for i := range nodes {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting cluster node: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
		})
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := make([]*goredis.Client, nodes)
	for i, a := range addrs {
		clients[i] = goredis.NewClient(&goredis.Options{Addr: a})
		defer clients[i].Close()
		for !answers(a) {
			if ctx.Err() != nil {
				t.Fatalf("cluster node %s did not answer", a)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	per := 16384 / nodes
	for i, c := range clients {
		lo, hi := i*per, (i+1)*per-1
		if i == nodes-1 {
			hi = 16383
		}
		if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("CLUSTER ADDSLOTSRANGE on %s: %v", addrs[i], err)
		}
	}
	for i := 1; i < nodes; i++ {
		host, port, _ := net.SplitHostPort(addrs[i])
		if err := clients[0].Do(ctx, "CLUSTER", "MEET", host, port).Err(); err != nil {
			t.Fatalf("CLUSTER MEET: %v", err)
		}
	}
	for {
		ok := true
		for _, c := range clients {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				ok = false
				break
			}
		}
		if ok {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the cluster did not reach state ok in 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addrs
}

// ClusterClient returns a client of the cluster at addrs, closed when the
// test ends. It waits until every slot is routable from the client's view.
func ClusterClient(t testing.TB, addrs []string) *goredis.ClusterClient {
	t.Helper()
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		// A key per node's range: all must be writable.
		ok := true
		for _, k := range []string{"a", "b", "c", "{cfg}", "{u}"} {
			if err := c.Set(ctx, "redistest:probe:"+k, 1, time.Second).Err(); err != nil {
				ok = false
				break
			}
		}
		if ok {
			return c
		}
		if ctx.Err() != nil {
			t.Fatal("cluster not writable in 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Server starts a redis-server of the test's own on a free port with extra
// settings (e.g. "--appendonly", "yes"), stops it when the test ends, and
// returns its address. For tests that need a server configured otherwise
// than the shared one.
func Server(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, "redis-server not installed")
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	base := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--dir", t.TempDir()}
	cmd := exec.Command("redis-server", append(base, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	for deadline := time.Now().Add(5 * time.Second); !answers(addr); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer", addr)
		}
	}
	return addr
}
