package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const healthcheckSynopsis = "[--url http://127.0.0.1:3000] [--timeout 5s]"

// healthcheckCmd asks a running server's GET /health and succeeds only on
// 200. It exists for container health checks (Docker's HEALTHCHECK, which
// runs a command inside the container: a static image has no curl), so it
// reads no configuration beyond HOST and PORT and touches no state.
func healthcheckCmd(ctx context.Context, c *cli, args []string) error {
	fs := flag.NewFlagSet("crs healthcheck", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: crs healthcheck %s\n", healthcheckSynopsis)
		fs.PrintDefaults()
	}
	rawURL := fs.String("url", "", "server to ask, or its /health URL (default http://127.0.0.1:$PORT, or $HOST when it names one address)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("healthcheck: unexpected argument %q", pos[0])}
	}
	target := *rawURL
	if target == "" {
		target = localURL(c.getenv("HOST"), c.getenv("PORT"))
	}
	u, err := healthURL(target)
	if err != nil {
		return usageError{"--url: " + err.Error()}
	}
	status, err := checkHealth(ctx, u, *timeout)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s: %s\n", u, status)
	return err
}

// localURL is the address of the server this machine runs: HOST when it
// names one address, else loopback, because a server listening on every
// address (0.0.0.0, the default, and in containers) answers there.
func localURL(host, port string) string {
	if port == "" {
		port = "3000"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// healthURL turns "http://host:port" (or a full /health URL) into the
// health endpoint's URL.
func healthURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("want an http:// or https:// URL such as http://127.0.0.1:3000, got %q", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/health"
	}
	return u.String(), nil
}

// checkHealth GETs u and returns its status line when it is 200; anything
// else is an error saying what answered, or that nothing did.
func checkHealth(ctx context.Context, u string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	// No proxy from the environment: the server is on this machine.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("unhealthy: %s did not answer within %s", u, timeout)
		}
		return "", fmt.Errorf("unhealthy: %w", err) // names the URL already
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("unhealthy: %s answered %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return resp.Status, nil
}
