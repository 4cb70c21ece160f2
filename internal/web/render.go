package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/crs-relay/crs/internal/admin"
)

// renderer holds each page's template set: the layout plus the page's own
// file, parsed once at start.
type renderer struct {
	sets map[string]*template.Template
}

// pageData is what every template gets: the request's view and the page's
// own data.
type pageData struct {
	V *view
	D any
}

func newRenderer(loc *time.Location) *renderer {
	funcs := template.FuncMap{
		"usd":   usd,
		"num":   num,
		"when":  func(t time.Time) string { return whenIn(t, loc) },
		"whenp": func(t *time.Time) string { return whenPtr(t, loc) },
		"pct":   func(part, whole int64) int64 { return pct(part, whole) },
		"add":   func(a, b int) int { return a + b },
		"add64": func(a, b int64) int64 { return a + b },
		"svg":   func(s template.HTML) template.HTML { return s },
	}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html"))
	r := &renderer{sets: map[string]*template.Template{}}
	files, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, f := range files {
		name := path.Base(f)
		if name == "layout.html" {
			continue
		}
		t := template.Must(template.Must(layout.Clone()).ParseFS(assets, f))
		r.sets[strings.TrimSuffix(name, ".html")] = t
	}
	return r
}

// render writes page name with data d; a template error is a bug, logged and
// answered 500 before anything was written.
func (c *Console) render(w http.ResponseWriter, r *http.Request, v *view, status int, name string, d any) {
	t, ok := c.pages.sets[name]
	if !ok {
		c.log.ErrorContext(r.Context(), "console: no template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", pageData{V: v, D: d}); err != nil {
		c.log.ErrorContext(r.Context(), "console: template", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if v.Flash != "" {
		http.SetCookie(w, &http.Cookie{Name: "crs_flash", Path: Prefix, MaxAge: -1})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorPage is the data of error.html.
type errorPage struct{ Message string }

func (c *Console) notFound(w http.ResponseWriter, r *http.Request, v *view) {
	c.render(w, r, v, http.StatusNotFound, "error", errorPage{Message: v.T("error.not_found")})
}

func (c *Console) forbidden(w http.ResponseWriter, r *http.Request, v *view) {
	c.render(w, r, v, http.StatusForbidden, "error", errorPage{Message: v.T("error.forbidden")})
}

// fail answers an error of the management service: its own words for bad
// input (400, 404, 409), a logged 500 for the rest.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, v *view, err error) {
	status, text := userError(v, err)
	if status == http.StatusInternalServerError {
		c.log.ErrorContext(r.Context(), "console", "path", r.URL.Path, "err", err)
	}
	c.render(w, r, v, status, "error", errorPage{Message: text})
}

// userError turns a service error into a status and a sentence for v.
func userError(v *view, err error) (int, string) {
	var inv *admin.InvalidError
	switch {
	case asInvalid(err, &inv):
		return http.StatusBadRequest, invalidText(v, inv)
	case isNotFound(err):
		return http.StatusNotFound, v.T("error.not_found")
	}
	return http.StatusInternalServerError, v.T("error.internal", err.Error())
}

// usd prints picodollars as dollars with cents, or more digits for amounts
// under a cent.
func usd(pico int64) string {
	d := float64(pico) / 1e12
	switch {
	case d == 0:
		return "$0"
	case d < 0.01 && d > -0.01:
		return fmt.Sprintf("$%.4f", d)
	}
	return "$" + groupDigits(fmt.Sprintf("%.2f", d))
}

// num prints an integer with thousands separators.
func num(n int64) string { return groupDigits(strconv.FormatInt(n, 10)) }

func groupDigits(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, ch := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	out := b.String()
	if hasFrac {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

func whenIn(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(loc).Format("2006-01-02 15:04:05")
}

func whenPtr(t *time.Time, loc *time.Location) string {
	if t == nil {
		return "—"
	}
	return whenIn(*t, loc)
}

func pct(part, whole int64) int64 {
	if whole <= 0 {
		return 0
	}
	p := part * 100 / whole
	return min(max(p, 0), 100)
}
