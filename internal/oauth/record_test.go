package oauth

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestRecordStoreRoundTrip: a saved record is found again from the server
// URL in any spelling of it (ServerKey canonicalizes), under the schema
// other processes and older versions read (the JSON field names), with its
// DPoP and client keys usable after Load.
func TestRecordStoreRoundTrip(t *testing.T) {
	now := time.Date(2026, 7, 28, 12, 0, 0, 0, time.UTC)
	e := testEngine("http://127.0.0.1:9000/mcp")
	e.Now = func() time.Time { return now }
	store := newMemStore()
	dk, _ := NewDPoPKey()
	dkDER, _ := x509.MarshalPKCS8PrivateKey(dk.Key)
	ck, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ckDER, _ := x509.MarshalPKCS8PrivateKey(ck)
	rec := &Record{Profile: "default", Server: "http://127.0.0.1:9000/mcp", Resource: "http://127.0.0.1:9000/mcp",
		Issuer: "http://127.0.0.1:9000", Client: Client{ID: "c1", AuthMethod: "private_key_jwt", Kind: "dcr"},
		ClientKey: ckDER, DPoPKey: dkDER, Grant: grantAuthorizationCode, Subject: "alice",
		Token: Token{AccessToken: "at", TokenType: "DPoP", RefreshToken: "rt", Expiry: now.Add(time.Hour)},
		AS:    ServerMetadata{Issuer: "http://127.0.0.1:9000", TokenEndpoint: "http://127.0.0.1:9000/token"}}
	if err := NewCredential(e, store, Config{ServerURL: rec.Server}).save(rec); err != nil {
		t.Fatal(err)
	}
	key := TokenKey("default", rec.Issuer, "c1", rec.Resource)
	raw, _ := store.Get(key)
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"version", "profile", "server", "resource", "issuer", "client", "client_key", "dpop_key", "token", "as", "subject", "grant", "updated_at"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("stored record lacks %q: %s", f, raw)
		}
	}
	if fields["version"] != 1.0 || fields["grant"] != "authorization_code" {
		t.Errorf("version %v grant %v", fields["version"], fields["grant"])
	}
	if ptr, _ := store.Get(ServerKey("default", "HTTP://127.0.0.1:9000/mcp/")); string(ptr) != key {
		t.Fatalf("server pointer %q, want %q", ptr, key)
	}

	s := NewCredential(e, store, Config{ServerURL: "http://127.0.0.1:9000/mcp/"})
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	got := s.Record()
	if got == nil || got.Version != 1 || !got.UpdatedAt.Equal(now) || got.Subject != "alice" || !reflect.DeepEqual(got.Token, rec.Token) {
		t.Fatalf("loaded %+v", got)
	}
	if got.Client.Key == nil || !got.Client.Key.Public().(*ecdsa.PublicKey).Equal(&ck.PublicKey) {
		t.Fatal("the client key did not come back")
	}
	if k := s.keyFor(got); k == nil || k.Thumbprint() != dk.Thumbprint() {
		t.Fatal("the DPoP key did not come back")
	}
	if s.Record() == s.Record() {
		t.Fatal("Record returns the session's own record, not a copy")
	}
}

// TestLoadRefusesDamagedRecords: a record that does not parse, or whose
// DPoP key does not parse or cannot sign, is an error that says what to
// do, never a panic or a silent unauthenticated session.
func TestLoadRefusesDamagedRecords(t *testing.T) {
	xk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	xDER, err := x509.MarshalPKCS8PrivateKey(xk)
	if err != nil {
		t.Fatal(err)
	}
	server := "http://127.0.0.1:9000/mcp"
	for _, c := range []struct {
		name, raw, want string
	}{
		{"not JSON", `{"version":`, "run mcpgate logout " + server},
		{"DPoP key not PKCS#8", `{"version":1,"dpop_key":"AAEC"}`, "stored DPoP key:"},
		{"DPoP key cannot sign", `{"version":1,"dpop_key":` + string(mustJSON(t, xDER)) + `}`, "stored DPoP key is not a signing key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := newMemStore()
			store.Put(ServerKey("default", server), []byte("token|x"))
			store.Put("token|x", []byte(c.raw))
			s := NewCredential(testEngine(server), store, Config{ServerURL: server})
			if err := s.Load(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load: %v, want %q", err, c.want)
			}
			if s.Record() != nil {
				t.Fatal("a damaged record became current")
			}
		})
	}
	// keyFor (refresh of a record another process stored) has no key
	// rather than panicking
	s := NewCredential(testEngine(server), newMemStore(), Config{ServerURL: server})
	if k := s.keyFor(&Record{DPoPKey: xDER}); k != nil {
		t.Fatal("a key that cannot sign was used")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestStoredRegistration: a stored client registration is reused only
// for its issuer, before it expires, and for a redirect URI it was
// registered for (any port on a loopback URI, RFC 8252 §7.3); its
// generated private_key_jwt key comes back with it.
func TestStoredRegistration(t *testing.T) {
	now := time.Date(2026, 7, 28, 12, 0, 0, 0, time.UTC)
	issuer := "http://127.0.0.1:9000"
	ck, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyDER := (&Client{Kind: "dcr", Key: ck}).ClientKeyDER()
	if keyDER == nil {
		t.Fatal("ClientKeyDER of a generated key is empty")
	}
	if (&Client{Kind: "preregistered", Key: ck}).ClientKeyDER() != nil {
		t.Fatal("a key the user supplied would be stored")
	}
	base := Client{ID: "c1", Issuer: issuer, Kind: "dcr", RedirectURIs: []string{"http://127.0.0.1:4242/callback"}}
	for _, c := range []struct {
		name     string
		edit     func(*Client)
		redirect string
		use      bool
	}{
		{"same redirect", nil, "http://127.0.0.1:4242/callback", true},
		{"other loopback port", nil, "http://127.0.0.1:5151/callback", true},
		{"other path", nil, "http://127.0.0.1:4242/other", false},
		{"grant without redirect", nil, "", true},
		{"registered without redirects", func(c *Client) { c.RedirectURIs = nil }, "http://127.0.0.1:5151/callback", true},
		{"other issuer", func(c *Client) { c.Issuer = "http://127.0.0.1:9001" }, "", false},
		{"no client id", func(c *Client) { c.ID = "" }, "", false},
		{"expired", func(c *Client) { c.ExpiresAt = now.Add(-time.Second) }, "", false},
		{"not yet expired", func(c *Client) { c.ExpiresAt = now.Add(time.Hour) }, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := base
			if c.edit != nil {
				c.edit(&cl)
			}
			store := newMemStore()
			store.Put(ClientKeyOf("default", issuer), mustJSON(t, storedClient{cl, keyDER}))
			e := testEngine(issuer)
			e.Now = func() time.Time { return now }
			got := NewCredential(e, store, Config{ServerURL: issuer + "/mcp"}).storedRegistration(issuer, c.redirect)
			if (got != nil) != c.use {
				t.Fatalf("reused %v, want %v", got != nil, c.use)
			}
			if got == nil {
				return
			}
			if got.Key == nil || !got.Key.Public().(*ecdsa.PublicKey).Equal(&ck.PublicKey) {
				t.Fatal("the registration's key did not come back")
			}
			got.Key, cl.Key = nil, nil
			if !reflect.DeepEqual(*got, cl) {
				t.Fatalf("got %+v, want %+v", *got, cl)
			}
		})
	}
	if NewCredential(testEngine(issuer), newMemStore(), Config{}).storedRegistration(issuer, "") != nil {
		t.Fatal("a registration out of nothing")
	}
}
