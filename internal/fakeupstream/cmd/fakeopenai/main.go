// Command fakeopenai serves the fake OpenAI of package fakeupstream as a
// separate process, for the bench load generator and the end-to-end tests
// that run the real crs binary and the real Codex CLI. One listener serves
// the Responses API (/v1/...), the Codex backend (/backend-api/codex/...)
// and the OpenAI OAuth server (/oauth/authorize, /oauth/token) whose tokens
// the Codex backend trusts, so a single base URL stands in for
// api.openai.com, chatgpt.com and auth.openai.com. It prints that base URL
// as the first line of stdout, so a parent process can start it with
// -addr 127.0.0.1:0 and read where it landed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/crs-relay/crs/internal/fakeupstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fakeopenai:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, writing the base URL as the first line of out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fakeopenai", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	deltas := fs.Int("deltas", 5, "response.output_text.delta events per streamed reply")
	delay := fs.Duration("delta-delay", 0, "pause between text deltas")
	keys := fs.String("keys", "", "comma-separated API keys the Responses API accepts; empty accepts any non-empty key")
	name := fs.String("name", "", "label shown in response ids and the x-fake-upstream header")
	openCodex := fs.Bool("codex-any-token", false, "let the Codex backend accept any bearer token with any chatgpt-account-id instead of only this server's OAuth tokens")
	if err := fs.Parse(args); err != nil {
		return err
	}

	oauth := fakeupstream.NewOpenAIOAuth()
	opts := fakeupstream.OpenAIOptions{Deltas: *deltas, DeltaDelay: *delay, Name: *name}
	if !*openCodex {
		opts.OAuth = oauth
	}
	for _, k := range strings.Split(*keys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			opts.APIKeys = append(opts.APIKeys, k)
		}
	}
	fake := fakeupstream.NewOpenAI(opts)
	defer fake.Close()

	mux := http.NewServeMux()
	mux.Handle("/oauth/", oauth)
	mux.Handle("/", fake)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
	fake.Close() // release hanging requests so Shutdown can finish
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
