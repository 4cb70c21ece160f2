// Command fakeanthropic serves the fake Anthropic Messages API of package
// fakeupstream as a separate process, for the bench load generator and the
// end-to-end tests that run the real crs binary. It prints its base URL as
// the first line of stdout, so a parent process can start it with
// -addr 127.0.0.1:0 and read where it landed.
package main

import (
	"context"
	"flag"
	"io"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/fakeupstream/cmd/internal/fakecmd"
)

func main() { fakecmd.Main("fakeanthropic", run) }

// run serves until ctx ends, writing the base URL as the first line of out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fakeanthropic", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	deltas := fs.Int("deltas", 5, "text deltas per streamed reply")
	delay := fs.Duration("delta-delay", 0, "pause between text deltas")
	keys := fs.String("keys", "", "comma-separated accepted credentials; empty accepts any non-empty credential")
	name := fs.String("name", "", "label shown in message ids and the x-fake-upstream header")
	if err := fs.Parse(args); err != nil {
		return err
	}

	opts := fakeupstream.Options{Deltas: *deltas, DeltaDelay: *delay, Name: *name}
	opts.APIKeys = fakecmd.Keys(*keys)
	fake := fakeupstream.NewAnthropic(opts)
	defer fake.Close()

	return fakecmd.Serve(ctx, *addr, fake, out, fake.Close)
}
