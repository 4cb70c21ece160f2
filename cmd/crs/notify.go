package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/crs-relay/crs/internal/admin"
	"github.com/crs-relay/crs/internal/notify"
	"github.com/crs-relay/crs/internal/store"
)

const notifyAddSynopsis = "--type webhook|telegram|slack|discord|dingtalk|feishu|wecom|bark|smtp --name NAME " +
	"[--url URL] [--secret S] [--token T] [--chat-id ID] " +
	"[--smtp-host H] [--smtp-port N] [--smtp-user U] [--smtp-password P] [--from ADDR] [--to ADDR,…] " +
	"[--lang en|zh-CN] [--events LIST] [--json]"

// listFlag collects a flag given several times or with commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func notifyAdd(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "notify add", notifyAddSynopsis)
	var in admin.ChannelInput
	fs.StringVar(&in.Type, "type", "", "webhook, telegram, slack, discord, dingtalk, feishu, wecom, bark or smtp (required)")
	fs.StringVar(&in.Name, "name", "", "a name to refer to the channel by (required, unique)")
	fs.StringVar(&in.URL, "url", "", "the webhook URL (webhook, slack, discord, dingtalk, feishu, wecom), or the API root for telegram and bark; - reads it from stdin")
	fs.StringVar(&in.Secret, "secret", "", "signing secret: dingtalk and feishu (SEC…), or the webhook's HMAC key; - reads it from stdin")
	fs.StringVar(&in.Token, "token", "", "telegram bot token, or bark device key; - reads it from stdin")
	fs.StringVar(&in.ChatID, "chat-id", "", "telegram chat to post to")
	fs.StringVar(&in.SMTPHost, "smtp-host", "", "SMTP server (smtp)")
	fs.IntVar(&in.SMTPPort, "smtp-port", notify.DefaultSMTPPort, "SMTP port: 465 is TLS from the start, others use STARTTLS when offered")
	fs.StringVar(&in.SMTPUser, "smtp-user", "", "SMTP login")
	fs.StringVar(&in.SMTPPassword, "smtp-password", "", "SMTP password; - reads it from stdin")
	fs.StringVar(&in.From, "from", "", "sender address (smtp)")
	var to, events listFlag
	fs.Var(&to, "to", "recipient addresses (smtp), comma-separated or repeated")
	fs.StringVar(&in.Lang, "lang", "en", "language of the messages: en or zh-CN")
	fs.Var(&events, "events", "events to send, comma-separated (e.g. account.*,key.over_limit); default all")
	asJSON := fs.Bool("json", false, "print the channel as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("notify add: unexpected argument %q", pos[0])}
	}
	if strings.TrimSpace(in.Type) == "" {
		return usageError{"notify add: --type is required"}
	}
	if strings.TrimSpace(in.Name) == "" {
		return usageError{"notify add: --name is required"}
	}
	if notify.Type(strings.ToLower(in.Type)) != notify.TypeSMTP && !isSet(fs, "smtp-port") {
		in.SMTPPort = 0
	}
	in.To, in.Events = to, events
	if err := readStdinSecret(c, map[string]*string{
		"url": &in.URL, "secret": &in.Secret, "token": &in.Token, "smtp-password": &in.SMTPPassword,
	}); err != nil {
		return err
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.AddChannel(ctx, in)
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("notify add: a channel named %q already exists", strings.TrimSpace(in.Name))
		}
		if err != nil {
			return fmt.Errorf("notify add: %s", describe(err))
		}
		if *asJSON {
			return printJSON(c.stdout, v)
		}
		fmt.Fprintf(c.stdout, "Added notification channel %s (%s, %s → %s).\n", v.ID, v.Name, v.Type, v.Target)
		fmt.Fprintf(c.stdout, "Send a test message with: crs notify test %s\n", v.Name)
		return nil
	})
}

// readStdinSecret replaces the one flag whose value is "-" with stdin, so
// a token need not appear in the shell history or the process list.
func readStdinSecret(c *cli, flags map[string]*string) error {
	var from string
	for name, p := range flags {
		if *p != "-" {
			continue
		}
		if from != "" {
			return usageError{fmt.Sprintf("notify add: only one flag can read stdin (--%s and --%s both say -)", from, name)}
		}
		from = name
		b, err := io.ReadAll(io.LimitReader(c.stdin, maxStdinSecret+1))
		if err != nil {
			return fmt.Errorf("notify add: reading --%s from stdin: %w", name, err)
		}
		if len(b) > maxStdinSecret {
			return fmt.Errorf("notify add: --%s from stdin: more than %d bytes", name, maxStdinSecret)
		}
		if *p = strings.TrimSpace(string(b)); *p == "" {
			return usageError{fmt.Sprintf("notify add: --%s -: stdin was empty", name)}
		}
	}
	return nil
}

func notifyList(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "notify list", "[--json]")
	asJSON := fs.Bool("json", false, "print a JSON array (secrets masked)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("notify list: unexpected argument %q", pos[0])}
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		vs, err := e.Admin.ListChannels(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, vs)
		}
		if len(vs) == 0 {
			fmt.Fprintln(c.stdout, "No notification channels yet. Add one with: crs notify add --type telegram --name phone --token T --chat-id ID")
			return nil
		}
		tw := table(c.stdout)
		fmt.Fprintln(tw, "ID\tNAME\tTYPE\tTARGET\tLANG\tEVENTS")
		for _, v := range vs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Name, v.Type, v.Target, v.Lang, strings.Join(v.Events, ","))
		}
		return tw.Flush()
	})
}

func notifyTest(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "notify test", "NAME|ID [--json]")
	asJSON := fs.Bool("json", false, "print the outcome as JSON")
	ref, err := oneID(fs, "notify test", "channel", args)
	if err != nil {
		return err
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		res, err := e.Admin.TestChannel(ctx, ref)
		if err != nil {
			return fmt.Errorf("notify test %s: %s", ref, describe(err))
		}
		if *asJSON {
			if err := printJSON(c.stdout, res); err != nil {
				return err
			}
		} else if res.OK {
			fmt.Fprintf(c.stdout, "Test message delivered to %s (%s → %s) in %d ms.\n", res.Channel.Name, res.Channel.Type, res.Channel.Target, res.Millis)
		}
		if !res.OK {
			return fmt.Errorf("notify test %s: not delivered: %s", res.Channel.Name, res.Error)
		}
		return nil
	})
}

func notifyRemove(ctx context.Context, c *cli, args []string) error {
	fs, dataDir := newFlags(c, "notify remove", "NAME|ID")
	ref, err := oneID(fs, "notify remove", "channel", args)
	if err != nil {
		return err
	}
	return c.withEnv(ctx, *dataDir, func(e *env) error {
		v, err := e.Admin.RemoveChannel(ctx, ref)
		if err != nil {
			return fmt.Errorf("notify remove %s: %s", ref, describe(err))
		}
		fmt.Fprintf(c.stdout, "notification channel %s (%s): removed\n", v.ID, v.Name)
		return nil
	})
}
