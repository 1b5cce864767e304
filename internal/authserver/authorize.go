package authserver

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// flow is an authorization request in progress (between /authorize and
// the code), stored server-side under a random id.
type flow struct {
	ClientID    string   `json:"client_id"`
	ClientName  string   `json:"client_name"`
	RedirectURI string   `json:"redirect_uri"`
	State       string   `json:"state"`
	Challenge   string   `json:"code_challenge"`
	Resource    string   `json:"resource"`
	Scopes      []string `json:"scopes"`
	DPoPJKT     string   `json:"dpop_jkt,omitempty"`
	// ClientKind is the client's kind (static, dcr, cimd): the pages mark
	// names nobody vouches for.
	ClientKind string `json:"client_kind,omitempty"`
	// Browser is the hash of the binding cookie of the browser that
	// started the flow (see browser.go).
	Browser string `json:"browser,omitempty"`
}

// grant is an issued authorization code.
type grant struct {
	flow
	User     string    `json:"user"`
	AuthTime time.Time `json:"auth_time"`
}

const sessionCookie = "mcpgate_as_session"

// authorize validates the request, then signs the user in and asks for
// consent when needed. Errors about the client or its redirect URI are
// shown, never redirected; everything else goes back to the client.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		errorPage(w, http.StatusMethodNotAllowed, "Not allowed", "Use GET or POST for the authorization endpoint.")
		return
	}
	if err := r.ParseForm(); err != nil {
		errorPage(w, http.StatusBadRequest, "Bad request", "The authorization request could not be read.")
		return
	}
	if !s.admitStore(w, r, "authorize") {
		return
	}
	p := r.Form
	if ru := p.Get("request_uri"); ru != "" {
		raw, _ := s.cfg.Store.Take("par", ru)
		if raw == nil {
			errorPage(w, http.StatusBadRequest, "Expired request", "The pushed authorization request is unknown, used or expired; start again from the application.")
			return
		}
		var pushed url.Values
		_ = json.Unmarshal(raw, &pushed)
		if pushed.Get("client_id") != p.Get("client_id") {
			errorPage(w, http.StatusBadRequest, "Bad request", "The pushed request belongs to another client.")
			return
		}
		p = pushed
	} else if s.cfg.RequirePAR {
		errorPage(w, http.StatusBadRequest, "Bad request", "This server requires pushed authorization requests (RFC 9126).")
		return
	}
	f, errPage, redirectErr := s.validate(r, p)
	if errPage != "" {
		errorPage(w, http.StatusBadRequest, "Bad request", errPage)
		return
	}
	if redirectErr != nil {
		s.redirectError(w, r, p.Get("redirect_uri"), p.Get("state"), redirectErr[0], redirectErr[1])
		return
	}
	browser := s.browser(w, r)
	f.Browser = hashToken(browser)
	id := randomID(24)
	if !s.storeFlow(w, id, f) {
		return
	}
	s.next(w, r, id, f, browser)
}

// validate checks an authorization request. errPage is a problem that must
// not be redirected (client, redirect URI); redirectErr an OAuth error for
// the client.
func (s *Server) validate(r *http.Request, p url.Values) (*flow, string, []string) {
	if len(p.Get("state")) > maxStateBytes {
		return nil, "The request's state is longer than " + strconv.Itoa(maxStateBytes) + " bytes.", nil
	}
	c, err := s.lookup(r.Context(), p.Get("client_id"))
	if err != nil || c == nil {
		msg := "Unknown application (client_id)."
		if err != nil {
			msg = err.Error()
		}
		return nil, msg, nil
	}
	ru := p.Get("redirect_uri")
	if ru == "" || !c.redirectAllowed(ru) {
		return nil, "The application's redirect URI is missing or not registered.", nil
	}
	if !c.allows("authorization_code") {
		return nil, "", []string{"unauthorized_client", "this client may not use the authorization code grant"}
	}
	if p.Get("response_type") != "code" {
		return nil, "", []string{"unsupported_response_type", "only response_type=code is supported"}
	}
	if msg := paramTooLong(p); msg != "" {
		return nil, "", []string{"invalid_request", msg}
	}
	if p.Get("code_challenge") == "" || p.Get("code_challenge_method") != "S256" {
		return nil, "", []string{"invalid_request", "PKCE with code_challenge_method=S256 is required"}
	}
	res, oerr := s.resource(p.Get("resource"))
	if oerr != "" {
		return nil, "", []string{"invalid_target", oerr}
	}
	scopes, serr := s.scopes(c, res, strings.Fields(p.Get("scope")))
	if serr != "" {
		return nil, "", []string{"invalid_scope", serr}
	}
	name := c.Name
	if name == "" {
		name = c.ID
	}
	return &flow{ClientID: c.ID, ClientName: name, RedirectURI: ru, State: p.Get("state"), Challenge: p.Get("code_challenge"),
		Resource: res.ID, Scopes: scopes, DPoPJKT: p.Get("dpop_jkt"), ClientKind: c.Kind}, "", nil
}

// resource resolves the RFC 8707 resource (the only one when omitted).
func (s *Server) resource(id string) (*Resource, string) {
	if id == "" {
		if len(s.cfg.Resources) == 1 {
			return &s.cfg.Resources[0], ""
		}
		return nil, "name the MCP server with the resource parameter"
	}
	for i, r := range s.cfg.Resources {
		if r.ID == id || strings.TrimSuffix(r.ID, "/") == strings.TrimSuffix(id, "/") {
			return &s.cfg.Resources[i], ""
		}
	}
	return nil, "unknown resource " + strconv.Quote(id)
}

// scopes checks requested scopes against the resource (and the client's
// own limits); none requested means the configured DefaultScopes that are
// available (default none), never all of the resource's.
func (s *Server) scopes(c *client, r *Resource, want []string) ([]string, string) {
	allowed := r.Scopes
	if len(c.Scopes) > 0 {
		allowed = slices.DeleteFunc(slices.Clone(allowed), func(x string) bool { return !slices.Contains(c.Scopes, x) })
	}
	if len(want) == 0 {
		return slices.DeleteFunc(slices.Clone(allowed), func(x string) bool { return !slices.Contains(s.cfg.DefaultScopes, x) }), ""
	}
	var out []string
	for _, w := range want {
		if w == "offline_access" || w == "openid" {
			continue // refresh tokens follow the client's grant types
		}
		if !slices.Contains(allowed, w) {
			return nil, "scope " + strconv.Quote(w) + " is not available for this client and server"
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out, ""
}

func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state, code, desc string) {
	u, _ := url.Parse(redirectURI)
	q := u.Query()
	q.Set("error", code)
	q.Set("error_description", desc)
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.cfg.Issuer)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// The session cookie names the signed-in user, and its MAC covers the
// browser binding cookie (browser.go): a session cookie carried to or
// planted in another browser (cookie tossing from a sibling host, or from
// another port on loopback, where browsers do not separate cookies by
// port) does not match that browser's binding and is ignored, so nobody
// is signed in as someone else without their own form. On https it also
// carries the __Host- prefix, which only this exact host can set.
func (s *Server) sessionCookieName() string {
	if s.cfg.SecureCookies {
		return "__Host-" + sessionCookie
	}
	return sessionCookie
}

// session reads the signed session cookie, valid only together with the
// binding cookie it was issued with.
func (s *Server) session(r *http.Request) string {
	browser := s.browserID(r)
	if browser == "" {
		return ""
	}
	c, err := r.Cookie(s.sessionCookieName())
	if err != nil {
		return ""
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return ""
	}
	user, expS, sig := parts[0], parts[1], parts[2]
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil || time.Unix(exp, 0).Before(s.now()) || subtle.ConstantTimeCompare([]byte(sig), []byte(s.mac("session", user, expS, hashToken(browser)))) != 1 {
		return ""
	}
	u, err := url.PathUnescape(user)
	if err != nil {
		return ""
	}
	return u
}

// setSession signs user in for the browser whose binding cookie is
// browser.
func (s *Server) setSession(w http.ResponseWriter, user, browser string) {
	exp := strconv.FormatInt(s.now().Add(8*time.Hour).Unix(), 10)
	u := url.PathEscape(user)
	http.SetCookie(w, &http.Cookie{Name: s.sessionCookieName(), Value: u + "." + exp + "." + s.mac("session", u, exp, hashToken(browser)), Path: "/",
		HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteLaxMode, MaxAge: 8 * 3600})
}

// next continues a flow: sign-in, consent, or the code.
func (s *Server) next(w http.ResponseWriter, r *http.Request, id string, f *flow, browser string) {
	user := s.session(r)
	if user == "" {
		if s.cfg.Federation != nil {
			s.federate(w, r, id, browser)
			return
		}
		s.loginPage(w, http.StatusOK, id, f, browser, "")
		return
	}
	if s.consented(user, f) {
		s.issueCode(w, r, id, f, user)
		return
	}
	s.consentPage(w, id, f, user, browser)
}

// The login form's CSRF value binds the flow to the browser that
// started it (the binding cookie), the consent form's also to the user.
func (s *Server) loginCSRF(id, browser string) string {
	return s.mac("login", id, browser)
}

func (s *Server) consentCSRF(id, user, browser string) string {
	return s.mac("consent", id, user, browser)
}

// clientPage fills what the login and consent pages say about the client:
// its name, where the browser is sent afterwards, and whether anyone
// vouches for the name.
func clientPage(d pageData, f *flow) pageData {
	d.ClientName, d.RedirectHost = f.ClientName, displayHost(f.RedirectURI)
	switch f.ClientKind {
	case "dcr", "":
		d.Unverified = "registered by anyone; its name is whatever the registrant chose. Continue only if you started this yourself and expect to be sent to the address below."
	case "cimd":
		d.Unverified = "its name comes from the metadata document at " + displayHost(f.ClientID) + ", not from this server's operator."
	}
	return d
}

func (s *Server) loginPage(w http.ResponseWriter, status int, id string, f *flow, browser, msg string) {
	render(w, status, "login", clientPage(pageData{Title: "Sign in", Action: "/login", Flow: id, CSRF: s.loginCSRF(id, browser), Error: msg}, f))
}

func (s *Server) consentPage(w http.ResponseWriter, id string, f *flow, user, browser string) {
	d := clientPage(pageData{Title: "Allow access", Action: "/consent", Flow: id, CSRF: s.consentCSRF(id, user, browser),
		ClientID: f.ClientID, User: user, Resource: f.Resource, Scopes: f.Scopes}, f)
	render(w, http.StatusOK, "consent", d)
}

// consented: the user approved this client for these scopes before.
func (s *Server) consented(user string, f *flow) bool {
	raw, _ := s.cfg.Store.Get("consents", user+"\x00"+f.ClientID+"\x00"+f.Resource)
	var approved []string
	if raw == nil || json.Unmarshal(raw, &approved) != nil {
		return false
	}
	for _, sc := range f.Scopes {
		if !slices.Contains(approved, sc) {
			return false
		}
	}
	return true
}

func (s *Server) loadFlow(id string) *flow {
	raw, _ := s.cfg.Store.Get("flows", id)
	if raw == nil {
		return nil
	}
	var f flow
	if json.Unmarshal(raw, &f) != nil {
		return nil
	}
	return &f
}

// Sign-in form limits: longer values are wrong without being hashed.
const (
	maxLoginForm     = 16 << 10
	maxLoginName     = 256
	maxLoginPassword = 1024
)

// login checks the user's password. In this order: the form (bounded
// size), the flow, the browser binding and CSRF value, the throttle (a try
// that comes too early is answered 429 before anything is hashed), then
// the password in a bounded hashing slot (503 when none is free in time).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
	if err := r.ParseForm(); err != nil {
		errorPage(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	id := r.PostForm.Get("flow")
	f := s.loadFlow(id)
	if f == nil {
		errorPage(w, http.StatusBadRequest, "Expired", "This sign-in took too long or was already used; start again from the application.")
		return
	}
	if !s.sameBrowser(r, f.Browser) || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.loginCSRF(id, s.browserID(r)))) != 1 {
		errorPage(w, http.StatusForbidden, "Refused", "This sign-in form was not opened in this browser, or cookies are blocked (CSRF protection). Start again from the application in this browser.")
		return
	}
	user, password := r.PostForm.Get("login"), r.PostForm.Get("password")
	if len(user) > maxLoginName {
		// no such user can exist: answered as a wrong password, before
		// any record or hash, and logged at most once a minute
		if ok, held := s.throttle.logs.allow("long-name", s.now()); ok {
			s.cfg.Log.Warn("failed sign-in: user name too long", "user", logName(user), "bytes", len(user), "not_logged_before", held)
		}
		s.loginPage(w, http.StatusUnauthorized, id, f, s.browserID(r), "Wrong user name or password.")
		return
	}
	keys := s.signInKeys(user, s.clientAddr(r), s.device(r, user))
	v := s.throttle.admit(s.now(), keys)
	if v.Alert {
		s.cfg.Log.Warn("many failed sign-ins for one user name from several addresses (distributed guessing?)", "user", logName(user), "failures", v.AlertFailures)
	}
	if wait := v.Wait; wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		if v.Log {
			s.cfg.Log.Warn("sign-in throttled", "user", logName(user), "retry_after_s", secs, "not_logged_before", v.Suppressed)
		} else if v.Overflow {
			if ok, held := s.throttle.logs.allow("overflow", s.now()); ok {
				s.cfg.Log.Warn("sign-in throttled: the throttle table is full of records backing off; new ones share one slow bucket", "not_logged_before", held)
			}
		}
		s.loginPage(w, http.StatusTooManyRequests, id, f, s.browserID(r), "Too many failed sign-ins. Wait "+strconv.Itoa(secs)+" seconds, then try again.")
		return
	}
	ok := false
	if len(password) <= maxLoginPassword {
		if err := s.hashes.run(r.Context(), func() { ok = s.cfg.Users.Check(user, password) }); err != nil {
			s.throttle.refund(keys)
			w.Header().Set("Retry-After", "5")
			if ok, held := s.throttle.logs.allow("busy", s.now()); ok {
				s.cfg.Log.Warn("sign-in refused: password checking busy", "user", logName(user), "not_logged_before", held)
			}
			s.loginPage(w, http.StatusServiceUnavailable, id, f, s.browserID(r), "The server is busy checking other sign-ins. Wait a few seconds, then try again.")
			return
		}
	}
	if !ok {
		s.cfg.Log.Warn("failed sign-in", "user", logName(user))
		s.loginPage(w, http.StatusUnauthorized, id, f, s.browserID(r), "Wrong user name or password.")
		return
	}
	// success: this pair's and this name's failures are forgotten; the
	// address's count loses the attempt just counted
	s.throttle.clear(keys[0].key)
	if len(keys) == 3 {
		s.throttle.refund(keys[1:2])
		s.throttle.clear(keys[2].key)
	}
	s.setDevice(w, user)
	s.setSession(w, user, s.browserID(r))
	if s.consented(user, f) {
		s.issueCode(w, r, id, f, user)
		return
	}
	s.consentPage(w, id, f, user, s.browserID(r))
}

// consent records the user's decision (CSRF-protected, bound to the
// signed-in user).
func (s *Server) consent(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		errorPage(w, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	id := r.PostForm.Get("flow")
	f := s.loadFlow(id)
	user := s.session(r)
	if f == nil || user == "" {
		errorPage(w, http.StatusBadRequest, "Expired", "This request expired or you are signed out; start again from the application.")
		return
	}
	if !s.sameBrowser(r, f.Browser) || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.consentCSRF(id, user, s.browserID(r)))) != 1 {
		errorPage(w, http.StatusForbidden, "Refused", "The form did not come from this server (CSRF protection).")
		return
	}
	if r.PostForm.Get("deny") != "" {
		_ = s.cfg.Store.Delete("flows", id)
		s.redirectError(w, r, f.RedirectURI, f.State, "access_denied", "the user denied the request")
		return
	}
	key := user + "\x00" + f.ClientID + "\x00" + f.Resource
	var approved []string
	if raw, _ := s.cfg.Store.Get("consents", key); raw != nil {
		_ = json.Unmarshal(raw, &approved)
	}
	for _, sc := range f.Scopes {
		if !slices.Contains(approved, sc) {
			approved = append(approved, sc)
		}
	}
	raw, _ := json.Marshal(approved)
	_ = s.cfg.Store.Put("consents", key, raw, 0)
	s.issueCode(w, r, id, f, user)
}

// issueCode ends the flow with a single-use code (60 s) and redirects with
// code, state and iss (RFC 9207).
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, id string, f *flow, user string) {
	_ = s.cfg.Store.Delete("flows", id)
	code := randomID(32)
	raw, _ := json.Marshal(grant{flow: *f, User: user, AuthTime: s.now()})
	if err := s.cfg.Store.Put("codes", hashToken(code), raw, 60*time.Second); err != nil {
		errorPage(w, http.StatusInternalServerError, "Server error", "The authorization could not be stored.")
		return
	}
	u, _ := url.Parse(f.RedirectURI)
	q := u.Query()
	q.Set("code", code)
	if f.State != "" {
		q.Set("state", f.State)
	}
	q.Set("iss", s.cfg.Issuer)
	u.RawQuery = q.Encode()
	s.cfg.Log.Info("authorization code issued", "user", user, "client_id", f.ClientID, "resource", f.Resource)
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// par stores a pushed authorization request (RFC 9126) after checking it
// as /authorize would.
func (s *Server) par(w http.ResponseWriter, r *http.Request) {
	if !s.admitStore(w, r, "par") {
		return
	}
	c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	if r.PostForm.Get("request_uri") != "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "request_uri may not be pushed")
		return
	}
	p := r.PostForm
	p.Set("client_id", c.ID)
	p.Del("client_secret")
	proofJKT, ok := s.requestProof(w, r, c, "/par", p.Get("dpop_jkt") != "")
	if !ok {
		return
	}
	if proofJKT != "" {
		if jkt := p.Get("dpop_jkt"); jkt != "" && jkt != proofJKT {
			oauthError(w, http.StatusBadRequest, "invalid_request", "dpop_jkt does not match the DPoP proof")
			return
		}
		p.Set("dpop_jkt", proofJKT)
	}
	if _, errPage, rerr := s.validate(r, p); errPage != "" || rerr != nil {
		code, desc := "invalid_request", errPage
		if rerr != nil {
			code, desc = rerr[0], rerr[1]
		}
		oauthError(w, http.StatusBadRequest, code, desc)
		return
	}
	uri := "urn:ietf:params:oauth:request_uri:" + randomID(24)
	if !s.storePushed(w, uri, p) {
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"request_uri": uri, "expires_in": 90})
}
