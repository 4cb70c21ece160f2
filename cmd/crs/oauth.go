package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/oauth"
)

// maxCredentialFile bounds what `accounts oauth import` reads.
const maxCredentialFile = 64 << 10

// Synopses of the OAuth onboarding commands, shared by the command table
// and each command's -h.
const (
	oauthStartSynopsis  = "--platform claude|openai|gemini [--kind oauth|setup-token] [--proxy URL] [--json]"
	oauthFinishSynopsis = "SESSION_ID --code CODE|CALLBACK_URL|- [--name NAME] [--priority N] [--json]"
	oauthImportSynopsis = "--name NAME [--priority N] [--proxy URL] [--file F] [--json] < credentials.json"
)

func accountsOAuthStart(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "accounts oauth start", oauthStartSynopsis)
	platform := fs.String("platform", "", "claude (a Claude Max/Pro subscription), openai (a ChatGPT subscription, for Codex) or gemini (a Google account, for Gemini CLI); required")
	kind := fs.String("kind", string(oauth.KindOAuth), "oauth (browser login, refreshable, shows plan and quota) or setup-token (one-year inference-only token)")
	proxy := fs.String("proxy", "", "the account's outbound proxy, used from the code exchange on: http://, https:// or socks5://[user:pass@]host:port")
	asJSON := fs.Bool("json", false, `print {"session_id","auth_url",…} as JSON`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("accounts oauth start: unexpected argument %q", pos[0])}
	}
	who := map[string]string{"claude": "the Claude account", "openai": "the ChatGPT account", "gemini": "the Google account"}
	p := strings.TrimSpace(*platform)
	switch p {
	case "claude", "openai", "gemini":
	case "":
		return usageError{"accounts oauth start: --platform is required (claude, openai or gemini)"}
	default:
		return usageError{fmt.Sprintf("accounts oauth start: --platform %q has no OAuth onboarding (claude, openai or gemini)", *platform)}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		st, err := e.Admin.StartOAuth(ctx, admin.OAuthStart{Platform: p, Kind: *kind, Proxy: *proxy})
		if err != nil {
			return fmt.Errorf("accounts oauth start: %s", describe(err))
		}
		if *asJSON {
			return printJSON(c.stdout, st)
		}
		fmt.Fprintf(c.stdout, "1. Open this URL in a browser logged into %s and approve:\n\n   %s\n\n", who[p], st.AuthURL)
		fmt.Fprintf(c.stdout, "2. Copy the code the page shows (or the whole URL of the page it lands on), then before %s run:\n\n",
			st.ExpiresAt.Local().Format("15:04:05"))
		fmt.Fprintf(c.stdout, "   crs accounts oauth finish %s --name NAME --code -\n\n", st.SessionID)
		fmt.Fprintln(c.stdout, "   and paste the code on stdin (or pass it as --code CODE).")
		return nil
	})
}

func accountsOAuthFinish(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "accounts oauth finish", oauthFinishSynopsis)
	code := fs.String("code", "", "the code the approval page showed, the whole callback URL, or - to read it from stdin (required)")
	name := fs.String("name", "", "a name to recognise the account by (default: claude-KIND)")
	priority := fs.Int("priority", admin.DefaultPriority, "1–100, lower is tried first")
	asJSON := fs.Bool("json", false, "print the account as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usageError{"accounts oauth finish: give the SESSION_ID printed by crs accounts oauth start"}
	case len(pos) > 1:
		return usageError{fmt.Sprintf("accounts oauth finish: unexpected argument %q", pos[1])}
	case strings.TrimSpace(*code) == "":
		return usageError{"accounts oauth finish: --code is required"}
	}
	sessionID := pos[0]
	pasted := *code
	if pasted == "-" {
		if pasted, err = readStdin(c, "--code"); err != nil {
			return fmt.Errorf("accounts oauth finish: %w", err)
		}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.FinishOAuth(ctx, sessionID, admin.OAuthFinish{Code: pasted, Name: *name, Priority: *priority})
		if err != nil {
			var inv *admin.InvalidError
			if errors.As(err, &inv) && inv.Field == "session_id" {
				return fmt.Errorf("accounts oauth finish: session %s: %s", sessionID, inv.Reason)
			}
			return fmt.Errorf("accounts oauth finish: %s", describe(err))
		}
		return printOAuthAccount(c, v, *asJSON)
	})
}

func accountsOAuthImport(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "accounts oauth import", oauthImportSynopsis)
	name := fs.String("name", "", "a name to recognise the account by (required)")
	priority := fs.Int("priority", admin.DefaultPriority, "1–100, lower is tried first")
	proxy := fs.String("proxy", "", "outbound proxy: http://, https:// or socks5://[user:pass@]host:port")
	file := fs.String("file", "", "read the credential from this file instead of stdin (Claude Code keeps it in ~/.claude/.credentials.json)")
	asJSON := fs.Bool("json", false, "print the account as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("accounts oauth import: unexpected argument %q", pos[0])}
	}
	if strings.TrimSpace(*name) == "" {
		return usageError{"accounts oauth import: --name is required"}
	}
	var data []byte
	if *file != "" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("accounts oauth import: %w", err)
		}
		data, err = io.ReadAll(io.LimitReader(f, maxCredentialFile+1))
		f.Close()
		if err != nil {
			return fmt.Errorf("accounts oauth import: reading %s: %w", *file, err)
		}
	} else {
		s, err := readStdin(c, "the credential")
		if err != nil {
			return fmt.Errorf("accounts oauth import: %w (or pass --file F)", err)
		}
		data = []byte(s)
	}
	if len(data) > maxCredentialFile {
		return fmt.Errorf("accounts oauth import: credential longer than %d bytes", maxCredentialFile)
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.ImportOAuth(ctx, admin.OAuthImport{JSON: data, Name: *name, Priority: *priority, Proxy: *proxy})
		if err != nil {
			var inv *admin.InvalidError
			if errors.As(err, &inv) && inv.Field == "credential" {
				return fmt.Errorf("accounts oauth import: credential: %s", inv.Reason)
			}
			return fmt.Errorf("accounts oauth import: %s", describe(err))
		}
		return printOAuthAccount(c, v, *asJSON)
	})
}

// readStdin reads one pasted value (at most maxCredentialFile bytes).
func readStdin(c *cli, what string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(c.stdin, maxCredentialFile+1))
	if err != nil {
		return "", fmt.Errorf("reading %s from stdin: %w", what, err)
	}
	if len(b) > maxCredentialFile {
		return "", fmt.Errorf("%s from stdin: more than %d bytes", what, maxCredentialFile)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: stdin was empty", what)
	}
	return s, nil
}

func printOAuthAccount(c *cli, v admin.AccountView, asJSON bool) error {
	if asJSON {
		return printJSON(c.stdout, v)
	}
	plan := v.Plan
	if plan == "" {
		plan = "plan unknown"
	}
	fmt.Fprintf(c.stdout, "Added account %s (%s, %s %s, %s, priority %d).\n", v.ID, v.Name, v.Platform, v.Type, plan, v.Priority)
	return nil
}
