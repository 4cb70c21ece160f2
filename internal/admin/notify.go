package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/notify"
)

// ChannelInput describes a notification channel to add (`crs notify add`,
// POST /admin/notify/channels). Which fields apply depends on Type; see
// notify.Channel. Events lists event names (or "account.*"); empty means
// every event.
type ChannelInput struct {
	Type         string   `json:"type"`
	Name         string   `json:"name"`
	URL          string   `json:"url,omitempty"`
	Secret       string   `json:"secret,omitempty"`
	Token        string   `json:"token,omitempty"`
	ChatID       string   `json:"chat_id,omitempty"`
	SMTPHost     string   `json:"smtp_host,omitempty"`
	SMTPPort     int      `json:"smtp_port,omitempty"`
	SMTPUser     string   `json:"smtp_user,omitempty"`
	SMTPPassword string   `json:"smtp_password,omitempty"`
	From         string   `json:"from,omitempty"`
	To           []string `json:"to,omitempty"`
	Lang         string   `json:"lang,omitempty"`
	Events       []string `json:"events,omitempty"`
}

// ChannelTestResult is the outcome of a test message (`crs notify test`,
// POST /admin/notify/channels/{id}/test). A channel that refused the
// message is a result with OK false, not an API error.
type ChannelTestResult struct {
	Channel notify.ChannelView `json:"channel"`
	OK      bool               `json:"ok"`
	// Error says why the message did not arrive; never a URL or token.
	Error string `json:"error,omitempty"`
	// Millis is how long the delivery took.
	Millis int64 `json:"ms"`
}

func (s *Service) channelStore() notify.ChannelStore {
	return notify.ChannelStore{Settings: s.Store, Box: s.Box, Now: s.now}
}

// channelErr turns a notify validation error into this package's, so both
// front ends name the field the same way as everywhere else.
func channelErr(err error) error {
	var inv *notify.InvalidError
	if errors.As(err, &inv) {
		return &InvalidError{Field: inv.Field, Reason: inv.Reason, Format: inv.Format, Args: inv.Args}
	}
	return err
}

func channelViews(chs []notify.Channel) []notify.ChannelView {
	out := make([]notify.ChannelView, 0, len(chs))
	for _, c := range chs {
		out = append(out, c.View())
	}
	return out
}

// ListChannels returns every notification channel, secrets masked, in the
// order they were added.
func (s *Service) ListChannels(ctx context.Context) ([]notify.ChannelView, error) {
	chs, err := s.channelStore().List(ctx)
	if err != nil {
		return nil, err
	}
	return channelViews(chs), nil
}

// AddChannel validates and stores a channel; its secrets are sealed with
// the rest of the channel list. A running server starts delivering to it
// within a second or two. Names are unique (store.ErrConflict).
func (s *Service) AddChannel(ctx context.Context, in ChannelInput) (notify.ChannelView, error) {
	events, err := notify.ParseKinds(strings.Join(in.Events, ","))
	if err != nil {
		return notify.ChannelView{}, invalid("events", "%v", err)
	}
	ch, err := s.channelStore().Add(ctx, notify.Channel{
		Name: in.Name, Type: notify.Type(in.Type), URL: in.URL, Secret: in.Secret, Token: in.Token, ChatID: in.ChatID,
		SMTPHost: in.SMTPHost, SMTPPort: in.SMTPPort, SMTPUser: in.SMTPUser, SMTPPassword: in.SMTPPassword,
		From: in.From, To: in.To, Lang: in.Lang, Events: events,
	})
	if err != nil {
		return notify.ChannelView{}, channelErr(err)
	}
	return ch.View(), nil
}

// RemoveChannel deletes the channel with that ID or name and returns what
// it was.
func (s *Service) RemoveChannel(ctx context.Context, ref string) (notify.ChannelView, error) {
	ch, err := s.channelStore().Remove(ctx, ref)
	if err != nil {
		return notify.ChannelView{}, err
	}
	return ch.View(), nil
}

// TestChannel sends a test message to the channel with that ID or name
// now, once (no retries), and reports what happened.
func (s *Service) TestChannel(ctx context.Context, ref string) (ChannelTestResult, error) {
	ch, err := s.channelStore().Get(ctx, ref)
	if err != nil {
		return ChannelTestResult{}, err
	}
	start := time.Now()
	sender := &notify.Sender{Now: s.Now}
	err = sender.Send(ctx, ch, notify.Event{Kind: notify.Test, Channel: ch.Name})
	res := ChannelTestResult{Channel: ch.View(), OK: err == nil, Millis: time.Since(start).Milliseconds()}
	if err != nil {
		if ctx.Err() != nil {
			return ChannelTestResult{}, ctx.Err()
		}
		res.Error = err.Error()
	}
	return res, nil
}

// ---- HTTP ----

func (a *API) listChannels(w http.ResponseWriter, r *http.Request, _ authSession) {
	vs, err := a.svc.ListChannels(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, vs)
}

func (a *API) createChannel(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req ChannelInput
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.svc.AddChannel(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *API) removeChannel(w http.ResponseWriter, r *http.Request, _ authSession) {
	if _, err := a.svc.RemoveChannel(r.Context(), r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) testChannel(w http.ResponseWriter, r *http.Request, _ authSession) {
	res, err := a.svc.TestChannel(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
