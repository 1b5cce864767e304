package authserver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// refreshGrant rotates refresh tokens, with reuse detection:
//
//   - first use: a new pair is issued, and the answer is kept with the old
//     token's record, sealed with a key derived from the old token (so the
//     store alone cannot open it);
//   - a second use within RefreshGrace (a client that retried, or two
//     concurrent refreshes): the SAME answer once more, never a fresh pair
//     — whoever races the client gets what the client got, and one of the
//     two then trips reuse detection;
//   - any further use, or a second use after the grace: the token is taken
//     as stolen and its whole family is revoked.
//
// A token bound to a DPoP key is refused without a proof by that key,
// before anything else happens to it. The record is taken from the store
// while it is handled, so that two replicas cannot both rotate it: the
// one that does not hold it answers invalid_grant.
func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request, c *client, jkt string) {
	token := r.PostForm.Get("refresh_token")
	key := hashToken(token)
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	raw, _ := s.cfg.Store.Take("refresh", key)
	var rt refreshRecord
	if raw == nil || json.Unmarshal(raw, &rt) != nil || s.now().After(rt.Expires) {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is unknown, revoked or expired")
		return
	}
	putBack := func() bool {
		b, _ := json.Marshal(rt)
		return s.cfg.Store.Put("refresh", key, b, ttlUntil(rt.Expires)) == nil
	}
	if rt.ClientID != c.ID {
		putBack()
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token belongs to another client")
		return
	}
	if !rt.UsedAt.IsZero() && (rt.Replayed || rt.Successor == "" || s.now().Sub(rt.UsedAt) > s.cfg.RefreshGrace) {
		s.revokeFamily(rt.Family)
		s.cfg.Log.Warn("refresh token reuse: family revoked", "client_id", c.ID, "user", rt.User)
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token was already used; all tokens of this grant are revoked")
		return
	}
	if rt.JKT != "" && rt.JKT != jkt {
		putBack()
		msg := "the refresh token is bound to another DPoP key"
		if jkt == "" {
			msg = "the refresh token is DPoP-bound: send a DPoP proof by its key"
		}
		oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", msg)
		return
	}
	if res := r.PostForm.Get("resource"); res != "" && strings.TrimSuffix(res, "/") != strings.TrimSuffix(rt.Resource, "/") {
		putBack()
		oauthError(w, http.StatusBadRequest, "invalid_target", "a refresh token is for one resource only")
		return
	}
	if !rt.UsedAt.IsZero() { // the one replay within the grace
		resp, err := openSuccessor(token, rt.Successor)
		if err != nil {
			s.revokeFamily(rt.Family)
			oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token was already used; all tokens of this grant are revoked")
			return
		}
		rt.Replayed, rt.Successor = true, ""
		if !putBack() {
			s.revokeFamily(rt.Family)
			oauthError(w, http.StatusInternalServerError, "server_error", "storing the refresh token failed")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(resp)
		return
	}
	scopes := rt.Scopes
	if want := strings.Fields(r.PostForm.Get("scope")); len(want) > 0 {
		for _, sc := range want {
			if !slices.Contains(rt.Scopes, sc) {
				putBack()
				oauthError(w, http.StatusBadRequest, "invalid_scope", "scope "+sc+" was not granted")
				return
			}
		}
		scopes = want
	}
	if rt.JKT != "" {
		jkt = rt.JKT
	}
	resp, err := s.tokenResponse(c, rt.User, rt.Resource, scopes, jkt, rt.AuthTime, rt.Family)
	if err != nil {
		putBack()
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	body, _ := json.Marshal(resp)
	rt.UsedAt = s.now()
	if rt.Successor, err = sealSuccessor(token, body); err != nil || !putBack() {
		s.revokeFamily(rt.Family) // the new pair is not handed out
		oauthError(w, http.StatusInternalServerError, "server_error", "storing the refresh token failed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
}

// successorKey derives the sealing key from the refresh token itself:
// only who presents the old token can open the answer it was rotated to.
func successorKey(token string) cipher.AEAD {
	k := sha256.Sum256([]byte("mcpgate refresh successor\x00" + token))
	b, _ := aes.NewCipher(k[:])
	g, _ := cipher.NewGCM(b)
	return g
}

func sealSuccessor(token string, body []byte) (string, error) {
	g := successorKey(token)
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(g.Seal(nonce, nonce, body, nil)), nil
}

func openSuccessor(token, sealed string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	g := successorKey(token)
	if err != nil || len(raw) < g.NonceSize() {
		return nil, errors.New("damaged successor")
	}
	out, err := g.Open(nil, raw[:g.NonceSize()], raw[g.NonceSize():], nil)
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
