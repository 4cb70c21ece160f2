package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/throttle"
)

// maxBodyBytes bounds every admin request body; the largest legitimate one
// (an account with a long credential) is a few KiB.
const maxBodyBytes = 1 << 20

// DefaultSessionTTL is how long an admin session lasts when APIOptions
// does not say.
const DefaultSessionTTL = 24 * time.Hour

// APIOptions configures the admin HTTP API.
type APIOptions struct {
	// JWTSecret keys the HMAC that signs session tokens (JWT_SECRET).
	// Required: NewAPI panics without it, because unsigned sessions would
	// silently weaken every check.
	JWTSecret string
	// SessionTTL is a session's lifetime from login; 0 means
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// ClientIP returns the client address used to throttle logins; the
	// server passes one that honours TRUST_PROXY. nil means the host part
	// of r.RemoteAddr.
	ClientIP func(*http.Request) string
	// DataDir is where init.json lives; a password change removes the
	// initial password from it. "" skips that step.
	DataDir string
	// Logger receives internal errors (never secrets or bodies); nil
	// discards.
	Logger *slog.Logger
	// PasswordCost is the bcrypt work factor of password hashes the API
	// writes (on a password change); 0 means bcrypt.DefaultCost. Only
	// tests lower it: bcrypt is slow by design, more so under -race.
	PasswordCost int
}

// API is the admin JSON API under /admin/. Construct it with NewAPI and
// mount every Route it returns.
type API struct {
	svc      *Service
	opts     APIOptions
	log      *slog.Logger
	sess     *sessions
	throttle *throttle.Throttle
}

// Route is one admin endpoint for the server's ServeMux. Public routes
// (only login) need no session; every other Handler already refuses a
// request without a valid Bearer session, so mounting a Route can never
// expose it unauthenticated.
type Route struct {
	Method  string // "" for any method
	Pattern string // stdlib ServeMux pattern, e.g. "GET /admin/keys/{id}"
	Public  bool
	Handler http.Handler
}

// NewAPI builds the admin API on svc. It uses svc.Now as its clock (for
// sessions and the login throttle) so tests can move time.
func NewAPI(svc *Service, opts APIOptions) *API {
	if opts.JWTSecret == "" {
		panic("admin: NewAPI needs APIOptions.JWTSecret")
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.ClientIP == nil {
		opts.ClientIP = remoteHost
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.PasswordCost == 0 {
		opts.PasswordCost = bcryptCost
	}
	dummy := []byte(dummyHash)
	if opts.PasswordCost != bcryptCost {
		var err error
		if dummy, err = bcrypt.GenerateFromPassword([]byte("crs timing equaliser"), opts.PasswordCost); err != nil {
			panic("admin: bcrypt: " + err.Error())
		}
	}
	return &API{
		svc:      svc,
		opts:     opts,
		log:      log,
		sess:     &sessions{st: svc.Store, key: opts.JWTSecret, ttl: opts.SessionTTL, now: svc.now, cost: opts.PasswordCost, dummy: dummy},
		throttle: throttle.New(loginMaxFailures, loginWindow, svc.now),
	}
}

func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// Routes lists every admin endpoint. The route-table test walks this list,
// so an endpoint added here is automatically checked for authentication.
func (a *API) Routes() []Route {
	pub := func(method, path string, h http.HandlerFunc) Route {
		return Route{Method: method, Pattern: method + " " + path, Public: true, Handler: h}
	}
	auth := func(method, path string, h authedFunc) Route {
		p := path
		if method != "" {
			p = method + " " + path
		}
		return Route{Method: method, Pattern: p, Handler: a.authed(h)}
	}
	return []Route{
		pub(http.MethodPost, "/admin/login", a.login),
		auth(http.MethodPost, "/admin/logout", a.logout),
		auth(http.MethodPost, "/admin/password", a.password),
		auth(http.MethodGet, "/admin/session", a.session),

		auth(http.MethodGet, "/admin/keys", a.listKeys),
		auth(http.MethodPost, "/admin/keys", a.createKey),
		auth(http.MethodGet, "/admin/keys/{id}", a.getKey),
		auth(http.MethodPatch, "/admin/keys/{id}", a.patchKey),
		auth(http.MethodDelete, "/admin/keys/{id}", a.removeKey),
		auth(http.MethodPost, "/admin/keys/{id}/restore", a.restoreKey),
		auth(http.MethodDelete, "/admin/keys/{id}/purge", a.purgeKey),

		auth(http.MethodGet, "/admin/accounts", a.listAccounts),
		auth(http.MethodPost, "/admin/accounts", a.createAccount),
		auth(http.MethodPost, "/admin/accounts/oauth/start", a.startOAuth),
		auth(http.MethodPost, "/admin/accounts/oauth/finish", a.finishOAuth),
		auth(http.MethodPost, "/admin/accounts/oauth/import", a.importOAuth),
		auth(http.MethodGet, "/admin/accounts/{id}", a.getAccount),
		auth(http.MethodPatch, "/admin/accounts/{id}", a.patchAccount),
		auth(http.MethodDelete, "/admin/accounts/{id}", a.removeAccount),
		auth(http.MethodPost, "/admin/accounts/{id}/reset", a.resetAccount),
		auth(http.MethodGet, "/admin/accounts/{id}/usage", a.accountUsage),

		auth(http.MethodGet, "/admin/groups", a.listGroups),
		auth(http.MethodPost, "/admin/groups", a.createGroup),
		auth(http.MethodGet, "/admin/groups/{id}", a.getGroup),
		auth(http.MethodDelete, "/admin/groups/{id}", a.deleteGroup),
		auth(http.MethodPost, "/admin/groups/{id}/members", a.addGroupMember),
		auth(http.MethodDelete, "/admin/groups/{id}/members/{account}", a.removeGroupMember),

		auth(http.MethodGet, "/admin/usage", a.usage),

		auth(http.MethodGet, "/admin/notify/channels", a.listChannels),
		auth(http.MethodPost, "/admin/notify/channels", a.createChannel),
		auth(http.MethodDelete, "/admin/notify/channels/{id}", a.removeChannel),
		auth(http.MethodPost, "/admin/notify/channels/{id}/test", a.testChannel),

		// Anything else under /admin/ is a 404 — but only for a logged-in
		// admin, so the shape of the API is not probeable anonymously.
		auth("", "/admin/", func(w http.ResponseWriter, r *http.Request, _ authSession) {
			writeError(w, http.StatusNotFound, "not_found", "no admin endpoint "+r.Method+" "+r.URL.Path)
		}),
	}
}

// authSession is the session a request authenticated with.
type authSession struct {
	token string
	store.AdminSession
}

type authedFunc func(http.ResponseWriter, *http.Request, authSession)

// authed wraps h so it runs only for a request with a valid Bearer session.
func (a *API) authed(h authedFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearerToken(r)
		if !ok {
			a.fail(w, r, errUnauthorized)
			return
		}
		sess, err := a.sess.check(r.Context(), tok)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r, authSession{token: tok, AdminSession: sess})
	})
}

// ---- responses ----

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Views are plain data; this cannot happen short of a bug.
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var e errorBody
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

// fail turns err into the error response. Internal errors are logged and
// answered without detail.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var inv *InvalidError
	var tooBig *http.MaxBytesError
	var oe *OAuthError
	var inUse *InUseError
	switch {
	case errors.As(err, &inv):
		writeError(w, http.StatusBadRequest, "invalid_request", inv.Error())
	case errors.As(err, &inUse):
		writeError(w, http.StatusConflict, "conflict", inUse.Error())
	case errors.As(err, &oe) && oe.Refused():
		writeError(w, http.StatusBadRequest, "oauth_refused", oe.Error()+"; start the onboarding again")
	case errors.As(err, &oe):
		writeError(w, http.StatusBadGateway, "oauth_failed", oe.Error())
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", tooBig.Limit))
	case errors.Is(err, errUnauthorized):
		w.Header().Set("WWW-Authenticate", `Bearer realm="crs admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "log in with POST /admin/login and send Authorization: Bearer <token>")
	case errors.Is(err, errBadLogin):
		writeError(w, http.StatusUnauthorized, "invalid_credentials", errBadLogin.Error())
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such "+resourceName(r))
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", "conflicts with an existing "+resourceName(r))
	case errors.Is(err, context.Canceled):
		// The client left; nobody reads the answer.
		return
	default:
		a.log.ErrorContext(r.Context(), "admin api", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error")
	}
}

func resourceName(r *http.Request) string {
	switch {
	case strings.HasPrefix(r.URL.Path, "/admin/keys"):
		return "key"
	case strings.HasPrefix(r.URL.Path, "/admin/accounts"):
		return "account"
	case strings.HasPrefix(r.URL.Path, "/admin/groups"):
		return "group"
	case strings.HasPrefix(r.URL.Path, "/admin/notify/channels"):
		return "notification channel"
	}
	return "resource"
}

// decode reads one JSON object from the body into v: at most maxBodyBytes,
// no unknown fields, nothing after it. Errors name the field at fault.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return err
		case errors.Is(err, io.EOF):
			return invalid("body", "empty; want a JSON object")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return invalid("body", "JSON ends early")
		case errors.As(err, &syn):
			return invalid("body", "invalid JSON at byte %d", syn.Offset)
		case errors.As(err, &typ):
			if typ.Field == "" {
				return invalid("body", "want a JSON object")
			}
			return invalid(typ.Field, "want a JSON %s", jsonKind(typ.Type.Kind().String()))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
			return invalid(f, "unknown field")
		default:
			var inv *InvalidError
			if errors.As(err, &inv) {
				return inv
			}
			return invalid("body", "%v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return invalid("body", "unexpected data after the JSON object")
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "number"
	}
	return goKind
}

// ---- auth endpoints ----

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// TokenResponse answers a login or a password change.
type TokenResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	addr := a.opts.ClientIP(r)
	if ok, wait := a.throttle.Allow(addr); !ok {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		writeError(w, http.StatusTooManyRequests, "too_many_attempts",
			fmt.Sprintf("too many failed logins from this address; try again in %d seconds", max(secs, 1)))
		return
	}
	var req loginRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	tok, exp, err := a.sess.login(r.Context(), req.Username, req.Password)
	if err != nil {
		if errors.Is(err, errBadLogin) {
			a.throttle.Fail(addr)
			a.log.WarnContext(r.Context(), "admin login failed", "client", addr)
		}
		a.fail(w, r, err)
		return
	}
	a.throttle.Succeed(addr)
	writeJSON(w, http.StatusOK, TokenResponse{Token: tok, ExpiresAt: exp.UTC()})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request, s authSession) {
	if err := a.svc.Store.DeleteSession(r.Context(), s.TokenHash); err != nil && !errors.Is(err, store.ErrNotFound) {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type passwordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

func (a *API) password(w http.ResponseWriter, r *http.Request, s authSession) {
	var req passwordRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	tok, exp, err := a.sess.changePassword(r.Context(), req.CurrentPassword, req.NewPassword)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// The password is changed; the old session ends with the change.
	a.svc.Store.DeleteSession(r.Context(), s.TokenHash)
	if err := forgetInitPassword(a.opts.DataDir, a.svc.now()); err != nil {
		// The change itself stands; the stale file is worth a log line.
		a.log.ErrorContext(r.Context(), "admin password changed but init.json not updated", "err", err)
	}
	writeJSON(w, http.StatusOK, TokenResponse{Token: tok, ExpiresAt: exp.UTC()})
}

// SessionView describes the caller's own session.
type SessionView struct {
	Username  string    `json:"username"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (a *API) session(w http.ResponseWriter, r *http.Request, s authSession) {
	writeJSON(w, http.StatusOK, SessionView{Username: s.Username, ExpiresAt: s.ExpiresAt.UTC()})
}

// ---- keys ----

func flagParam(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request, _ authSession) {
	ks, err := a.svc.ListKeys(r.Context(), flagParam(r, "deleted"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ks)
}

func (a *API) createKey(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req keyRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if req.Disabled != nil {
		// A new key starts enabled; disabling is a change.
		a.fail(w, r, invalid("disabled", "unknown field"))
		return
	}
	pol, err := req.policy()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	in := KeyInput{ExpiresAt: req.ExpiresAt.Value, Policy: pol}
	if req.Name != nil {
		in.Name = *req.Name
	}
	if req.Tags != nil {
		in.Tags = *req.Tags
	}
	if req.Clients != nil {
		in.Clients = *req.Clients
	}
	v, key, err := a.svc.CreateKey(r.Context(), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, CreatedKey{KeyView: v, Key: key})
}

func (a *API) getKey(w http.ResponseWriter, r *http.Request, _ authSession) {
	v, err := a.svc.GetKey(r.Context(), store.KeyID(r.PathValue("id")))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// optTime tells an absent JSON field (Set false) from null (Set true,
// Value nil), which PATCH needs to clear an expiry.
type optTime struct {
	Set   bool
	Value *time.Time
}

func (o *optTime) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Value = nil
		return nil
	}
	var t time.Time
	if err := json.Unmarshal(b, &t); err != nil {
		return invalid("expires_at", "want an RFC 3339 time such as 2030-01-02T15:04:05Z, or null")
	}
	o.Value = &t
	return nil
}

// keyRequest is the body of a key create or patch: one flat object whose
// field names are the key view's. One struct serves both so each field is
// read (and its errors named) in one place; create refuses "disabled".
// Fields with more than one JSON form are kept raw and read by policy().
type keyRequest struct {
	Name      *string   `json:"name"`
	Tags      *[]string `json:"tags"`
	Clients   *[]string `json:"clients"`
	Disabled  *bool     `json:"disabled"`
	ExpiresAt optTime   `json:"expires_at"`

	Description     *string             `json:"description"`
	Permissions     *[]string           `json:"permissions"`
	ModelsAllow     *[]string           `json:"models_allow"`
	ModelsDeny      *[]string           `json:"models_deny"`
	Concurrency     *int                `json:"concurrency"`
	Queue           optRaw              `json:"queue"`       // true, false, or null: the server's setting
	RateWindow      optRaw              `json:"rate_window"` // "5m", "1h", "1d"; "0", "" or null: none
	RateRequests    *int64              `json:"rate_requests"`
	RateTokens      *int64              `json:"rate_tokens"`
	RateCost        optRaw              `json:"rate_cost"` // money: a number or a string of USD
	DailyCost       optRaw              `json:"daily_cost"`
	TotalCost       optRaw              `json:"total_cost"`
	WeeklyCost      optRaw              `json:"weekly_cost"`
	DailyOpusCost   optRaw              `json:"daily_opus_cost"`
	WeeklyResetDay  optRaw              `json:"weekly_reset_day"` // 0–6 or "mon"…"sun"
	WeeklyResetHour *int                `json:"weekly_reset_hour"`
	ActivateFor     optRaw              `json:"activate_for"` // "30d", "12h"; "0", "" or null: none
	Account         *string             `json:"account"`
	BindingFallback *bool               `json:"binding_fallback"`
	ServiceRates    *map[string]float64 `json:"service_rates"`
}

// optRaw keeps a JSON value for a handler to read with the field's name
// in its errors; Set tells an absent field from any value, null included.
type optRaw struct {
	Set bool
	Raw json.RawMessage
}

func (o *optRaw) UnmarshalJSON(b []byte) error {
	o.Set = true
	o.Raw = append(o.Raw[:0], b...)
	return nil
}

func (o optRaw) null() bool { return string(o.Raw) == "null" }

// policy turns the request's policy fields into a PolicyPatch.
func (q keyRequest) policy() (PolicyPatch, error) {
	p := PolicyPatch{
		Description: q.Description, Permissions: q.Permissions, ModelsAllow: q.ModelsAllow, ModelsDeny: q.ModelsDeny,
		Concurrency: q.Concurrency, RateRequests: q.RateRequests, RateTokens: q.RateTokens,
		WeeklyResetHour: q.WeeklyResetHour, Account: q.Account, BindingFallback: q.BindingFallback, ServiceRates: q.ServiceRates,
	}
	if q.Queue.Set {
		var v *bool
		if !q.Queue.null() {
			var b bool
			if err := json.Unmarshal(q.Queue.Raw, &b); err != nil {
				return PolicyPatch{}, invalid("queue", "want true, false, or null for the server's setting")
			}
			v = &b
		}
		p.Queue = &v
	}
	var err error
	if p.RateWindow, err = spanField("rate_window", q.RateWindow); err != nil {
		return PolicyPatch{}, err
	}
	if p.ActivateFor, err = spanField("activate_for", q.ActivateFor); err != nil {
		return PolicyPatch{}, err
	}
	for _, m := range []struct {
		field string
		in    optRaw
		out   **USD
	}{
		{"rate_cost", q.RateCost, &p.RateCost}, {"daily_cost", q.DailyCost, &p.DailyCost},
		{"total_cost", q.TotalCost, &p.TotalCost}, {"weekly_cost", q.WeeklyCost, &p.WeeklyCost},
		{"daily_opus_cost", q.DailyOpusCost, &p.DailyOpusCost},
	} {
		if *m.out, err = usdField(m.field, m.in); err != nil {
			return PolicyPatch{}, err
		}
	}
	if q.WeeklyResetDay.Set {
		var n int
		var name string
		switch {
		case json.Unmarshal(q.WeeklyResetDay.Raw, &n) == nil:
		case json.Unmarshal(q.WeeklyResetDay.Raw, &name) == nil:
			if n, err = ParseWeekday(name); err != nil {
				return PolicyPatch{}, invalid("weekly_reset_day", "%s", err.Error())
			}
		default:
			return PolicyPatch{}, invalid("weekly_reset_day", "want 0 (Sunday) to 6 or a day name such as \"mon\"")
		}
		p.WeeklyResetDay = &n
	}
	return p, nil
}

// spanField reads a span field: a string ParseDuration reads, or null or
// "" for none.
func spanField(field string, o optRaw) (*time.Duration, error) {
	if !o.Set {
		return nil, nil
	}
	var d time.Duration
	if !o.null() {
		var s string
		if err := json.Unmarshal(o.Raw, &s); err != nil {
			return nil, invalid(field, "want a string such as \"30d\", \"1h\" or \"5m\", or null")
		}
		if strings.TrimSpace(s) != "" {
			var err error
			if d, err = ParseDuration(s); err != nil {
				return nil, invalid(field, "%s", err.Error())
			}
		}
	}
	return &d, nil
}

// usdField reads a money field: a JSON number or a string holding one.
// null leaves the field as it is, as for the other number fields; 0
// removes the limit. The range is the service's to check.
func usdField(field string, o optRaw) (*USD, error) {
	if !o.Set || o.null() {
		return nil, nil
	}
	var u USD
	if err := u.UnmarshalJSON(o.Raw); err != nil {
		return nil, invalid(field, "want an amount in US dollars such as 12.5")
	}
	return &u, nil
}

func (a *API) patchKey(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req keyRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	pol, err := req.policy()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p := KeyPatch{Name: req.Name, Tags: req.Tags, Clients: req.Clients, Disabled: req.Disabled, Policy: pol}
	if req.ExpiresAt.Set {
		p.ExpiresAt = &req.ExpiresAt.Value
	}
	v, err := a.svc.UpdateKey(r.Context(), store.KeyID(r.PathValue("id")), p)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// keyAction runs act on the key and answers with its view afterwards.
func (a *API) keyAction(act func(context.Context, store.KeyID) error) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, _ authSession) {
		id := store.KeyID(r.PathValue("id"))
		if err := act(r.Context(), id); err != nil {
			a.fail(w, r, err)
			return
		}
		v, err := a.svc.GetKey(r.Context(), id)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func (a *API) removeKey(w http.ResponseWriter, r *http.Request, s authSession) {
	a.keyAction(a.svc.RemoveKey)(w, r, s)
}

func (a *API) restoreKey(w http.ResponseWriter, r *http.Request, s authSession) {
	a.keyAction(a.svc.RestoreKey)(w, r, s)
}

func (a *API) purgeKey(w http.ResponseWriter, r *http.Request, _ authSession) {
	if err := a.svc.PurgeKey(r.Context(), store.KeyID(r.PathValue("id"))); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- groups ----

func (a *API) listGroups(w http.ResponseWriter, r *http.Request, _ authSession) {
	gs, err := a.svc.ListGroups(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, gs)
}

func (a *API) createGroup(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req GroupInput
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.svc.CreateGroup(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request, _ authSession) {
	v, err := a.svc.GetGroup(r.Context(), store.GroupID(r.PathValue("id")))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request, _ authSession) {
	if err := a.svc.DeleteGroup(r.Context(), store.GroupID(r.PathValue("id"))); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type groupMemberRequest struct {
	AccountID store.AccountID `json:"account_id"`
}

func (a *API) addGroupMember(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req groupMemberRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.svc.AddGroupMember(r.Context(), store.GroupID(r.PathValue("id")), req.AccountID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) removeGroupMember(w http.ResponseWriter, r *http.Request, _ authSession) {
	v, err := a.svc.RemoveGroupMember(r.Context(), store.GroupID(r.PathValue("id")), store.AccountID(r.PathValue("account")))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ---- accounts ----

func (a *API) listAccounts(w http.ResponseWriter, r *http.Request, _ authSession) {
	as, err := a.svc.ListAccounts(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, as)
}

// accountCreateRequest is AccountInput with an optional priority: absent
// means DefaultPriority, while an explicit 0 is refused.
type accountCreateRequest struct {
	Platform string `json:"platform"`
	Type     string `json:"type"`
	Name     string `json:"name"`
	APIKey   string `json:"api_key"`
	BaseURL  string `json:"base_url"`
	Proxy    string `json:"proxy"`
	Priority *int   `json:"priority"`

	Models             *map[string]string `json:"models"`
	MaxConcurrency     *int               `json:"max_concurrency"`
	DailyQuota         *USD               `json:"daily_quota"`
	AutoPauseOnWarning *bool              `json:"auto_pause_on_warning"`
	SerialQueue        *bool              `json:"serial_queue"`
	UnifiedUserAgent   *bool              `json:"unified_user_agent"`
	InterceptWarmup    *bool              `json:"intercept_warmup"`
}

func (a *API) createAccount(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req accountCreateRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	in := AccountInput{Platform: req.Platform, Type: req.Type, Name: req.Name, APIKey: req.APIKey,
		BaseURL: req.BaseURL, Proxy: req.Proxy, Priority: DefaultPriority,
		Options: AccountPatch{Models: req.Models, MaxConcurrency: req.MaxConcurrency, DailyQuota: req.DailyQuota,
			AutoPauseOnWarning: req.AutoPauseOnWarning, SerialQueue: req.SerialQueue,
			UnifiedUserAgent: req.UnifiedUserAgent, InterceptWarmup: req.InterceptWarmup}}
	if req.Priority != nil {
		in.Priority = *req.Priority
	}
	v, err := a.svc.AddAccount(r.Context(), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request, _ authSession) {
	v, err := a.svc.GetAccount(r.Context(), store.AccountID(r.PathValue("id")))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

type accountPatchRequest struct {
	Name        *string `json:"name"`
	BaseURL     *string `json:"base_url"`
	Proxy       *string `json:"proxy"`
	APIKey      *string `json:"api_key"`
	Priority    *int    `json:"priority"`
	Disabled    *bool   `json:"disabled"`
	Schedulable *bool   `json:"schedulable"`

	Models             *map[string]string `json:"models"`
	AutoPauseOnWarning *bool              `json:"auto_pause_on_warning"`
	SerialQueue        *bool              `json:"serial_queue"`
	UnifiedUserAgent   *bool              `json:"unified_user_agent"`
	InterceptWarmup    *bool              `json:"intercept_warmup"`
	MaxConcurrency     *int               `json:"max_concurrency"`
	DailyQuota         *USD               `json:"daily_quota"`
}

func (a *API) patchAccount(w http.ResponseWriter, r *http.Request, _ authSession) {
	var req accountPatchRequest
	if err := decode(w, r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.svc.UpdateAccount(r.Context(), store.AccountID(r.PathValue("id")), AccountPatch(req))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) removeAccount(w http.ResponseWriter, r *http.Request, _ authSession) {
	if err := a.svc.RemoveAccount(r.Context(), store.AccountID(r.PathValue("id"))); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) resetAccount(w http.ResponseWriter, r *http.Request, _ authSession) {
	id := store.AccountID(r.PathValue("id"))
	if err := a.svc.ResetCooldown(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	v, err := a.svc.GetAccount(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ---- usage ----

func (a *API) usage(w http.ResponseWriter, r *http.Request, _ authSession) {
	v, err := a.svc.Usage(r.Context(), UsageQuery{KeyID: store.KeyID(r.URL.Query().Get("key"))})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
