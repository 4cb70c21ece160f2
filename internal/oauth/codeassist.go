package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Code Assist user tiers, as loadCodeAssist names them. A Gemini account's
// tier is stored as its Plan.
const (
	TierFree     = "free-tier"
	TierLegacy   = "legacy-tier"
	TierStandard = "standard-tier"
)

// DefaultOnboardPoll is how often an unfinished onboarding operation is
// polled; Gemini CLI waits five seconds between polls too.
const DefaultOnboardPoll = 5 * time.Second

// onboardLimit bounds a whole OnboardUser, polls included, on top of the
// caller's context: Google finishes in seconds, and an admin request must
// not hang on an operation that never completes.
const onboardLimit = 2 * time.Minute

// ErrProjectRequired means the Google account has no Code Assist project
// and onboarding did not make one: Workspace and paid (standard-tier)
// accounts must name their own Google Cloud project, which crs cannot
// choose for them. The error's text adds Google's reasons when it gave any.
var ErrProjectRequired = errors.New("oauth: the Google account has no Code Assist project and needs a Google Cloud project of its own")

// clientMetadata is what Gemini CLI says about itself in every setup call.
var clientMetadata = map[string]string{
	"ideType":    "IDE_UNSPECIFIED",
	"platform":   "PLATFORM_UNSPECIFIED",
	"pluginType": "GEMINI",
}

type caTier struct {
	ID        string `json:"id"`
	IsDefault bool   `json:"isDefault"`
}

type caIneligibleTier struct {
	ReasonCode    string `json:"reasonCode"`
	ReasonMessage string `json:"reasonMessage"`
}

type loadCodeAssistResponse struct {
	CurrentTier     *caTier            `json:"currentTier"`
	PaidTier        *caTier            `json:"paidTier"`
	AllowedTiers    []caTier           `json:"allowedTiers"`
	IneligibleTiers []caIneligibleTier `json:"ineligibleTiers"`
	Project         caProject          `json:"cloudaicompanionProject"`
}

// caProject is a project id that loadCodeAssist sends as a bare string and
// the onboarding operation as {"id","name"}; it reads both.
type caProject string

func (p *caProject) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*p = caProject(s)
		return nil
	}
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return errors.New("cloudaicompanionProject is neither a string nor an object with an id")
	}
	*p = caProject(o.ID)
	return nil
}

type operation struct {
	Name     string `json:"name"`
	Done     bool   `json:"done"`
	Response *struct {
		Project caProject `json:"cloudaicompanionProject"`
	} `json:"response"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// LoadCodeAssist asks Code Assist which project and tier the account behind
// accessToken has, as Gemini CLI does at start. An onboarded account gets
// its project and tier (the paid tier when it has one). An account not yet
// onboarded gets project "" and the tier to onboard it with (the tier Code
// Assist marks as default, or TierLegacy when none is), to pass to
// OnboardUser. An onboarded account without a project gets
// ErrProjectRequired. A rejected token gets an *APIError matching
// ErrUnauthorized.
func (c *GoogleClient) LoadCodeAssist(ctx context.Context, accessToken string) (project, tier string, err error) {
	var lr loadCodeAssistResponse
	body := map[string]any{"metadata": clientMetadata}
	if err := c.codeAssist(ctx, http.MethodPost, c.methodURL("loadCodeAssist"), accessToken, body, &lr); err != nil {
		return "", "", fmt.Errorf("oauth: loadCodeAssist: %w", err)
	}
	if lr.CurrentTier == nil {
		return "", defaultTier(lr.AllowedTiers), nil
	}
	tier = lr.CurrentTier.ID
	if lr.PaidTier != nil && lr.PaidTier.ID != "" {
		tier = lr.PaidTier.ID
	}
	if lr.Project == "" {
		return "", tier, projectRequired(lr.IneligibleTiers)
	}
	return string(lr.Project), tier, nil
}

func defaultTier(tiers []caTier) string {
	for _, t := range tiers {
		if t.IsDefault && t.ID != "" {
			return t.ID
		}
	}
	return TierLegacy
}

func projectRequired(ineligible []caIneligibleTier) error {
	var reasons []string
	for _, t := range ineligible {
		if r := strings.TrimSpace(t.ReasonMessage); r != "" {
			reasons = append(reasons, r)
		} else if t.ReasonCode != "" {
			reasons = append(reasons, t.ReasonCode)
		}
	}
	if len(reasons) == 0 {
		return ErrProjectRequired
	}
	return fmt.Errorf("%w: %s", ErrProjectRequired, scrub(strings.Join(reasons, "; "), nil))
}

// OnboardUser enrolls the account in tier (from LoadCodeAssist) and returns
// the project Code Assist made for it, polling the long-running operation
// every OnboardPoll until it is done. No project is sent: the free tier gets
// a managed one (and refuses a given one), and other tiers need a project
// crs cannot pick, which ends in ErrProjectRequired.
func (c *GoogleClient) OnboardUser(ctx context.Context, accessToken, tier string) (string, error) {
	if tier == "" {
		return "", errors.New("oauth: onboardUser: no tier given; take it from LoadCodeAssist")
	}
	ctx, cancel := context.WithTimeout(ctx, onboardLimit)
	defer cancel()
	var op operation
	body := map[string]any{"tierId": tier, "metadata": clientMetadata}
	if err := c.codeAssist(ctx, http.MethodPost, c.methodURL("onboardUser"), accessToken, body, &op); err != nil {
		return "", fmt.Errorf("oauth: onboardUser: %w", err)
	}
	for !op.Done {
		if op.Name == "" {
			return "", errors.New("oauth: onboardUser: the operation is not done and has no name to poll")
		}
		opURL, err := c.operationURL(op.Name)
		if err != nil {
			return "", fmt.Errorf("oauth: onboardUser: %w", err)
		}
		t := time.NewTimer(c.onboardPoll())
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("oauth: onboardUser: waiting for the operation: %w", ctx.Err())
		case <-t.C:
		}
		name := op.Name
		op = operation{}
		if err := c.codeAssist(ctx, http.MethodGet, opURL, accessToken, nil, &op); err != nil {
			return "", fmt.Errorf("oauth: onboardUser: polling the operation: %w", err)
		}
		if op.Name == "" {
			op.Name = name
		}
	}
	if op.Error != nil {
		return "", fmt.Errorf("oauth: onboardUser: the operation failed: %s", scrub(op.Error.Message, []string{accessToken}))
	}
	if op.Response == nil || op.Response.Project == "" {
		return "", fmt.Errorf("oauth: onboardUser: %w", ErrProjectRequired)
	}
	return string(op.Response.Project), nil
}

// DiscoverProject is what an onboarding does after the code exchange:
// LoadCodeAssist, then OnboardUser when the account has no project yet. It
// returns the project to send with every Code Assist request and the tier
// to show as the account's plan.
func (c *GoogleClient) DiscoverProject(ctx context.Context, accessToken string) (project, tier string, err error) {
	project, tier, err = c.LoadCodeAssist(ctx, accessToken)
	if err != nil || project != "" {
		return project, tier, err
	}
	project, err = c.OnboardUser(ctx, accessToken, tier)
	return project, tier, err
}

func (c *GoogleClient) onboardPoll() time.Duration {
	if c.OnboardPoll > 0 {
		return c.OnboardPoll
	}
	return DefaultOnboardPoll
}

// methodURL is {CodeAssistURL}/v1internal:{method}. A trailing slash on the
// configured root is dropped: Gemini CLI does not, and "//v1internal" is a
// 404.
func (c *GoogleClient) methodURL(method string) string {
	return strings.TrimRight(c.Endpoints.CodeAssistURL, "/") + "/v1internal:" + method
}

// operationURL is {CodeAssistURL}/v1internal/{name}, where name is
// "operations/…" as Code Assist returns it (a bare id gets the prefix). Each
// segment is escaped, so a hostile name cannot leave the operations path.
func (c *GoogleClient) operationURL(name string) (string, error) {
	name = strings.TrimPrefix(name, "/")
	if !strings.HasPrefix(name, "operations/") {
		name = "operations/" + name
	}
	segs := strings.Split(name, "/")
	for i, s := range segs {
		if s == "" || s == "." || s == ".." {
			return "", errors.New("the operation name is not a valid path")
		}
		segs[i] = url.PathEscape(s)
	}
	return strings.TrimRight(c.Endpoints.CodeAssistURL, "/") + "/v1internal/" + strings.Join(segs, "/"), nil
}

// codeAssist makes one Code Assist call with the account's bearer token: a
// JSON body when in is not nil, a JSON answer decoded into out. A non-200
// answer is an *APIError, whose message Google puts in error.message.
func (c *GoogleClient) codeAssist(ctx context.Context, method, u, accessToken string, in, out any) error {
	if accessToken == "" {
		return errors.New("no access token")
	}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", googleUserAgent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
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
	if err := json.Unmarshal(data, out); err != nil {
		return errors.New("response is not the expected JSON")
	}
	return nil
}
