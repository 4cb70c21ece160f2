package web

import (
	"errors"
	"math"
	"net/http"
	"net/url"

	"github.com/crs-relay/crs/internal/admin"
)

// loginPage is the data of login.html.
type loginPage struct {
	Username string
	Next     string
	Error    string
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request, v *view) {
	if _, _, err := c.session(r); err == nil {
		http.Redirect(w, r, localNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(w, r, v, http.StatusOK, "login", loginPage{Next: localNext(r.URL.Query().Get("next"))})
}

// login takes the form fields username, password and csrf.
func (c *Console) login(w http.ResponseWriter, r *http.Request, v *view) {
	user, pass := r.PostFormValue("username"), r.PostFormValue("password")
	next := localNext(r.PostFormValue("next"))
	token, expires, err := c.o.API.Login(r.Context(), c.o.ClientIP(r), user, pass)
	var throttled *admin.ThrottledError
	switch {
	case errors.As(err, &throttled):
		secs := int(math.Ceil(throttled.Wait.Seconds()))
		c.render(w, r, v, http.StatusTooManyRequests, "login", loginPage{Username: user, Next: next, Error: v.T("login.throttled", max(secs, 1))})
		return
	case errors.Is(err, admin.ErrBadLogin):
		c.render(w, r, v, http.StatusUnauthorized, "login", loginPage{Username: user, Next: next, Error: v.T("login.bad")})
		return
	case err != nil:
		c.fail(w, r, v, err)
		return
	}
	setSession(w, r, token, expires)
	http.SetCookie(w, &http.Cookie{Name: cookieSeen, Value: c.seenValue(token, c.o.Now()), Path: Prefix,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, v *view) {
	if err := c.o.API.Logout(r.Context(), v.token); err != nil {
		c.fail(w, r, v, err)
		return
	}
	clearSession(w, r)
	flash(w, "flash.logged_out")
	http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
}

// passwordPage is the data of password.html.
type passwordPage struct{ Error string }

func (c *Console) passwordForm(w http.ResponseWriter, r *http.Request, v *view) {
	c.render(w, r, v, http.StatusOK, "password", passwordPage{})
}

func (c *Console) changePassword(w http.ResponseWriter, r *http.Request, v *view) {
	cur, next, again := r.PostFormValue("current_password"), r.PostFormValue("new_password"), r.PostFormValue("confirm_password")
	if next != again {
		c.render(w, r, v, http.StatusBadRequest, "password", passwordPage{Error: v.T("password.mismatch")})
		return
	}
	token, expires, err := c.o.API.ChangePassword(r.Context(), v.token, cur, next)
	var inv *admin.InvalidError
	if errors.As(err, &inv) {
		c.render(w, r, v, http.StatusBadRequest, "password", passwordPage{Error: invalidText(v, inv)})
		return
	}
	if err != nil {
		c.fail(w, r, v, err)
		return
	}
	setSession(w, r, token, expires)
	http.SetCookie(w, &http.Cookie{Name: cookieSeen, Value: c.seenValue(token, c.o.Now()), Path: Prefix,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)})
	flash(w, "flash.password")
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// prefs sets the language or theme cookie (?lang=zh-CN|en, ?theme=light|dark)
// and goes back to the page it came from (?back=, on this console only).
func (c *Console) prefs(w http.ResponseWriter, r *http.Request, v *view) {
	q := r.URL.Query()
	const year = 365 * 24 * 3600
	if l := q.Get("lang"); l == langEN || l == langZH {
		http.SetCookie(w, &http.Cookie{Name: cookieLang, Value: l, Path: "/", MaxAge: year, SameSite: http.SameSiteLaxMode, Secure: secure(r)})
	}
	if t := q.Get("theme"); t == "light" || t == "dark" {
		http.SetCookie(w, &http.Cookie{Name: cookieTheme, Value: t, Path: "/", MaxAge: year, SameSite: http.SameSiteLaxMode, Secure: secure(r)})
	}
	back := q.Get("back")
	if u, err := url.Parse(back); err != nil || u.Host != "" || u.Scheme != "" {
		back = Prefix
	}
	http.Redirect(w, r, localNext(back), http.StatusSeeOther)
}
