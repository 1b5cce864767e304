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

	mu   sync.Mutex
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
func (s *Server) federate(w http.ResponseWriter, r *http.Request, flowID string) {
	f := s.cfg.Federation
	meta, _, err := f.metaFor(r.Context())
	if err != nil {
		s.cfg.Log.Error("federation", "err", err)
		errorPage(w, http.StatusBadGateway, "Sign-in unavailable", "The company identity provider cannot be reached right now. Try again in a moment.")
		return
	}
	st := fedState{Flow: flowID, Verifier: randomID(32), Nonce: randomID(16)}
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
	if e := q.Get("error"); e != "" {
		s.redirectError(w, r, fl.RedirectURI, fl.State, "access_denied", "the identity provider refused the sign-in: "+e)
		return
	}
	user, err := s.exchange(r.Context(), q.Get("code"), st)
	if err != nil {
		s.cfg.Log.Warn("federated sign-in failed", "err", err)
		errorPage(w, http.StatusBadGateway, "Sign-in failed", "The identity provider's answer could not be verified.")
		return
	}
	s.setSession(w, user)
	if s.consented(user, fl) {
		s.issueCode(w, r, st.Flow, fl, user)
		return
	}
	s.consentPage(w, st.Flow, fl, user)
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
func (s *Server) githubUser(ctx context.Context, code string, st fedState) (string, error) {
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
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr)
	resp.Body.Close()
	if err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("GitHub token exchange: HTTP %d %s", resp.StatusCode, tr.Error)
	}
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
	user, _ := all[claim].(string)
	if user == "" || slices.Contains([]string{"", " "}, user) {
		return "", fmt.Errorf("the ID token has no %s claim", claim)
	}
	return user, nil
}
