// Command crs-screenshots writes a screenshot of every console page, light
// and dark, in English and Simplified Chinese, into a directory
// (docs/console by default): it serves the real console on loopback over a
// throwaway store filled with demonstration data, signs in with Debian's
// chromium, and captures each page.
//
//	go run ./cmd/crs-screenshots [-out docs/console]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/keystats"
	"github.com/crs-relay/crs/internal/policy"
	"github.com/crs-relay/crs/internal/pricing"
	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
	"github.com/crs-relay/crs/internal/web"
	"github.com/crs-relay/crs/internal/web/shots"
)

const (
	user     = "admin"
	password = "screenshots-password"
	jwt      = "screenshots-jwt-secret-0123456789abcdef01"
)

// pages are the console's pages, in the order of the navigation.
var pages = []shots.Page{
	{Name: "login", Path: "/web/login", Anonymous: true},
	{Name: "key-holder", Path: "/web/stats", Anonymous: true},
	{Name: "dashboard", Path: "/web"},
	{Name: "accounts", Path: "/web/accounts"},
	{Name: "account-new", Path: "/web/accounts/new"},
	{Name: "account-oauth", Path: "/web/accounts/oauth"},
	{Name: "keys", Path: "/web/keys"},
	{Name: "key-new", Path: "/web/keys/new"},
	{Name: "usage", Path: "/web/usage"},
	{Name: "settings", Path: "/web/settings"},
}

func main() {
	out := flag.String("out", "docs/console", "directory the PNG files are written to")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "crs-screenshots:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "crs-screenshots-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	loc := time.FixedZone("UTC+8", 8*3600)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "crs.db"), sqlite.Options{Location: loc})
	if err != nil {
		return err
	}
	defer st.Close()
	box, err := secret.NewBox("screenshots-encryption-key-0123456789abc")
	if err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return err
	}
	if err := st.SetAdmin(ctx, store.Admin{Username: user, PasswordHash: string(hash), UpdatedAt: time.Now().Add(-time.Hour)}); err != nil {
		return err
	}
	svc := &admin.Service{Store: st, Box: box}
	if err := seed(ctx, svc, st, loc); err != nil {
		return fmt.Errorf("demonstration data: %w", err)
	}
	api := admin.NewAPI(svc, admin.APIOptions{JWTSecret: jwt, PasswordCost: bcrypt.MinCost})
	limits := policy.New(policy.Options{Counters: st.Counters(), Spend: st.SummarizeUsage, Location: loc})
	con := web.New(web.Options{
		API: api, Store: st, Policy: limits, Secret: jwt, Location: loc, Version: "screenshots",
		Prices: pricing.Default(),
		Stats:  keystats.New(keystats.Options{Keys: st, Usage: st, Policy: limits, Location: loc}),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: con, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	files, err := shots.Capture(ctx, shots.Options{
		BaseURL: "http://" + ln.Addr().String(), Username: user, Password: password,
		Pages: pages, Dir: out, Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
	})
	for _, f := range files {
		fmt.Println(f)
	}
	if errors.Is(err, shots.ErrNoChromium) {
		return fmt.Errorf("%w: install it (apt-get install chromium)", err)
	}
	return err
}
