package authserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Federation sends the user's sign-in to an upstream OpenID Connect
// provider (Keycloak, Okta, Entra, Google, …). The upstream's tokens stay
// here: MCP clients only ever get the built-in server's own tokens.
type Federation struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// Scopes default to openid email profile.
	Scopes []string
	// SubjectClaim names the ID token claim used as the user name
	// (default sub; email or preferred_username are common).
	SubjectClaim string
	HTTP         *http.Client
	// GitHub selects GitHub's OAuth (no OpenID Connect): the user name is
	// the account's login from the user API. GitHubURL and GitHubAPIURL
	// default to github.com and api.github.com (set them for GitHub
	// Enterprise).
	GitHub                  bool
	GitHubURL, GitHubAPIURL string
	// Tokens, when set, keeps each user's provider tokens (fedtokens.go).
	Tokens *FederatedTokens

	mu   sync.Mutex // guards meta, jwks and at (the cached discovery answer)
	meta *oidcMeta
	jwks *jose.JSONWebKeySet
	at   time.Time
}

type oidcMeta struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
}

func (f *Federation) client() *http.Client {
	if f.HTTP != nil {
		return f.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

func (f *Federation) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered HTTP %d", u, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// discover reads the provider's metadata and keys (cached for an hour;
// refreshed earlier when an unknown key id shows up).
func (f *Federation) discover(ctx context.Context, force bool) (*oidcMeta, *jose.JSONWebKeySet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.meta != nil && !force && time.Since(f.at) < time.Hour {
		return f.meta, f.jwks, nil
	}
	var m oidcMeta
	if err := f.getJSON(ctx, strings.TrimSuffix(f.Issuer, "/")+"/.well-known/openid-configuration", &m); err != nil {
		return nil, nil, fmt.Errorf("upstream identity provider metadata: %w", err)
	}
	if m.Issuer != f.Issuer {
		return nil, nil, fmt.Errorf("upstream identity provider metadata names issuer %q, not %q", m.Issuer, f.Issuer)
	}
	var set jose.JSONWebKeySet
	if err := f.getJSON(ctx, m.JWKSURI, &set); err != nil {
		return nil, nil, fmt.Errorf("upstream identity provider keys: %w", err)
	}
	f.meta, f.jwks, f.at = &m, &set, time.Now()
	return f.meta, f.jwks, nil
}

// fedState is kept between the redirect to the provider and its callback.
type fedState struct {
	Flow     string `json:"flow"`
	Verifier string `json:"verifier"`
	Nonce    string `json:"nonce"`
	// Browser is the hash of the binding cookie of the browser that was
	// sent to the provider: the callback must come back to it.
	Browser string `json:"browser"`
}

func (f *Federation) githubURLs() (authorize, token, user string) {
	base, api := strings.TrimSuffix(f.GitHubURL, "/"), strings.TrimSuffix(f.GitHubAPIURL, "/")
	if base == "" {
		base = "https://github.com"
	}
	if api == "" {
		api = "https://api.github.com"
	}
	return base + "/login/oauth/authorize", base + "/login/oauth/access_token", api + "/user"
}

// federate redirects the browser to the upstream provider.
func (s *Server) federate(w http.ResponseWriter, r *http.Request, flowID, browser string) {
	f := s.cfg.Federation
	meta, _, err := f.metaFor(r.Context())
	if err != nil {
		s.cfg.Log.Error("federation", "err", err)
		errorPage(w, http.StatusBadGateway, "Sign-in unavailable", "The company identity provider cannot be reached right now. Try again in a moment.")
		return
	}
	st := fedState{Flow: flowID, Verifier: randomID(32), Nonce: randomID(16), Browser: hashToken(browser)}
	state := randomID(24)
	raw, _ := json.Marshal(st)
	if err := s.cfg.Store.Put("federation", state, raw, 10*time.Minute); err != nil {
		errorPage(w, http.StatusInternalServerError, "Server error", "The sign-in could not be started.")
		return
	}
	h := sha256.Sum256([]byte(st.Verifier))
	scopes := f.Scopes
	if len(scopes) == 0 {
		scopes = []string{"openid", "email", "profile"}
		if f.GitHub {
			scopes = []string{"read:user"}
			if f.SubjectClaim == "email" {
				scopes = append(scopes, "user:email")
			}
		}
	}
	q := url.Values{"response_type": {"code"}, "client_id": {f.ClientID}, "redirect_uri": {s.url("/federation/callback")},
		"scope": {strings.Join(scopes, " ")}, "state": {state}, "nonce": {st.Nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(h[:])}, "code_challenge_method": {"S256"}}
	u, err := url.Parse(meta.AuthorizationEndpoint)
	if err != nil {
		errorPage(w, http.StatusBadGateway, "Sign-in unavailable", "The identity provider's metadata is invalid.")
		return
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// federationCallback finishes the upstream sign-in: code exchange, ID
// token verification (signature, issuer, audience, expiry, nonce), then
// the flow continues with the user from the chosen claim.
func (s *Server) federationCallback(w http.ResponseWriter, r *http.Request) {
	f := s.cfg.Federation
	if f == nil {
		errorPage(w, http.StatusNotFound, "Not found", "No identity provider is configured.")
		return
	}
	q := r.URL.Query()
	raw, _ := s.cfg.Store.Take("federation", q.Get("state"))
	var st fedState
	if raw == nil || json.Unmarshal(raw, &st) != nil {
		errorPage(w, http.StatusBadRequest, "Expired", "This sign-in is unknown or expired; start again from the application.")
		return
	}
	fl := s.loadFlow(st.Flow)
	if fl == nil {
		errorPage(w, http.StatusBadRequest, "Expired", "This sign-in took too long; start again from the application.")
		return
	}
	if !s.sameBrowser(r, st.Browser) || !s.sameBrowser(r, fl.Browser) {
		// someone else's provider answer (code and state) carried to this
		// browser would sign it in as them
		errorPage(w, http.StatusForbidden, "Refused", "This sign-in was not started in this browser, or cookies are blocked. Start again from the application in this browser.")
		return
	}
	if e := q.Get("error"); e != "" {
		s.redirectError(w, r, fl.RedirectURI, fl.State, "access_denied", "the identity provider refused the sign-in: "+e)
		return
	}
	user, err := s.exchange(r.Context(), q.Get("code"), st)
	var unverified errUnverifiedEmail
	if errors.As(err, &unverified) {
		s.cfg.Log.Warn("federated sign-in refused", "err", err)
		errorPage(w, http.StatusForbidden, "Email address not verified", "Your account at the identity provider has no verified email address, and this server names users by their email. Verify the address at the identity provider, then start again.")
		return
	}
	if err != nil {
		s.cfg.Log.Warn("federated sign-in failed", "err", err)
		errorPage(w, http.StatusBadGateway, "Sign-in failed", "The identity provider's answer could not be verified.")
		return
	}
	s.setSession(w, user, s.browserID(r))
	if s.consented(user, fl) {
		s.issueCode(w, r, st.Flow, fl, user)
		return
	}
	s.consentPage(w, st.Flow, fl, user, s.browserID(r))
}

// metaFor returns the endpoints to use (GitHub's fixed ones, or the
// discovered OpenID ones).
func (f *Federation) metaFor(ctx context.Context) (*oidcMeta, *jose.JSONWebKeySet, error) {
	if f.GitHub {
		a, t, _ := f.githubURLs()
		return &oidcMeta{AuthorizationEndpoint: a, TokenEndpoint: t}, nil, nil
	}
	return f.discover(ctx, false)
}

// githubUser exchanges the code and reads the account's login.
func (s *Server) githubUser(ctx context.Context, code string, st fedState) (user string, err error) {
	f := s.cfg.Federation
	_, tokenURL, userURL := f.githubURLs()
	form := url.Values{"client_id": {f.ClientID}, "client_secret": {f.ClientSecret}, "code": {code},
		"redirect_uri": {s.url("/federation/callback")}, "code_verifier": {st.Verifier}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := f.client().Do(req)
	if err != nil {
		return "", err
	}
	var tr struct {
		fedTokenResponse
		Error string `json:"error"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr)
	resp.Body.Close()
	if err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("GitHub token exchange: HTTP %d %s", resp.StatusCode, tr.Error)
	}
	defer func() {
		if err == nil {
			s.keepFederated(user, tr.fedTokenResponse, "")
		}
	}()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, userURL, nil)
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	req.Header.Set("Accept", "application/vnd.github+json")
	resp, err = f.client().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var u map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&u); err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("GitHub user API: HTTP %d", resp.StatusCode)
	}
	claim := f.SubjectClaim
	if claim == "" {
		claim = "login"
	}
	if claim == "email" {
		// the profile's email is whatever the user typed as public email;
		// only the account's verified primary address names the user
		return s.githubEmail(ctx, userURL+"/emails", tr.AccessToken)
	}
	switch v := u[claim].(type) {
	case string:
		if v != "" {
			return v, nil
		}
	case float64:
		return fmt.Sprintf("%.0f", v), nil
	}
	return "", fmt.Errorf("the GitHub user has no %s", claim)
}

func (s *Server) exchange(ctx context.Context, code string, st fedState) (string, error) {
	f := s.cfg.Federation
	if f.GitHub {
		return s.githubUser(ctx, code, st)
	}
	meta, keys, err := f.discover(ctx, false)
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {s.url("/federation/callback")}, "code_verifier": {st.Verifier}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, meta.TokenEndpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(f.ClientID), url.QueryEscape(f.ClientSecret))
	resp, err := f.client().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tr struct {
		fedTokenResponse
		IDToken string `json:"id_token"`
		Error   string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil || resp.StatusCode != 200 || tr.IDToken == "" {
		return "", fmt.Errorf("token endpoint: HTTP %d %s", resp.StatusCode, tr.Error)
	}
	tok, err := jwt.ParseSigned(tr.IDToken, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		return "", fmt.Errorf("the ID token is not a signed JWT: %v", err)
	}
	ks := keys.Key(tok.Headers[0].KeyID)
	if len(ks) == 0 {
		if _, keys, err = f.discover(ctx, true); err != nil {
			return "", err
		}
		if ks = keys.Key(tok.Headers[0].KeyID); len(ks) == 0 {
			return "", errors.New("the ID token's key is not in the provider's key set")
		}
	}
	var std jwt.Claims
	all := map[string]any{}
	if err := tok.Claims(ks[0].Key, &std, &all); err != nil {
		return "", fmt.Errorf("ID token signature: %v", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: f.Issuer, AnyAudience: jwt.Audience{f.ClientID}, Time: s.now()}, 30*time.Second); err != nil {
		return "", fmt.Errorf("ID token: %v", err)
	}
	if n, _ := all["nonce"].(string); subtle.ConstantTimeCompare([]byte(n), []byte(st.Nonce)) != 1 {
		return "", errors.New("ID token nonce mismatch")
	}
	claim := f.SubjectClaim
	if claim == "" {
		claim = "sub"
	}
	if claim == "email" && !emailVerified(all["email_verified"]) {
		return "", errUnverifiedEmail{claim: fmt.Sprint(all["email_verified"])}
	}
	user, _ := all[claim].(string)
	if user == "" || slices.Contains([]string{"", " "}, user) {
		return "", fmt.Errorf("the ID token has no %s claim", claim)
	}
	s.keepFederated(user, tr.fedTokenResponse, tr.IDToken)
	return user, nil
}

// errUnverifiedEmail: the user would be named by an email address the
// provider does not say it verified.
type errUnverifiedEmail struct{ claim string }

func (e errUnverifiedEmail) Error() string {
	return "the identity provider does not assert email_verified (got " + e.claim + "); refusing to name the user by email"
}

// emailVerified reads OpenID Connect's email_verified claim: the boolean
// true, or the string "true" that some providers (older Cognito and ADFS
// setups) send — the claim is in the provider's signed ID token, so the
// spelling is the provider's, not the user's. Anything else, absence
// included, is not verified.
func emailVerified(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true"
	}
	return false
}

// githubEmail is the account's verified primary email address (GitHub's
// /user/emails, scope user:email).
func (s *Server) githubEmail(ctx context.Context, u, token string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	resp, err := s.cfg.Federation.client().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&emails); err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("GitHub emails API: HTTP %d (the app needs the user:email scope)", resp.StatusCode)
	}
	for _, e := range emails {
		if e.Primary && e.Verified && e.Email != "" {
			return e.Email, nil
		}
	}
	return "", errUnverifiedEmail{claim: "no verified primary address"}
}
