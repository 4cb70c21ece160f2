package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Plan values of Profile.Plan. Routing uses them: a free plan gets no Opus.
const (
	PlanMax  = "max"
	PlanPro  = "pro"
	PlanFree = "free"
)

// Profile is who an access token belongs to and what it pays for.
type Profile struct {
	// Plan is PlanMax, PlanPro, PlanFree, or "" when the answer does not
	// say (team and enterprise seats, new shapes).
	Plan        string
	AccountUUID string
	OrgUUID     string
	Email       string
	// OrgType and RateLimitTier are the raw values Plan was derived from
	// (for example "claude_max" and "default_claude_max_20x"), kept for
	// display.
	OrgType       string
	RateLimitTier string
}

type profileResponse struct {
	Account *struct {
		UUID         string `json:"uuid"`
		Email        string `json:"email"`
		EmailAddress string `json:"email_address"`
		HasClaudeMax *bool  `json:"has_claude_max"`
		HasClaudePro *bool  `json:"has_claude_pro"`
	} `json:"account"`
	Organization *struct {
		UUID             string `json:"uuid"`
		OrganizationType string `json:"organization_type"`
		RateLimitTier    string `json:"rate_limit_tier"`
	} `json:"organization"`
}

// Profile reads the account and organization behind an access token. It
// needs the user:profile scope; setup-token accounts get ErrForbidden.
func (c *Client) Profile(ctx context.Context, accessToken string) (Profile, error) {
	var pr profileResponse
	if err := c.getJSON(ctx, c.Endpoints.ProfileURL, accessToken, &pr); err != nil {
		return Profile{}, fmt.Errorf("oauth: profile: %w", err)
	}
	var p Profile
	var hasMax, hasPro *bool
	if a := pr.Account; a != nil {
		p.AccountUUID = a.UUID
		p.Email = a.Email
		if p.Email == "" {
			p.Email = a.EmailAddress
		}
		hasMax, hasPro = a.HasClaudeMax, a.HasClaudePro
	}
	if o := pr.Organization; o != nil {
		p.OrgUUID = o.UUID
		p.OrgType = o.OrganizationType
		p.RateLimitTier = o.RateLimitTier
	}
	p.Plan = planOf(hasMax, hasPro, p.OrgType)
	return p, nil
}

// planOf maps the profile's flags to a plan. The account flags win because
// they are what Claude Code itself reads; the organization type is the
// fallback; both flags explicitly false on a personal account is free. Team
// and enterprise seats map to "" rather than guessing.
func planOf(hasMax, hasPro *bool, orgType string) string {
	switch {
	case hasMax != nil && *hasMax:
		return PlanMax
	case hasPro != nil && *hasPro:
		return PlanPro
	}
	switch orgType {
	case "claude_max":
		return PlanMax
	case "claude_pro":
		return PlanPro
	case "claude_free":
		return PlanFree
	case "":
	default:
		// Team, enterprise and future types: not a plan routing knows.
		return ""
	}
	if hasMax != nil && hasPro != nil {
		return PlanFree
	}
	return ""
}

// Window is one quota window of the usage endpoint.
type Window struct {
	// Utilization is the percentage used (0–100; above 100 when over the
	// limit), as the endpoint reports it.
	Utilization float64
	// ResetsAt is when the window resets; zero when the endpoint gives none
	// (a window with no usage yet).
	ResetsAt time.Time
}

// Usage is the live quota of a subscription. A nil window is one the
// endpoint did not report (for example Opus on a Pro plan).
type Usage struct {
	FiveHour       *Window
	SevenDay       *Window
	SevenDayOpus   *Window
	SevenDaySonnet *Window
}

type windowJSON struct {
	Utilization *float64 `json:"utilization"`
	ResetsAt    *string  `json:"resets_at"`
}

type usageResponse struct {
	FiveHour       *windowJSON `json:"five_hour"`
	SevenDay       *windowJSON `json:"seven_day"`
	SevenDayOpus   *windowJSON `json:"seven_day_opus"`
	SevenDaySonnet *windowJSON `json:"seven_day_sonnet"`
}

// Usage reads the 5-hour and 7-day utilization of the subscription behind an
// access token. Setup-token accounts get ErrForbidden.
func (c *Client) Usage(ctx context.Context, accessToken string) (Usage, error) {
	var ur usageResponse
	if err := c.getJSON(ctx, c.Endpoints.UsageURL, accessToken, &ur); err != nil {
		return Usage{}, fmt.Errorf("oauth: usage: %w", err)
	}
	var u Usage
	var err error
	for _, f := range []struct {
		name string
		in   *windowJSON
		out  **Window
	}{
		{"five_hour", ur.FiveHour, &u.FiveHour},
		{"seven_day", ur.SevenDay, &u.SevenDay},
		{"seven_day_opus", ur.SevenDayOpus, &u.SevenDayOpus},
		{"seven_day_sonnet", ur.SevenDaySonnet, &u.SevenDaySonnet},
	} {
		if *f.out, err = f.in.window(); err != nil {
			return Usage{}, fmt.Errorf("oauth: usage: %s: %w", f.name, err)
		}
	}
	return u, nil
}

func (w *windowJSON) window() (*Window, error) {
	if w == nil {
		return nil, nil
	}
	var out Window
	if w.Utilization != nil {
		out.Utilization = *w.Utilization
	}
	if w.ResetsAt != nil && *w.ResetsAt != "" {
		t, err := time.Parse(time.RFC3339Nano, *w.ResetsAt)
		if err != nil {
			return nil, fmt.Errorf("resets_at %q is not an RFC 3339 time", *w.ResetsAt)
		}
		out.ResetsAt = t
	}
	return &out, nil
}

// APIError is a non-200 answer of the profile or usage endpoint, or of a
// Code Assist setup call. errors.Is matches ErrUnauthorized for 401 and
// ErrForbidden for 403.
type APIError struct {
	Status int
	// Message is the server's error message, cut to 200 characters.
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
}

// Is maps the status to the sentinel errors callers decide on.
func (e *APIError) Is(target error) bool {
	return target == ErrUnauthorized && e.Status == http.StatusUnauthorized ||
		target == ErrForbidden && e.Status == http.StatusForbidden
}

func (c *Client) getJSON(ctx context.Context, url, accessToken string, v any) error {
	if accessToken == "" {
		return errors.New("no access token")
	}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("anthropic-beta", OAuthBeta)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return &APIError{Status: resp.StatusCode, Message: apiMessage(data, accessToken)}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return errors.New("response is not the expected JSON")
	}
	return nil
}

// apiMessage pulls error.message out of an Anthropic error body.
func apiMessage(body []byte, accessToken string) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	msg := string(body)
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	}
	return scrub(strings.TrimSpace(msg), []string{accessToken})
}
