package fakeupstream

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tidwall/gjson"
)

// Code Assist tier ids, as cloudcode-pa names them.
const (
	codeAssistFreeTier     = "free-tier"
	codeAssistStandardTier = "standard-tier"
)

// codeAssistUser is the Code Assist state of the fake's one Google user.
type codeAssistUser struct {
	onboarded bool
	tier      string
	project   string
	// managed is the project the free tier hands out.
	managed string
	// atOnce finishes onboardUser operations in their first answer.
	atOnce bool
	ops    map[string]*codeAssistOp
	opSeq  int
}

// codeAssistOp is a pending onboardUser operation.
type codeAssistOp struct {
	tier, project string
	done          bool
}

func newCodeAssistUser(opts GeminiOptions) codeAssistUser {
	return codeAssistUser{
		onboarded: !opts.NotOnboarded,
		tier:      codeAssistFreeTier,
		project:   opts.Project,
		managed:   opts.Project,
		atOnce:    opts.OnboardAtOnce,
		ops:       map[string]*codeAssistOp{},
	}
}

// SetOnboarded sets whether the user has a Code Assist tier. true puts it
// on the free tier with GeminiOptions.Project; false removes the tier, so
// loadCodeAssist offers allowedTiers again and generate requests are
// refused until onboardUser has run.
func (g *Gemini) SetOnboarded(onboarded bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.user.onboarded = onboarded
	g.user.tier = codeAssistFreeTier
	g.user.project = g.user.managed
	if !onboarded {
		g.user.project = ""
	}
}

// CodeAssistProject is the project the user is onboarded with, "" when it
// has no tier.
func (g *Gemini) CodeAssistProject() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.user.onboarded {
		return ""
	}
	return g.user.project
}

type codeAssistTier struct {
	ID                                 string `json:"id"`
	Name                               string `json:"name"`
	Description                        string `json:"description"`
	UserDefinedCloudaicompanionProject bool   `json:"userDefinedCloudaicompanionProject"`
	IsDefault                          bool   `json:"isDefault,omitempty"`
}

func codeAssistTiers() []codeAssistTier {
	return []codeAssistTier{
		{ID: codeAssistFreeTier, Name: "Gemini Code Assist for individuals",
			Description: "Gemini Code Assist for individuals (fake)", IsDefault: true},
		{ID: codeAssistStandardTier, Name: "Gemini Code Assist",
			Description: "Gemini Code Assist Standard (fake)", UserDefinedCloudaicompanionProject: true},
	}
}

func codeAssistTierByID(id string) (codeAssistTier, bool) {
	for _, t := range codeAssistTiers() {
		if t.ID == id {
			return t, true
		}
	}
	return codeAssistTier{}, false
}

type loadCodeAssistJSON struct {
	CurrentTier             *codeAssistTier  `json:"currentTier,omitempty"`
	AllowedTiers            []codeAssistTier `json:"allowedTiers"`
	CloudaicompanionProject string           `json:"cloudaicompanionProject,omitempty"`
}

type codeAssistProjectJSON struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type onboardResponseJSON struct {
	Type                    string                `json:"@type"`
	CloudaicompanionProject codeAssistProjectJSON `json:"cloudaicompanionProject"`
}

type operationJSON struct {
	Name     string               `json:"name"`
	Done     bool                 `json:"done"`
	Response *onboardResponseJSON `json:"response,omitempty"`
}

func finishedOperation(name, project string) operationJSON {
	return operationJSON{Name: name, Done: true, Response: &onboardResponseJSON{
		Type:                    "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse",
		CloudaicompanionProject: codeAssistProjectJSON{ID: project, Name: project},
	}}
}

// serveCodeAssist answers an authenticated /v1internal request.
func (g *Gemini) serveCodeAssist(ctx context.Context, rep *geminiReply, r *http.Request, call geminiCall, body []byte, f GeminiFault) {
	if call.method == "getOperation" {
		g.pollOperation(rep, call.operation)
		return
	}
	root, ok := parseGeminiObject(rep, body)
	if !ok {
		return
	}
	switch call.method {
	case "loadCodeAssist":
		g.mu.Lock()
		u := g.user
		g.mu.Unlock()
		out := loadCodeAssistJSON{AllowedTiers: codeAssistTiers()}
		if u.onboarded {
			t, _ := codeAssistTierByID(u.tier)
			out.CurrentTier = &t
			out.CloudaicompanionProject = u.project
		}
		rep.json(http.StatusOK, out)
	case "onboardUser":
		g.onboard(rep, root)
	case "generateContent", "streamGenerateContent":
		model := root.Get("model")
		if model.Type != gjson.String || model.Str == "" {
			rep.error(http.StatusBadRequest, "model is required", googleErrorDetails{})
			return
		}
		if !g.checkProject(rep, root.Get("project").String()) {
			return
		}
		inner := root.Get("request")
		if !inner.IsObject() {
			rep.error(http.StatusBadRequest, "request is required", googleErrorDetails{})
			return
		}
		req, ok := checkGenerateRequest(rep, inner, false)
		if !ok {
			return
		}
		req.model = model.Str
		req.codeAssist = true
		req.stream = call.method == "streamGenerateContent"
		req.sse = r.URL.Query().Get("alt") == "sse"
		g.answer(ctx, rep, req, f)
	case "countTokens":
		inner := root.Get("request")
		if !inner.IsObject() || inner.Get("model").Str == "" {
			rep.error(http.StatusBadRequest, "request.model is required", googleErrorDetails{})
			return
		}
		if !checkGeminiContents(rep, inner, "request.") {
			return
		}
		rep.json(http.StatusOK, map[string]int64{"totalTokens": g.opts.Usage.Prompt})
	case "retrieveUserQuota":
		if !g.checkProject(rep, root.Get("project").String()) {
			return
		}
		reset := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
		var buckets []map[string]any
		for _, m := range []string{"gemini-2.5-pro", "gemini-2.5-flash", "gemini-3-pro-preview", "gemini-3-flash-preview"} {
			buckets = append(buckets, map[string]any{"remainingFraction": 1, "resetTime": reset, "tokenType": "REQUESTS", "modelId": m})
		}
		rep.json(http.StatusOK, map[string]any{"buckets": buckets})
	case "listExperiments":
		if !g.checkProject(rep, root.Get("project").String()) {
			return
		}
		rep.json(http.StatusOK, map[string]any{"experimentIds": []int{}, "flags": []any{}})
	case "recordCodeAssistMetrics":
		rep.json(http.StatusOK, map[string]any{})
	default:
		rep.error(http.StatusNotFound, "Method not found.", googleErrorDetails{})
	}
}

// checkProject refuses a request whose project is not the user's, as
// cloudcode-pa does when a relay sends the wrong account's project (or none
// before onboarding).
func (g *Gemini) checkProject(rep *geminiReply, project string) bool {
	g.mu.Lock()
	ok := g.user.onboarded && project != "" && project == g.user.project
	g.mu.Unlock()
	if ok {
		return true
	}
	rep.error(http.StatusForbidden, fmt.Sprintf("Permission 'cloudaicompanion.companions.generateChat' denied on resource '//cloudaicompanion.googleapis.com/projects/%s/locations/global' (or it may not exist).", project), googleErrorDetails{
		reason: "IAM_PERMISSION_DENIED", domain: "cloudaicompanion.googleapis.com",
		metadata: map[string]string{"permission": "cloudaicompanion.companions.generateChat"},
	})
	return false
}

// onboard starts (or, with OnboardAtOnce or an onboarded user, finishes)
// the onboarding operation. The free tier refuses a project: it hands out a
// managed one, and Gemini CLI documents that naming one fails with
// FAILED_PRECONDITION. Tiers that let the user define the project need it.
func (g *Gemini) onboard(rep *geminiReply, root gjson.Result) {
	tierID := root.Get("tierId").String()
	tier, ok := codeAssistTierByID(tierID)
	if !ok {
		rep.error(http.StatusBadRequest, fmt.Sprintf("Invalid tier id: %q", tierID), googleErrorDetails{})
		return
	}
	project := root.Get("cloudaicompanionProject").String()
	switch {
	case !tier.UserDefinedCloudaicompanionProject && project != "":
		rep.error(http.StatusBadRequest, "Precondition check failed.", googleErrorDetails{status: "FAILED_PRECONDITION"})
		return
	case tier.UserDefinedCloudaicompanionProject && project == "":
		rep.error(http.StatusBadRequest, "cloudaicompanionProject is required for tier "+tier.ID, googleErrorDetails{})
		return
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	u := &g.user
	if !tier.UserDefinedCloudaicompanionProject {
		project = u.managed
	}
	u.opSeq++
	name := fmt.Sprintf("operations/onboard-%06d", u.opSeq)
	if u.atOnce || (u.onboarded && u.tier == tier.ID && u.project == project) {
		u.onboarded, u.tier, u.project = true, tier.ID, project
		rep.json(http.StatusOK, finishedOperation(name, project))
		return
	}
	u.ops[name] = &codeAssistOp{tier: tier.ID, project: project}
	rep.json(http.StatusOK, operationJSON{Name: name})
}

// pollOperation answers GET /v1internal/operations/{name}: the first poll
// finishes a pending onboarding.
func (g *Gemini) pollOperation(rep *geminiReply, name string) {
	g.mu.Lock()
	op, ok := g.user.ops[name]
	if ok && !op.done {
		op.done = true
		g.user.onboarded, g.user.tier, g.user.project = true, op.tier, op.project
	}
	g.mu.Unlock()
	if !ok {
		rep.error(http.StatusNotFound, "Operation not found: "+name, googleErrorDetails{})
		return
	}
	rep.json(http.StatusOK, finishedOperation(name, op.project))
}
