package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// fedIdP is an OpenID provider for the kept-token tests: the code grant
// answers an ID token for the next sub with an access token "at-<sub>-1"
// and a refresh token; the refresh grant rotates both (reuse of an old
// refresh token is invalid_grant) unless fail says otherwise.
type fedIdP struct {
	srv   *httptest.Server
	nonce string
	sub   string
	ttl   int // expires_in of access tokens

	mu      sync.Mutex        // guards refresh, gen and fail
	refresh map[string]string // live refresh token → sub
	gen     map[string]int
	fail    int // HTTP status of the refresh grant's failure; 0: none

	refreshes atomic.Int32
	entered   chan struct{} // when set, each refresh grant reports and waits for release
	release   chan struct{}
}

func newFedIdP(t *testing.T) *fedIdP {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	o := &fedIdP{ttl: 3600, refresh: map[string]string{}, gen: map[string]int{}}
	sign := func(c map[string]any) string {
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "k1"}}, nil)
		payload, _ := json.Marshal(c)
		jws, _ := sig.Sign(payload)
		tok, _ := jws.CompactSerialize()
		return tok
	}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		iss := o.srv.URL
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token", "jwks_uri": iss + "/jwks"})
		case "/jwks":
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		case "/token":
			if id, sec, _ := r.BasicAuth(); id != "fed-app" || sec != "s" {
				w.WriteHeader(401)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client"})
				return
			}
			r.ParseForm()
			o.mu.Lock()
			defer o.mu.Unlock()
			var sub string
			switch r.PostForm.Get("grant_type") {
			case "authorization_code":
				sub = o.sub
			case "refresh_token":
				o.refreshes.Add(1)
				if o.entered != nil {
					o.mu.Unlock()
					o.entered <- struct{}{}
					<-o.release
					o.mu.Lock()
				}
				if o.fail != 0 {
					w.WriteHeader(o.fail)
					code := map[int]string{400: "invalid_grant", 503: "temporarily_unavailable"}[o.fail]
					json.NewEncoder(w).Encode(map[string]string{"error": code})
					return
				}
				var ok bool
				if sub, ok = o.refresh[r.PostForm.Get("refresh_token")]; !ok {
					w.WriteHeader(400)
					json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
					return
				}
				delete(o.refresh, r.PostForm.Get("refresh_token"))
			}
			o.gen[sub]++
			rt := fmt.Sprintf("rt-%s-%d", sub, o.gen[sub])
			o.refresh[rt] = sub
			json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": o.ttl, "refresh_token": rt,
				"access_token": fmt.Sprintf("at-%s-%d", sub, o.gen[sub]),
				"id_token":     sign(map[string]any{"iss": iss, "aud": "fed-app", "sub": sub, "nonce": o.nonce, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})})
		}
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// fedTokensFixture is the built-in server federating to o, keeping tokens.
func fedTokensFixture(t *testing.T, o *fedIdP, key string) *fixture {
	return newFixture(t, func(c *Config) {
		c.Federation = &Federation{Issuer: o.srv.URL, ClientID: "fed-app", ClientSecret: "s",
			Tokens: &FederatedTokens{Key: []byte(key)}}
	})
}

const testFedKey = "0123456789abcdef0123456789abcdef-test"

// signInAt runs a federated sign-in of sub through f in a fresh browser.
func (f *fixture) signInAt(o *fedIdP, sub string) {
	f.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	id := f.publicClient("App")
	resp, _, _ := f.startFlow(c, id, "http://127.0.0.1/cb")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	o.mu.Lock()
	o.nonce, o.sub = loc.Query().Get("nonce"), sub
	o.mu.Unlock()
	req, _ := http.NewRequest("GET", f.srv.URL+"/federation/callback?"+url.Values{"code": {"c"}, "state": {loc.Query().Get("state")}}.Encode(), nil)
	if r, page := do(f.t, c, req); r.StatusCode != 200 || !strings.Contains(page, sub) {
		f.t.Fatalf("federated sign-in of %s: %d %.300s", sub, r.StatusCode, page)
	}
}

// TestFederatedTokensKeptSealed: a federated sign-in keeps the provider's
// tokens for that user; the store holds them sealed; each user gets only
// their own; a user with none gets a clear error.
func TestFederatedTokensKeptSealed(t *testing.T) {
	o := newFedIdP(t)
	f := fedTokensFixture(t, o, testFedKey)
	f.signInAt(o, "alice")
	f.signInAt(o, "bob")
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		tok, exp, err := f.as.FederatedToken(ctx, u, "access_token")
		if err != nil || tok != "at-"+u+"-1" || exp.Before(f.now.Add(59*time.Minute)) {
			t.Fatalf("%s: %q %v %v", u, tok, exp, err)
		}
		id, _, err := f.as.FederatedToken(ctx, u, "id_token")
		var c struct{ Sub string }
		if err != nil || !parsedInto(id, &c) || c.Sub != u {
			t.Fatalf("%s id_token: sub %q %v", u, c.Sub, err)
		}
	}
	all, _ := f.as.cfg.Store.List(fedTokenBucket)
	if len(all) != 2 {
		t.Fatalf("kept records: %d", len(all))
	}
	for k, raw := range all {
		if s := string(raw); strings.Contains(s, "at-") || strings.Contains(s, "rt-") || strings.Contains(s, "eyJ") {
			t.Fatalf("the record of %s is not sealed: %q", k, s)
		}
	}
	if _, _, err := f.as.FederatedToken(ctx, "carol", "access_token"); !errors.Is(err, ErrNoFederatedToken) || !strings.Contains(err.Error(), "sign in again") {
		t.Fatalf("user without tokens: %v", err)
	}
}

func parsedInto(tok string, v any) bool {
	j, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	return err == nil && json.Unmarshal(j.UnsafePayloadWithoutVerification(), v) == nil
}

// TestAttackFederatedTokenRecordSwap: someone with write access to the
// store copies alice's sealed record under bob's name (or the reverse):
// it does not open for bob — the record is bound to its user.
func TestAttackFederatedTokenRecordSwap(t *testing.T) {
	o := newFedIdP(t)
	f := fedTokensFixture(t, o, testFedKey)
	f.signInAt(o, "alice")
	raw, _ := f.as.cfg.Store.Get(fedTokenBucket, "alice")
	f.as.cfg.Store.Put(fedTokenBucket, "bob", raw, time.Hour)
	tok, _, err := f.as.FederatedToken(context.Background(), "bob", "access_token")
	if err == nil || tok != "" || strings.Contains(err.Error(), "at-") {
		t.Fatalf("alice's record under bob's name opened: %q %v", tok, err)
	}
}

// TestFederatedTokenKeyChange: another sealing key cannot open the
// records; the error says to sign in again and nothing is deleted (the
// old key may come back).
func TestFederatedTokenKeyChange(t *testing.T) {
	o := newFedIdP(t)
	f := fedTokensFixture(t, o, testFedKey)
	f.signInAt(o, "alice")
	f.as.cfg.Federation.Tokens = &FederatedTokens{Key: []byte("another key of at least thirty-two bytes")}
	if _, _, err := f.as.FederatedToken(context.Background(), "alice", "access_token"); err == nil || !strings.Contains(err.Error(), "sign in again") {
		t.Fatalf("other key: %v", err)
	}
	if raw, _ := f.as.cfg.Store.Get(fedTokenBucket, "alice"); raw == nil {
		t.Fatal("the record was deleted")
	}
	f.as.cfg.Federation.Tokens = &FederatedTokens{Key: []byte("short")}
	if _, _, err := f.as.FederatedToken(context.Background(), "alice", "access_token"); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("short key: %v", err)
	}
}

// TestFederatedTokenRefreshSingleFlight: a token near expiry is refreshed
// once however many callers ask at the same time; all get the new token,
// which is stored (rotated refresh token), and the next call uses it
// without the provider.
func TestFederatedTokenRefreshSingleFlight(t *testing.T) {
	o := newFedIdP(t)
	f := fedTokensFixture(t, o, testFedKey)
	f.signInAt(o, "alice")
	f.now = f.now.Add(time.Hour - 30*time.Second) // within refresh_before (60s)
	o.entered, o.release = make(chan struct{}), make(chan struct{})
	const n = 20
	got := make(chan string, n)
	for range n {
		go func() {
			tok, _, err := f.as.FederatedToken(context.Background(), "alice", "access_token")
			if err != nil {
				tok = err.Error()
			}
			got <- tok
		}()
	}
	<-o.entered // one refresh is at the provider; the others wait for it
	waitFlight(t, f.as.cfg.Federation.Tokens, "alice")
	close(o.release)
	for range n {
		if tok := <-got; tok != "at-alice-2" {
			t.Fatalf("caller got %q", tok)
		}
	}
	if c := o.refreshes.Load(); c != 1 {
		t.Fatalf("%d refresh grants, want 1", c)
	}
	o.entered = nil
	if tok, _, err := f.as.FederatedToken(context.Background(), "alice", "access_token"); tok != "at-alice-2" || err != nil || o.refreshes.Load() != 1 {
		t.Fatalf("after refresh: %q %v, %d grants", tok, err, o.refreshes.Load())
	}
}

// waitFlight waits until a refresh of user is registered (the flight
// exists before the first caller's grant reaches the provider, so this
// returns at once; it guards the test's own ordering).
func waitFlight(t *testing.T, ft *FederatedTokens, user string) {
	ft.mu.Lock()
	_, ok := ft.flights[user]
	ft.mu.Unlock()
	if !ok {
		t.Fatal("no refresh in flight")
	}
}

// TestFederatedTokenRefreshFailures: a transient failure (503) deletes
// nothing and the next attempt succeeds; invalid_grant deletes the record
// and tells the user to sign in again; a token without refresh token
// that expired says so.
func TestFederatedTokenRefreshFailures(t *testing.T) {
	o := newFedIdP(t)
	f := fedTokensFixture(t, o, testFedKey)
	f.signInAt(o, "alice")
	ctx := context.Background()
	f.now = f.now.Add(2 * time.Hour)
	o.fail = 503
	if _, _, err := f.as.FederatedToken(ctx, "alice", "access_token"); err == nil || !strings.Contains(err.Error(), "try again") {
		t.Fatalf("transient: %v", err)
	}
	o.fail = 0
	if tok, _, err := f.as.FederatedToken(ctx, "alice", "access_token"); tok != "at-alice-2" || err != nil {
		t.Fatalf("after the provider recovered: %q %v", tok, err)
	}
	f.now = f.now.Add(2 * time.Hour)
	o.fail = 400
	if _, _, err := f.as.FederatedToken(ctx, "alice", "access_token"); !errors.Is(err, ErrSignInAgain) {
		t.Fatalf("invalid_grant: %v", err)
	}
	if raw, _ := f.as.cfg.Store.Get(fedTokenBucket, "alice"); raw != nil {
		t.Fatal("the refused grant's record was kept")
	}
	if _, _, err := f.as.FederatedToken(ctx, "alice", "access_token"); !errors.Is(err, ErrNoFederatedToken) {
		t.Fatalf("after deletion: %v", err)
	}
	// a new sign-in restores it
	f.now = time.Now()
	f.signInAt(o, "alice")
	if tok, _, err := f.as.FederatedToken(ctx, "alice", "access_token"); err != nil || !strings.HasPrefix(tok, "at-alice-") {
		t.Fatalf("after a new sign-in: %q %v", tok, err)
	}
}

// TestFederatedTokensOff: without Federation.Tokens nothing is kept.
func TestFederatedTokensOff(t *testing.T) {
	o := newFedIdP(t)
	f := newFixture(t, func(c *Config) {
		c.Federation = &Federation{Issuer: o.srv.URL, ClientID: "fed-app", ClientSecret: "s"}
	})
	f.signInAt(o, "alice")
	if all, _ := f.as.cfg.Store.List(fedTokenBucket); len(all) != 0 {
		t.Fatalf("kept without tokens configured: %d", len(all))
	}
	if _, _, err := f.as.FederatedToken(context.Background(), "alice", "access_token"); !errors.Is(err, ErrFederatedTokensOff) {
		t.Fatalf("%v", err)
	}
}
