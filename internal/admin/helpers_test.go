package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/crs-relay/crs/internal/secret"
	"github.com/crs-relay/crs/internal/store"
	"github.com/crs-relay/crs/internal/store/sqlite"
)

const (
	testUser     = "root"
	testPassword = "correct horse battery"
	testJWT      = "test-jwt-secret-0123456789abcdef0123456789"
)

// clock is a settable clock shared by the store, the service and the API.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testEnv is a real sqlite store, the service and the API served on a
// loopback socket.
type testEnv struct {
	t       *testing.T
	clock   *clock
	st      *sqlite.Store
	svc     *Service
	api     *API
	srv     *httptest.Server
	dataDir string
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	clk := &clock{t: time.Now().UTC()}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "crs.db"), sqlite.Options{Location: time.UTC, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := secret.NewBox(strings.Repeat("k", 40))
	if err != nil {
		t.Fatal(err)
	}
	// The admin as Bootstrap would make it, at bcrypt's lowest cost:
	// the default cost takes a second per hash under -race.
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetAdmin(ctx, store.Admin{Username: testUser, PasswordHash: string(hash), UpdatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := writeInitFile(dir, initFile{AdminUsername: testUser, AdminPassword: testPassword, CreatedAt: clk.Now().Format(time.RFC3339)}); err != nil {
		t.Fatal(err)
	}
	svc := &Service{Store: st, Box: box, Now: clk.Now}
	api := NewAPI(svc, APIOptions{
		JWTSecret:    testJWT,
		DataDir:      dir,
		PasswordCost: bcrypt.MinCost,
		// Tests pick their client address with a header.
		ClientIP: func(r *http.Request) string {
			if ip := r.Header.Get("X-Test-Client"); ip != "" {
				return ip
			}
			return remoteHost(r)
		},
	})
	mux := http.NewServeMux()
	for _, r := range api.Routes() {
		mux.Handle(r.Pattern, r.Handler)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &testEnv{t: t, clock: clk, st: st, svc: svc, api: api, srv: srv, dataDir: dir}
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// errorCode returns the error code of an error body, or "".
func (r response) errorCode() string {
	var e errorBody
	json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func (r response) errorMessage() string {
	var e errorBody
	json.Unmarshal(r.body, &e)
	return e.Error.Message
}

// do sends a request; body may be nil, a string (sent raw) or a value
// (sent as JSON). hdr adds headers ("Authorization", "Bearer x", …).
func (e *testEnv) do(method, path string, body any, hdr ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// authed sends a request with a Bearer token.
func (e *testEnv) authed(tok, method, path string, body any) response {
	e.t.Helper()
	return e.do(method, path, body, "Authorization", "Bearer "+tok)
}

// login logs in with the test credentials and returns the token.
func (e *testEnv) login() string {
	e.t.Helper()
	r := e.do("POST", "/admin/login", map[string]string{"username": testUser, "password": testPassword})
	if r.status != http.StatusOK {
		e.t.Fatalf("login: %d %s", r.status, r.body)
	}
	var tr TokenResponse
	r.json(e.t, &tr)
	return tr.Token
}

// want fails unless r has the status (and, if code != "", the error code).
func want(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if code != "" && r.errorCode() != code {
		t.Fatalf("error code %q, want %q; body %s", r.errorCode(), code, r.body)
	}
}
