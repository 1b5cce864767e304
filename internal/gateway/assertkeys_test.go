package gateway

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpgate/mcpgate/internal/config"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testKeys(t *testing.T, file string, period time.Duration, c *clock) *assertionKeys {
	t.Helper()
	ks, err := newAssertionKeys(config.IdentityAssertionKeys{KeyFile: file, Rotation: config.Duration{Duration: period}}, slog.New(slog.DiscardHandler), c.now)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// published is the kids of the JWKS, in order.
func published(t *testing.T, ks *assertionKeys) []string {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(ks.current().jwks, &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("private key %s in the JWKS", k.KeyID)
		}
		kids = append(kids, k.KeyID)
	}
	return kids
}

func signerKID(ks *assertionKeys, c *clock) string { return ks.current().signer(c.now()).KID }

// TestAssertionKeyRotation walks one rotation period: the successor is
// published assertionLead before it signs, and the old key stays
// published until every assertion it signed has expired.
func TestAssertionKeyRotation(t *testing.T) {
	for _, file := range []string{"", "keys.json"} {
		t.Run("file="+file, func(t *testing.T) {
			if file != "" {
				file = filepath.Join(t.TempDir(), file)
			}
			c := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
			ks := testKeys(t, file, time.Hour, c)
			first := signerKID(ks, c)
			if got := published(t, ks); !slices.Equal(got, []string{first}) {
				t.Fatalf("at start: %v", got)
			}
			c.add(time.Hour - assertionLead - time.Second)
			if got := published(t, ks); len(got) != 1 {
				t.Fatalf("before the lead: %v", got)
			}
			c.add(time.Second)
			got := published(t, ks)
			if len(got) != 2 || got[0] != first || signerKID(ks, c) != first {
				t.Fatalf("the successor is published, the first key still signs: %v, signer %s", got, signerKID(ks, c))
			}
			second := got[1]
			c.add(assertionLead - time.Second) // the last second of the first key
			last := ks.current().signer(c.now())
			c.add(time.Second)
			if signerKID(ks, c) != second || last.KID != first {
				t.Fatalf("at the period's end: signer %s, want %s", signerKID(ks, c), second)
			}
			// an assertion signed in the first key's last second lives
			// config.MaxAssertionTTL: its key stays until then, plus skew
			c.add(config.MaxAssertionTTL + assertionSkew - time.Second)
			if got := published(t, ks); !slices.Contains(got, first) {
				t.Fatalf("the first key went while its assertions live: %v", got)
			}
			c.add(time.Second)
			if got := published(t, ks); !slices.Equal(got, []string{second}) {
				t.Fatalf("after its last assertion expired: %v", got)
			}
		})
	}
}

// TestAssertionKeyRotationAfterLongSleep: a set not refreshed for longer
// than a period publishes the successor before it signs all the same.
func TestAssertionKeyRotationAfterLongSleep(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	ks := testKeys(t, "", time.Hour, c)
	first := signerKID(ks, c)
	c.add(30 * time.Hour)
	if got := published(t, ks); len(got) != 2 || signerKID(ks, c) != first {
		t.Fatalf("after a long sleep: %v, signer %s", got, signerKID(ks, c))
	}
}

// TestAssertionKeyFile: the key file is 0600 and keeps the keys across a
// restart; replicas sharing it publish each other's keys before they
// sign; a damaged or world-readable file is refused, never replaced.
func TestAssertionKeyFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "assertion-keys.json")
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	a := testKeys(t, file, time.Hour, c)
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st.Mode(), err)
	}
	restarted := testKeys(t, file, time.Hour, c)
	if signerKID(restarted, c) != signerKID(a, c) {
		t.Fatal("a restart made a new key")
	}
	b := testKeys(t, file, time.Hour, c) // another replica
	c.add(time.Hour - assertionLead)
	aKeys := published(t, a) // a rotates
	c.add(assertionReload)
	bKeys := published(t, b) // b rereads within assertionReload
	if len(aKeys) != 2 || !slices.Equal(aKeys, bKeys) {
		t.Fatalf("replicas publish %v and %v", aKeys, bKeys)
	}
	c.add(assertionLead)
	if signerKID(a, c) != aKeys[1] || signerKID(b, c) != aKeys[1] {
		t.Fatal("the replicas sign with different keys")
	}

	for name, setup := range map[string]func(string) error{
		"damaged":        func(p string) error { return os.WriteFile(p, []byte("{not json"), 0o600) },
		"world-readable": func(p string) error { return os.WriteFile(p, []byte(`{"version":1,"keys":[]}`), 0o644) },
		"wrong kid": func(p string) error {
			raw, _ := os.ReadFile(file)
			return os.WriteFile(p, []byte(strings.Replace(string(raw), `"kid": "`, `"kid": "x`, 1)), 0o600)
		},
	} {
		p := filepath.Join(dir, name+".json")
		if err := setup(p); err != nil {
			t.Fatal(err)
		}
		if name == "world-readable" {
			_ = os.Chmod(p, 0o644) // whatever the umask
		}
		before, _ := os.ReadFile(p)
		_, err := newAssertionKeys(config.IdentityAssertionKeys{KeyFile: p}, slog.New(slog.DiscardHandler), c.now)
		if err == nil || !strings.Contains(err.Error(), "identity_assertion_keys") {
			t.Errorf("%s: %v", name, err)
		}
		if after, _ := os.ReadFile(p); string(after) != string(before) {
			t.Errorf("%s: the file was replaced", name)
		}
	}
}

// TestAssertionSignatureVerifies: the hand-made JWS verifies with go-jose
// under the published key, and fails after any change.
func TestAssertionSignatureVerifies(t *testing.T) {
	c := &clock{t: time.Now()}
	ks := testKeys(t, "", time.Hour, c)
	k := ks.current().signer(c.now())
	tok, err := k.sign([]byte(`{"sub":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	_ = json.Unmarshal(ks.current().jwks, &set)
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := jws.Verify(set.Keys[0].Key); err != nil || string(out) != `{"sub":"alice"}` {
		t.Fatalf("verify: %q %v", out, err)
	}
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + parts[2]
	j, err := jose.ParseSigned(tampered, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Verify(set.Keys[0].Key); err == nil {
		t.Fatal("a tampered payload verified")
	}
}

// TestAssertionJWKSBudget: the unauthenticated JWKS costs no I/O per
// request — the key file is reread at most every assertionReload, by one
// caller at a time — and a key file that breaks later leaves the keys in
// force (published and signing) instead of failing the endpoint.
func TestAssertionJWKSBudget(t *testing.T) {
	dir := t.TempDir()
	file, other := filepath.Join(dir, "keys.json"), filepath.Join(dir, "other.json")
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	ks := testKeys(t, file, time.Hour, c)
	testKeys(t, other, time.Hour, c) // another key set, swapped in below
	h := ks.jwksHandler()
	get := func() (int, string, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", assertionJWKSPath, nil))
		return w.Code, w.Header().Get("ETag"), w.Body.String()
	}
	_, etag, body := get()
	if err := os.Rename(other, file); err != nil {
		t.Fatal(err)
	}
	c.add(assertionReload - time.Second)
	for range 1000 {
		if code, e, b := get(); code != 200 || e != etag || b != body {
			t.Fatalf("the file was reread within the reload period: %d %s", code, e)
		}
	}
	c.add(time.Second)
	_, swapped, _ := get()
	if swapped == etag {
		t.Fatal("the file was not reread after the reload period")
	}
	if err := os.WriteFile(file, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.add(assertionReload)
	if code, e, _ := get(); code != 200 || e != swapped {
		t.Fatalf("after the file broke: %d %s", code, e)
	}
	if ks.current().signer(c.now()) == nil {
		t.Fatal("no signing key after the file broke")
	}
	if len(body) > 512 {
		t.Errorf("JWKS of one key is %d bytes", len(body))
	}
}

// TestAssertionKeySkewedReplica: a replica whose clock is behind the one
// that made the first key signs with it at once; a successor signs only
// from its activation on that replica's clock.
func TestAssertionKeySkewedReplica(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	ahead := &clock{t: time.Unix(1_800_000_000, 0)}
	a := testKeys(t, file, time.Hour, ahead)
	behind := &clock{t: ahead.now().Add(-30 * time.Second)}
	b := testKeys(t, file, time.Hour, behind)
	if signerKID(b, behind) != signerKID(a, ahead) {
		t.Fatal("the replica behind has no signing key")
	}
	ahead.add(time.Hour - assertionLead)
	next := published(t, a)[1]
	behind.add(time.Hour) // 30 s before the successor activates on b's clock
	if signerKID(b, behind) == next || !slices.Contains(published(t, b), next) {
		t.Fatal("b signs with the successor before it activates, or does not publish it")
	}
	behind.add(30 * time.Second)
	if signerKID(b, behind) != next {
		t.Fatal("b does not sign with the successor once it is active")
	}
}
