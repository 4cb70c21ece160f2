// Command fakegemini serves the fake Gemini API, Code Assist backend and
// Google OAuth server of package fakeupstream as a separate process, for
// the bench load generator and the end-to-end tests that run the real crs
// binary and Gemini CLI. All three share one listener (their paths do not
// overlap), so one base URL serves as GEMINI_API_URL, CODE_ASSIST_API_URL
// and the root of GOOGLE_OAUTH_AUTHORIZE_URL (+/o/oauth2/v2/auth) and
// GOOGLE_OAUTH_TOKEN_URL (+/token). It prints that base URL as the first
// line of stdout, so a parent process can start it with -addr 127.0.0.1:0
// and read where it landed.
package main

import (
	"context"
	"flag"
	"io"
	"net/http"

	"github.com/crs-relay/crs/internal/fakeupstream"
	"github.com/crs-relay/crs/internal/fakeupstream/cmd/internal/fakecmd"
)

func main() { fakecmd.Main("fakegemini", run) }

// run serves until ctx ends, writing the base URL as the first line of out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fakegemini", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	chunks := fs.Int("chunks", 5, "text chunks per streamed reply")
	delay := fs.Duration("chunk-delay", 0, "pause between chunks")
	keys := fs.String("keys", "", "comma-separated accepted API keys of the native API; empty accepts any non-empty key")
	name := fs.String("name", "", "label shown in response ids and the x-fake-upstream header")
	project := fs.String("project", fakeupstream.DefaultGeminiProject, "Code Assist project of the fake user")
	notOnboarded := fs.Bool("not-onboarded", false, "start the Code Assist user without a tier, so clients must onboard")
	atOnce := fs.Bool("onboard-at-once", false, "finish onboardUser operations in their first answer instead of the first poll")
	anyBearer := fs.Bool("any-bearer", false, "Code Assist accepts any non-empty bearer token, not only the fake OAuth server's")
	if err := fs.Parse(args); err != nil {
		return err
	}

	oauth := fakeupstream.NewGoogleOAuth()
	opts := fakeupstream.GeminiOptions{Chunks: *chunks, ChunkDelay: *delay, Name: *name, Project: *project,
		NotOnboarded: *notOnboarded, OnboardAtOnce: *atOnce}
	if !*anyBearer {
		opts.OAuth = oauth
	}
	opts.APIKeys = fakecmd.Keys(*keys)
	gemini := fakeupstream.NewGemini(opts)
	defer gemini.Close()

	return fakecmd.Serve(ctx, *addr, both(gemini, oauth), out, gemini.Close)
}

// both sends the OAuth server's paths to it and everything else to the
// Gemini fake. A bare GoogleOAuth has an empty URL, so its endpoint URLs
// are exactly its paths. No ServeMux: it would redirect the "//v1internal"
// paths a misconfigured client sends instead of failing them as the real
// service does.
func both(gemini *fakeupstream.Gemini, oauth *fakeupstream.GoogleOAuth) http.Handler {
	oauthPaths := map[string]bool{oauth.AuthorizeURL(): true, oauth.TokenURL(): true,
		oauth.RevokeURL(): true, oauth.UserinfoURL(): true}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if oauthPaths[r.URL.Path] {
			oauth.ServeHTTP(w, r)
			return
		}
		gemini.ServeHTTP(w, r)
	})
}
