// Package fakecmd is the process scaffolding the fake upstream commands
// (fakeanthropic, fakeopenai, fakegemini) share: signal handling, the
// listen-then-print-URL handshake their parent processes rely on, and a
// shutdown that does not wait forever on requests a fault left hanging.
package fakecmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// RunFunc is a command's body: it serves until ctx ends and writes the base
// URL as the first line of out. Commands keep it separate from main so
// their tests can run it in-process.
type RunFunc func(ctx context.Context, args []string, out io.Writer) error

// Main runs run with the process arguments and stdout, under a context that
// ends on SIGINT or SIGTERM, so the fake shuts down cleanly when a bench or
// test harness stops it. An error is printed prefixed with name and exits 1.
func Main(name string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		stop()
		os.Exit(1)
	}
}

// Keys splits a comma-separated -keys flag, dropping blanks, so "k1, k2,"
// accepts exactly k1 and k2 and "" leaves the fake accepting any key.
func Keys(list string) []string {
	var keys []string
	for _, k := range strings.Split(list, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// Serve listens on addr, writes "http://<address>\n" to out once the
// listener is open (so a parent that passed port 0 learns the port and can
// connect at once), and serves h until ctx ends or serving fails. On the
// way out it calls release before shutting the server down: a fake's Close
// frees requests that hang or sleep by fault, which Shutdown would
// otherwise wait on for its whole 5-second grace.
func Serve(ctx context.Context, addr string, h http.Handler, out io.Writer, release func()) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if _, err := fmt.Fprintf(out, "http://%s\n", ln.Addr()); err != nil {
		_ = ln.Close()
		return err
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	release()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
