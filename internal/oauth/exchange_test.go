package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseExchangeResponse(t *testing.T) {
	now := time.Unix(1000, 0)
	ok := `{"access_token":"s3kr1t","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"Bearer","expires_in":60,"scope":"a b"}`
	tests := []struct {
		name, body, requested, err string
	}{
		{"valid", ok, TokenTypeAccessToken, ""},
		{"N_A JWT", `{"access_token":"a.b.c","issued_token_type":"` + TokenTypeJWT + `","token_type":"N_A"}`, "", ""},
		{"not JSON", `[1]`, "", "not a JSON object"},
		{"no token", `{"issued_token_type":"` + TokenTypeAccessToken + `","token_type":"Bearer"}`, "", "no access_token"},
		{"header injection", `{"access_token":"s3kr1t\r\nX-Admin: 1","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"Bearer"}`, "", "cannot be sent in an HTTP header"},
		{"space", `{"access_token":"a b","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"Bearer"}`, "", "cannot be sent"},
		{"huge", `{"access_token":"` + strings.Repeat("a", MaxExchangedTokenBytes+1) + `","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"Bearer"}`, "", "more than"},
		{"no issued_token_type", `{"access_token":"s3kr1t","token_type":"Bearer"}`, "", "no issued_token_type"},
		{"other type than requested", `{"access_token":"s3kr1t","issued_token_type":"` + TokenTypeJWT + `","token_type":"N_A"}`, TokenTypeAccessToken, "not the requested"},
		{"refresh token", `{"access_token":"s3kr1t","issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token","token_type":"N_A"}`, "", "only an access token or a JWT"},
		{"DPoP", `{"access_token":"s3kr1t","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"DPoP"}`, "", "DPoP-bound"},
		{"unknown token_type", `{"access_token":"s3kr1t","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"MAC"}`, "", "token_type"},
		{"negative expiry", `{"access_token":"s3kr1t","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"Bearer","expires_in":-5}`, "", "expires_in"},
		{"zero expiry", `{"access_token":"s3kr1t","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"Bearer","expires_in":0}`, "", "expires_in"},
		{"fractional expiry", `{"access_token":"s3kr1t","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"Bearer","expires_in":1.5}`, "", "expires_in"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseExchangeResponse([]byte(tc.body), tc.requested, now)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q (token %+v)", err, tc.err, got)
			}
			if strings.Contains(err.Error(), "s3kr1t") {
				t.Fatalf("the error quotes the token: %v", err)
			}
		})
	}
	got, _ := ParseExchangeResponse([]byte(ok), "", now)
	if got.AccessToken != "s3kr1t" || got.TokenType != "Bearer" || !got.Expiry.Equal(now.Add(time.Minute)) || strings.Join(got.Scopes, " ") != "a b" {
		t.Fatalf("%+v", got)
	}
}

// FuzzParseExchangeResponse: whatever an identity provider answers, the
// parser never panics, and what it accepts can be sent in a header.
func FuzzParseExchangeResponse(f *testing.F) {
	f.Add([]byte(`{"access_token":"tok","issued_token_type":"`+TokenTypeAccessToken+`","token_type":"Bearer","expires_in":60}`), "")
	f.Add([]byte(`{"access_token":"a.b.c","issued_token_type":"`+TokenTypeJWT+`","token_type":"N_A","expires_in":9999999999999}`), TokenTypeJWT)
	f.Add([]byte(`{"access_token":"\u0000","expires_in":"x"}`), "")
	f.Fuzz(func(t *testing.T, raw []byte, requested string) {
		tok, err := ParseExchangeResponse(raw, requested, time.Unix(0, 0))
		if err != nil {
			return
		}
		if headerSafeToken(tok.AccessToken) != nil || (tok.TokenType != "Bearer" && tok.TokenType != "N_A") {
			t.Fatalf("accepted %+v", tok)
		}
		if !tok.Expiry.IsZero() && !tok.Expiry.After(time.Unix(0, 0)) {
			t.Fatalf("accepted an expiry in the past: %v", tok.Expiry)
		}
	})
}

// fakeSTS is a token endpoint with discovery that records the last form.
func fakeSTS(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int32) {
	var meta atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			meta.Add(1)
			json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "token_endpoint": srv.URL + "/token",
				"grant_types_supported": []string{"authorization_code", GrantTokenExchange}})
		case "/token":
			answer(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &meta
}

func TestExchangerRequest(t *testing.T) {
	var got http.Request
	srv, meta := fakeSTS(t, func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		got = *r
		w.Write([]byte(`{"access_token":"up-token","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"bearer","expires_in":300}`))
	})
	x, err := NewExchanger(testEngine(srv.URL), ExchangerConfig{Issuer: srv.URL,
		Client:  Client{ID: "gw", Secret: "s3cret", AuthMethod: "client_secret_basic"},
		Request: ExchangeRequest{Resource: "https://api.example/", Audience: "api", Scopes: []string{"orders:read"}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		tok, err := x.Exchange(context.Background(), "caller-token")
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != "up-token" || tok.TokenType != "Bearer" || strings.Join(tok.Scopes, " ") != "orders:read" {
			t.Fatalf("%+v", tok)
		}
	}
	f := got.PostForm
	id, secret, _ := got.BasicAuth()
	if f.Get("grant_type") != GrantTokenExchange || f.Get("subject_token") != "caller-token" || f.Get("subject_token_type") != TokenTypeAccessToken ||
		f.Get("requested_token_type") != TokenTypeAccessToken || f.Get("resource") != "https://api.example/" || f.Get("audience") != "api" ||
		f.Get("scope") != "orders:read" || id != "gw" || secret != "s3cret" {
		t.Fatalf("form %v, client %q", f, id)
	}
	if meta.Load() != 1 {
		t.Fatalf("metadata fetched %d times, want once", meta.Load())
	}
}

// TestExchangerErrors: an OAuth error answer is a *TokenError with the
// server's code; 5xx and network failures are transient; a discovery
// failure is remembered instead of refetched by every caller.
func TestExchangerErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		code      string
		transient bool
	}{
		{"invalid_target", 400, `{"error":"invalid_target","error_description":"no such audience"}`, "invalid_target", false},
		{"invalid_scope", 400, `{"error":"invalid_scope"}`, "invalid_scope", false},
		{"server error", 500, `oops`, "", true},
		{"unavailable", 503, `{"error":"temporarily_unavailable"}`, "temporarily_unavailable", true},
		{"bad answer", 200, `{"access_token":"x"}`, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := fakeSTS(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			})
			x, _ := NewExchanger(testEngine(srv.URL), ExchangerConfig{TokenEndpoint: srv.URL + "/token", Client: Client{ID: "gw"}})
			_, err := x.Exchange(context.Background(), "caller-token")
			var te *TokenError
			if !errors.As(err, &te) || te.Code != tc.code || te.Transient() != tc.transient {
				t.Fatalf("err = %#v", err)
			}
			if strings.Contains(err.Error(), "caller-token") {
				t.Fatalf("the error quotes the subject token: %v", err)
			}
		})
	}
	t.Run("discovery failure", func(t *testing.T) {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1); w.WriteHeader(500) }))
		defer srv.Close()
		x, _ := NewExchanger(testEngine(srv.URL), ExchangerConfig{Issuer: srv.URL, Client: Client{ID: "gw"}})
		_, err1 := x.Exchange(context.Background(), "t")
		n := calls.Load()
		_, err2 := x.Exchange(context.Background(), "t")
		if err1 == nil || err2 == nil || !IsTransient(err1) || calls.Load() != n {
			t.Fatalf("errors %v / %v, calls %d then %d", err1, err2, n, calls.Load())
		}
	})
	t.Run("no grant", func(t *testing.T) {
		var srv *httptest.Server
		srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "token_endpoint": srv.URL + "/token", "grant_types_supported": []string{"authorization_code"}})
		}))
		defer srv.Close()
		x, _ := NewExchanger(testEngine(srv.URL), ExchangerConfig{Issuer: srv.URL, Client: Client{ID: "gw"}})
		if _, err := x.Exchange(context.Background(), "t"); err == nil || !strings.Contains(err.Error(), "grant_types_supported") {
			t.Fatalf("err = %v", err)
		}
	})
	if _, err := NewExchanger(testEngine("https://x.example"), ExchangerConfig{TokenEndpoint: "https://x.example/token", Client: Client{ID: "gw", AuthMethod: "private_key_jwt"}}); err == nil {
		t.Fatal("private_key_jwt without issuer accepted")
	}
}
