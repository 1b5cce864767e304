package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpgate/mcpgate/internal/dpop"
	"github.com/mcpgate/mcpgate/internal/origin"
)

// Apply adds the credential to an MCP request: Authorization (Bearer or
// DPoP) and, for DPoP, a fresh RFC 9449 proof with ath and the resource
// server's nonce (and content_digest over body only when
// Config.DPoPContentDigest asks for it). Without a credential it does
// nothing.
//
// The credential is for the MCP server's origin only: a request to any
// other origin (a cross-origin HTTP+SSE endpoint, a caller's mistake) is
// refused before a token is read.
func (s *Credential) Apply(ctx context.Context, req *http.Request, body []byte) error {
	if want := origin.OfString(s.cfg.ServerURL); s.cfg.ServerURL != "" && (want == "" || want != origin.Of(req.URL)) {
		return fmt.Errorf("%w: refusing to send the credential for %s to %s", origin.ErrOther, want, origin.Of(req.URL))
	}
	t, err := s.Token(ctx)
	if err != nil {
		if errors.Is(err, ErrLoginRequired) || IsTransient(err) {
			// send unauthenticated: the 401 drives what happens next
			return nil
		}
		return err
	}
	if t == nil {
		return nil
	}
	if !t.DPoP() {
		req.Header.Set("Authorization", "Bearer "+t.AccessToken)
		return nil
	}
	s.mu.Lock()
	key, nonce := s.dpopKey, s.rsNonce
	s.mu.Unlock()
	if key == nil {
		return errors.New("the stored token is DPoP-bound but its key is missing; run mcpgate login again")
	}
	proof, err := key.Proof(req.Method, req.URL.String(), dpop.ProofOptions{AccessToken: t.AccessToken, Nonce: nonce, Body: body, ContentDigest: s.cfg.DPoPContentDigest && len(body) > 0})
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "DPoP "+t.AccessToken)
	req.Header.Set("DPoP", proof)
	return nil
}

// Handle reacts to a 401 or 403 from the MCP server for a request of the
// given operation (JSON-RPC method): DPoP nonce, refresh, login or
// step-up. retry says whether the request should be sent again.
func (s *Credential) Handle(ctx context.Context, resp *http.Response, op string) (retry bool, err error) {
	cs, _ := ParseChallenges(resp.Header.Values("WWW-Authenticate"))
	ch, ok := Find(cs, "DPoP")
	if !ok {
		ch, _ = Find(cs, "Bearer")
	}
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		s.mu.Lock()
		changed := s.rsNonce != n
		s.rsNonce = n
		s.mu.Unlock()
		if ch.Param("error") == "use_dpop_nonce" && changed {
			return true, nil
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		s.mu.Lock()
		rec := s.rec
		s.mu.Unlock()
		sent := sentToken(resp)
		if rec != nil && sent != "" && (rec.Token.RefreshToken != "" || rec.Grant == grantClientCredentials) {
			err := s.refresh(ctx, sent)
			if err == nil {
				return true, nil
			}
			if !errors.Is(err, ErrLoginRequired) && IsTransient(err) {
				return false, err
			}
		} else if rec != nil && sent == "" && !rec.Token.Expired(s.e.Now(), 0) {
			return true, nil // a token exists now (another request logged in)
		}
		return s.login(ctx, ch, op, nil, sent)
	case http.StatusForbidden:
		if ch.Param("error") != "insufficient_scope" {
			return false, nil
		}
		s.mu.Lock()
		union := slices.Clone(s.scopes)
		if s.rec != nil {
			union = append(union, s.rec.Token.Scopes...)
		}
		s.mu.Unlock()
		for _, sc := range ch.Scopes() {
			if !slices.Contains(union, sc) {
				union = append(union, sc)
			}
		}
		return s.login(ctx, ch, op, dedupe(union), sentToken(resp))
	}
	return false, nil
}

// sentToken is the access token a request carried.
func sentToken(resp *http.Response) string {
	if resp.Request == nil {
		return ""
	}
	a := resp.Request.Header.Get("Authorization")
	if _, tok, ok := strings.Cut(a, " "); ok {
		return strings.TrimSpace(tok)
	}
	return ""
}

func dedupe(in []string) []string {
	var out []string
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
