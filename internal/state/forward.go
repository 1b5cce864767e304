package state

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
)

// HeaderHop carries a forwarded request's signed hop assertion from the
// replica that authenticated the caller to the replica that owns the
// session. Only a holder of the shared key (state.replica.secret_file) can
// produce one; the owner trusts the principal it carries instead of
// verifying the caller's token again (the caller's credentials never
// travel on the hop).
const HeaderHop = "Mcpgate-Hop"

// HopWindow is how far a hop's timestamp may be from the receiver's clock.
const HopWindow = 30 * time.Second

// HopMaxSkew is the documented bound on how far apart the replicas' clocks
// may be (they are expected to run NTP; docs/security.md "Shared state").
const HopMaxSkew = 30 * time.Second

// hopNonceTTL is how long a hop's nonce is remembered: longer than the
// whole period in which any replica could accept the hop (the ±HopWindow
// of a receiver's clock, shifted by up to HopMaxSkew between replicas),
// so that a replay is never accepted after its nonce record expired.
const hopNonceTTL = 2*HopWindow + HopMaxSkew + 5*time.Second

// minHopKey is the shortest accepted key (HMAC-SHA256: 256 bits).
const minHopKey = 32

// Hops signs and verifies hop assertions with the replicas' shared key,
// and records each nonce in Redis (SET NX) so that a captured hop cannot
// be replayed to any replica within the window.
type Hops struct {
	key []byte
	r   *Redis
	now func() time.Time
}

// LoadHopKey reads the shared key from path: 0600 (or stricter), 32 bytes
// or more (surrounding whitespace ignored). Errors name the key, never
// its content.
func LoadHopKey(path string) ([]byte, error) {
	return loadHopKeyFile(path)
}

// LoadReplicaKey reads the hop key of r: from the environment variable
// state.replica.secret_env names, else from state.replica.secret_file
// (LoadHopKey). Errors name the key, never the value.
func LoadReplicaKey(r config.Replica, getenv func(string) string) ([]byte, error) {
	if r.SecretEnv == "" {
		return LoadHopKey(r.SecretFile)
	}
	k := []byte(strings.TrimSpace(getenv(r.SecretEnv)))
	if len(k) == 0 {
		return nil, fmt.Errorf("state.replica.secret_env: environment variable %s is empty or unset", r.SecretEnv)
	}
	if len(k) < minHopKey {
		return nil, fmt.Errorf("state.replica.secret_env: %s holds %d bytes; want %d or more random bytes (e.g. openssl rand -hex 32)", r.SecretEnv, len(k), minHopKey)
	}
	return k, nil
}

func loadHopKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("state.replica.secret_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("state.replica.secret_file: %s is readable by other users (mode %v); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("state.replica.secret_file: %w", err)
	}
	k := []byte(strings.TrimSpace(string(b)))
	if len(k) < minHopKey {
		return nil, fmt.Errorf("state.replica.secret_file: %s holds %d bytes; want %d or more random bytes (e.g. openssl rand -hex 32 > %s)", path, len(k), minHopKey, path)
	}
	return k, nil
}

// NewHops returns the signer and verifier for key, recording nonces in r.
func NewHops(key []byte, r *Redis) *Hops { return &Hops{key: key, r: r, now: time.Now} }

// Hop is what a hop assertion binds: the destination replica, the request
// line (method and the full request-URI, query included), the session (or
// task, or requestState) it is for, when, a single-use nonce, and the
// principal the sending replica verified.
type Hop struct {
	// Dest is the advertise_url of the replica the hop is for: no other
	// replica accepts it.
	Dest   string `json:"to"`
	Method string `json:"m"`
	// URI is the request-URI: escaped path, "?" and raw query.
	URI     string `json:"u"`
	Binding string `json:"b"`
	Time    int64  `json:"t"`
	Nonce   string `json:"n"`
	// Digest is the hex SHA-256 of the body (POST); the receiver compares
	// it once it has read the body (BodyMatches).
	Digest    string          `json:"d,omitempty"`
	Principal json.RawMessage `json:"pr"`
}

// Sign returns the header value for a hop to the replica dest (its
// advertise_url) of method and request-URI uri for binding with body,
// carrying principal (JSON).
func (h *Hops) Sign(dest, method, uri, binding string, body, principal []byte) string {
	var n [16]byte
	_, _ = rand.Read(n[:])
	b, _ := json.Marshal(Hop{Dest: dest, Method: method, URI: uri, Binding: binding, Time: h.now().Unix(),
		Nonce: hex.EncodeToString(n[:]), Digest: digest(body), Principal: principal})
	p := base64.RawURLEncoding.EncodeToString(b)
	return hopVersion + "." + p + "." + base64.RawURLEncoding.EncodeToString(h.mac(p))
}

// hopVersion names the assertion format; v2 added the destination and the
// query. A v1 assertion (a replica not yet upgraded) is refused.
const hopVersion = "v2"

func (h *Hops) mac(payload string) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte("mcpgate-hop-" + hopVersion + "\x00" + payload))
	return m.Sum(nil)
}

// HopRefusal is a hop assertion that is refused (401): missing, forged,
// for another request, stale or replayed. Its message is safe to show.
type HopRefusal struct{ Reason string }

func (e *HopRefusal) Error() string { return "forwarded request refused: " + e.Reason }

func refuse(reason string) error { return &HopRefusal{Reason: reason} }

func digest(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	d := sha256.Sum256(body)
	return hex.EncodeToString(d[:])
}

// BodyMatches reports whether body is the one the hop was signed over.
func (hop *Hop) BodyMatches(body []byte) bool {
	return hmac.Equal([]byte(digest(body)), []byte(hop.Digest))
}

// Verify checks header against the request it arrived with at the
// replica self (its advertise_url) and returns the hop (its principal,
// its body digest). The nonce is recorded (SET NX, kept hopNonceTTL): a
// second use is refused. A Redis error is an *UnavailableError.
func (h *Hops) Verify(ctx context.Context, header, self, method, uri, binding string) (*Hop, error) {
	hop, err := h.parse(header)
	if err != nil {
		return nil, err
	}
	if hop.Dest == "" || hop.Dest != self {
		return nil, refuse("signed for another replica")
	}
	if hop.Method != method || hop.URI != uri || hop.Binding != binding {
		return nil, refuse("signed for another request")
	}
	if d := h.now().Sub(time.Unix(hop.Time, 0)); d > HopWindow || d < -HopWindow {
		return nil, refuse("timestamp outside the ±30s window (are the replicas' clocks synchronised?)")
	}
	if len(hop.Nonce) != 32 || len(hop.Principal) == 0 {
		return nil, refuse("malformed")
	}
	ctx, cancel := context.WithTimeout(ctx, h.r.timeout)
	defer cancel()
	fresh, err := h.r.c.SetNX(ctx, h.r.Key("hop", hop.Nonce), 1, hopNonceTTL).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	if !fresh {
		return nil, refuse("nonce already used")
	}
	return hop, nil
}

// parse checks the signature before decoding anything it signs.
func (h *Hops) parse(header string) (*Hop, error) {
	if header == "" {
		return nil, refuse("no hop signature")
	}
	parts := strings.Split(header, ".")
	if len(parts) != 3 || parts[0] != hopVersion || len(header) > 64<<10 {
		return nil, refuse("malformed")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, h.mac(parts[1])) {
		return nil, refuse("bad signature")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, refuse("malformed")
	}
	var hop Hop
	if err := json.Unmarshal(b, &hop); err != nil {
		return nil, refuse("malformed")
	}
	return &hop, nil
}
