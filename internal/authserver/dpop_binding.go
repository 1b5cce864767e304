package authserver

import (
	"errors"
	"net/http"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// The token endpoint's DPoP jti store: at most tokenReplayEntries live
// entries, at most TokenReplayPerClient of them charged to one client (in
// memory and in a shared store).
const (
	tokenReplayEntries   = 100000
	TokenReplayPerClient = 1000
)

// requestProof checks the DPoP proof of a token or PAR request to the
// endpoint at path and returns its key thumbprint ("" when the request
// carries none and may go without). On failure it has answered:
//
//   - more than one DPoP header: invalid_dpop_proof;
//   - no proof from a client registered with dpop_bound_access_tokens:
//     invalid_dpop_proof. RFC 9449 §5.2 and the MCP DPoP profile: "When
//     this field is set to true, the authorization server MUST reject
//     token requests from the client that do not include a valid DPoP
//     proof." At PAR, a bound client may name its key with dpop_jkt
//     instead (jktGiven), as RFC 9449 §10.1 allows;
//   - a proof that does not verify: invalid_dpop_proof, or use_dpop_nonce
//     with a DPoP-Nonce header when nonces are on and it has no fresh one
//     (RFC 9449 §8).
//
// An accepted proof whose nonce is past half its life gets a fresh nonce
// in DPoP-Nonce with the answer (RFC 9449 §8.2).
func (s *Server) requestProof(w http.ResponseWriter, r *http.Request, c *client, path string, jktGiven bool) (string, bool) {
	vals := r.Header.Values("DPoP")
	if len(vals) > 1 {
		oauthError(w, http.StatusBadRequest, dpop.CodeInvalidProof, "send exactly one DPoP header")
		return "", false
	}
	if len(vals) == 0 || vals[0] == "" {
		if c.DPoPBound && !jktGiven {
			if n := s.dpop.Nonce(); n != "" {
				w.Header().Set("DPoP-Nonce", n)
			}
			oauthError(w, http.StatusBadRequest, dpop.CodeInvalidProof,
				"this client is registered with dpop_bound_access_tokens: every token request needs a valid DPoP proof (RFC 9449 §5.2)")
			return "", false
		}
		return "", true
	}
	p, err := s.dpop.Check(vals[0], dpopParams(s.url(path)))
	if err == nil {
		// The jti is charged to the client (identified, and authenticated
		// when confidential, by clientRequest), so that one client sending
		// many proofs fills only its own share (TokenReplayPerClient).
		err = s.dpop.Record(r.Context(), c.ID, p)
		if errors.Is(err, dpop.ErrReplayUnavailable) {
			// A shared store (Redis) that cannot answer: refused, never
			// accepted unchecked (docs/security.md "Shared state").
			w.Header().Set("Retry-After", "5")
			oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "shared state (Redis) unavailable: the DPoP proof could not be checked for replay; retry after 5s")
			return "", false
		}
		if errors.Is(err, dpop.ErrReplayShareFull) || errors.Is(err, dpop.ErrReplayFull) {
			status := http.StatusTooManyRequests
			if errors.Is(err, dpop.ErrReplayFull) {
				status = http.StatusServiceUnavailable
			}
			w.Header().Set("Retry-After", "30")
			oauthError(w, status, dpop.CodeInvalidProof, "too many DPoP proofs are still within their replay window: retry after 30s")
			return "", false
		}
	}
	if err != nil {
		var de *dpop.Error
		if !errors.As(err, &de) {
			oauthError(w, http.StatusBadRequest, dpop.CodeInvalidProof, "the DPoP proof was refused")
			return "", false
		}
		if de.Nonce != "" {
			w.Header().Set("DPoP-Nonce", de.Nonce)
		}
		oauthError(w, http.StatusBadRequest, de.Code, de.Description)
		return "", false
	}
	if n := s.dpop.NextNonce(p); n != "" {
		w.Header().Set("DPoP-Nonce", n)
	}
	return p.JKT, true
}
