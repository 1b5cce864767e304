package gateway

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/oauth"
)

// Connected accounts at rest. Every value — a user's upstream tokens, a
// connect ticket, a pending authorization with its PKCE verifier — is
// sealed with AES-256-GCM under the key of upstream_auth.oauth.token_key_*
// before it reaches the store, with the entry's own name as additional
// data: a sealed value copied under another name (alice's record under
// bob's key) does not open. Store keys are SHA-256 digests of what they
// name, so the store shows no subject, upstream or ticket. The store is the
// built-in authorization server's (bbolt by default, PostgreSQL shared by
// replicas with builtin.store_env).

// Buckets of the built-in server's store the connected accounts use.
const (
	bucketAccounts = "upstream_accounts" // connection records
	bucketTickets  = "upstream_tickets"  // connect URLs not opened yet
	bucketPending  = "upstream_pending"  // authorizations waiting for their callback
)

// accountKV is the part of the built-in authorization server the
// connected accounts use (authserver/accounts.go).
type accountKV interface {
	AccountPut(bucket, key string, v []byte, ttl time.Duration) error
	AccountGet(bucket, key string) ([]byte, error)
	AccountTake(bucket, key string) ([]byte, error)
	AccountDelete(bucket, key string) error
	AccountList(bucket string) (map[string][]byte, error)
}

// sealedStore seals and opens the values of an accountKV.
type sealedStore struct {
	kv   accountKV
	aead cipher.AEAD
}

// readTokenKey reads the 32-byte AES key (base64, base64url or hex).
func readTokenKey(c *config.UpstreamOAuth, getenv func(string) string) ([]byte, error) {
	v, err := config.ReadSecret("upstream_auth.oauth.token_key_env", c.TokenKeyEnv, "upstream_auth.oauth.token_key_file", c.TokenKeyFile, getenv)
	if err != nil {
		return nil, err
	}
	for _, dec := range []func(string) ([]byte, error){base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString} {
		if k, err := dec(v); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	return nil, errors.New("upstream_auth.oauth.token_key_*: the key must be 32 random bytes, base64 or hex encoded (e.g. openssl rand -base64 32)")
}

func newSealedStore(kv accountKV, key []byte) (*sealedStore, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealedStore{kv: kv, aead: aead}, nil
}

// name is the store key of parts: a digest, so the store never shows them.
func name(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

func (s *sealedStore) seal(bucket, key string, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(bucket+"/"+key)), nil
}

// errSealed: a stored value does not open with this key under this name
// (another key, or a value moved from another entry). It is never used.
var errSealed = errors.New("a stored connected-account entry does not decrypt with upstream_auth.oauth.token_key (was the key changed?)")

func (s *sealedStore) open(bucket, key string, raw []byte, v any) error {
	n := s.aead.NonceSize()
	if len(raw) < n {
		return errSealed
	}
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(bucket+"/"+key))
	if err != nil {
		return errSealed
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("a stored connected-account entry is unreadable: %w", err)
	}
	return nil
}

func (s *sealedStore) put(bucket, key string, v any, ttl time.Duration) error {
	raw, err := s.seal(bucket, key, v)
	if err != nil {
		return err
	}
	return s.kv.AccountPut(bucket, key, raw, ttl)
}

// get opens the entry into v; found is false when there is none.
func (s *sealedStore) get(bucket, key string, v any) (found bool, err error) {
	raw, err := s.kv.AccountGet(bucket, key)
	if err != nil || raw == nil {
		return false, err
	}
	return true, s.open(bucket, key, raw, v)
}

// take removes the entry and opens it (single use).
func (s *sealedStore) take(bucket, key string, v any) (found bool, err error) {
	raw, err := s.kv.AccountTake(bucket, key)
	if err != nil || raw == nil {
		return false, err
	}
	return true, s.open(bucket, key, raw, v)
}

// connection is one user's connected account at one upstream.
type connection struct {
	// Issuer and Subject are the user as the gateway knows them (the
	// caller's token); Upstream is the mount's name.
	Issuer   string `json:"issuer"`
	Subject  string `json:"subject"`
	Upstream string `json:"upstream"`
	// Resource is the RFC 8707 resource the token is for; AS the upstream
	// authorization server it came from, Client the gateway's client there.
	Resource  string               `json:"resource"`
	AS        oauth.ServerMetadata `json:"as"`
	Client    oauth.Client         `json:"client"`
	DPoPKey   []byte               `json:"dpop_key,omitempty"`
	Token     oauth.Token          `json:"token"`
	Created   time.Time            `json:"created"`
	Refreshed time.Time            `json:"refreshed,omitzero"`
}

// ticket is a connect URL handed to a caller: it may be opened once,
// before it expires, by the same user.
type ticket struct {
	Issuer   string    `json:"issuer"`
	Subject  string    `json:"subject"`
	Upstream string    `json:"upstream"`
	Expires  time.Time `json:"expires"`
}

// pending is an authorization at the upstream's server waiting for its
// callback, bound to the user who opened the connect URL.
type pending struct {
	ticket
	Auth     oauth.PendingAuthorization `json:"auth"`
	Resource string                     `json:"resource"`
	AS       oauth.ServerMetadata       `json:"as"`
	Client   oauth.Client               `json:"client"`
	Scopes   []string                   `json:"scopes"`
	DPoPKey  []byte                     `json:"dpop_key,omitempty"`
}
