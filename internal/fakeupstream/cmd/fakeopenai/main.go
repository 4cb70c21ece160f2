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
	"flag"
	"io"
	"net/http"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/fakeupstream/cmd/internal/fakecmd"
)

func main() { fakecmd.Main("fakeopenai", run) }

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
	opts.APIKeys = fakecmd.Keys(*keys)
	fake := fakeupstream.NewOpenAI(opts)
	defer fake.Close()

	mux := http.NewServeMux()
	mux.Handle("/oauth/", oauth)
	mux.Handle("/", fake)

	return fakecmd.Serve(ctx, *addr, mux, out, fake.Close)
}
