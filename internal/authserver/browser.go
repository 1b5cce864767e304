package authserver

import (
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The sign-in is bound to the browser that started it. A flow id alone
// (a hidden form field) could be carried to another browser: an attacker
// who starts a flow, or a federated sign-in, in their own browser and gets
// the victim's browser to post the form or follow the provider's callback
// would sign the victim in as the attacker (login CSRF). So /authorize
// gives the browser a random binding cookie the first time, the flow
// records its hash, and the login form's CSRF value, the consent form's
// and the federation state are all bound to it: a form or callback that
// arrives with another browser's cookie, or none, is refused.
const (
	browserCookie = "mcpgate_as_browser"
	deviceCookie  = "mcpgate_as_device"
	deviceTTL     = 90 * 24 * time.Hour
)

// browser returns the browser binding value, setting a new cookie when
// the request carries none.
func (s *Server) browser(w http.ResponseWriter, r *http.Request) string {
	if b := s.browserID(r); b != "" {
		return b
	}
	b := randomID(24)
	http.SetCookie(w, &http.Cookie{Name: s.browserCookieName(), Value: b, Path: "/", HttpOnly: true, Secure: s.cfg.SecureCookies,
		SameSite: http.SameSiteLaxMode})
	return b
}

// browserCookieName: on https the cookie carries the __Host- prefix, so
// a sibling subdomain cannot plant a binding value it knows (cookie
// tossing) — browsers accept such a cookie only from this exact host,
// Secure, with Path=/ and no Domain.
func (s *Server) browserCookieName() string {
	if s.cfg.SecureCookies {
		return "__Host-" + browserCookie
	}
	return browserCookie
}

// browserID is the binding cookie of the request ("" when absent or not
// one of ours).
func (s *Server) browserID(r *http.Request) string {
	c, err := r.Cookie(s.browserCookieName())
	if err != nil || len(c.Value) != 32 {
		return ""
	}
	if _, err := base64.RawURLEncoding.DecodeString(c.Value); err != nil {
		return ""
	}
	return c.Value
}

// sameBrowser: the request carries the binding cookie the flow was
// started with.
func (s *Server) sameBrowser(r *http.Request, bound string) bool {
	b := s.browserID(r)
	return b != "" && bound != "" && subtle.ConstantTimeCompare([]byte(hashToken(b)), []byte(bound)) == 1
}

// setDevice remembers, in a signed cookie, that this browser signed in as
// user with the right password: its later sign-ins as that user are not
// slowed by failures anyone else causes (see throttle).
func (s *Server) setDevice(w http.ResponseWriter, user string) {
	u := base64.RawURLEncoding.EncodeToString([]byte(user))
	exp := strconv.FormatInt(s.now().Add(deviceTTL).Unix(), 10)
	http.SetCookie(w, &http.Cookie{Name: deviceCookie, Value: u + "." + exp + "." + s.mac("device", u, exp), Path: "/login",
		HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteLaxMode, MaxAge: int(deviceTTL / time.Second)})
}

// device returns an id for the request's device cookie if it is valid
// and names user, else "".
func (s *Server) device(r *http.Request, user string) string {
	c, err := r.Cookie(deviceCookie)
	if err != nil {
		return ""
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return ""
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || time.Unix(exp, 0).Before(s.now()) || subtle.ConstantTimeCompare([]byte(parts[2]), []byte(s.mac("device", parts[0], parts[1]))) != 1 {
		return ""
	}
	if name, err := base64.RawURLEncoding.DecodeString(parts[0]); err != nil || string(name) != user {
		return ""
	}
	return parts[2][:16]
}
