package resource

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/p256"
)

const (
	maxDocBytes     = 1 << 20
	minRefresh      = 5 * time.Minute
	maxRefresh      = 24 * time.Hour
	defaultRefresh  = time.Hour
	refetchInterval = 10 * time.Second // unknown-kid refetches per issuer
	// maxTables bounds the ES256 keys per issuer that get a precomputed
	// verification table (400 KiB each); further keys verify through
	// crypto/ecdsa.
	maxTables = 4
)

// issuerKeys is one trusted issuer: its configuration, key set and
// metadata-derived endpoints. Keys load in the background; the hot path
// only reads them, except for one rate-limited single-flight refetch when
// a token names an unknown kid.
type issuerKeys struct {
	cfg    config.Issuer
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	algs   []jose.SignatureAlgorithm
	sf     singleflight.Group

	mu            sync.RWMutex // guards the fields below
	keys          map[string]jose.JSONWebKey
	anon          []jose.JSONWebKey // keys without kid
	tables        map[*ecdsa.PublicKey]*p256.PublicKey
	jwksURI       string
	introspection string
	grants        []string // grant_types_supported of the fetched metadata; nil if none was fetched
	loaded        bool
	lastErr       error
	lastFetch     time.Time
	maxAge        time.Duration
}

func newIssuerKeys(cfg config.Issuer, client *http.Client, log *slog.Logger, now func() time.Time) *issuerKeys {
	k := &issuerKeys{cfg: cfg, client: client, log: log, now: now, jwksURI: cfg.JWKSURI, keys: map[string]jose.JSONWebKey{}}
	for _, a := range cfg.Algorithms {
		if sa, ok := jwtAlgs[a]; ok {
			k.algs = append(k.algs, sa)
		}
	}
	if cfg.Introspection != nil {
		k.introspection = cfg.Introspection.Endpoint
	}
	return k
}

// jwtAlgs are the asymmetric algorithms an issuer may be configured with.
var jwtAlgs = map[string]jose.SignatureAlgorithm{
	"RS256": jose.RS256, "RS384": jose.RS384, "RS512": jose.RS512,
	"PS256": jose.PS256, "PS384": jose.PS384, "PS512": jose.PS512,
	"ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512, "EdDSA": jose.EdDSA,
}

// run loads keys now and refreshes them until ctx ends.
func (k *issuerKeys) run(ctx context.Context) {
	backoff := 2 * time.Second
	for {
		wait := k.refresh(ctx)
		if wait == 0 {
			wait = backoff
			backoff = min(backoff*2, 5*time.Minute)
		} else {
			backoff = 2 * time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refresh fetches metadata (when needed) and the key set. It returns the
// time until the next refresh, 0 after a failure.
func (k *issuerKeys) refresh(ctx context.Context) time.Duration {
	_, err, _ := k.sf.Do("fetch", func() (any, error) { return nil, k.fetch(ctx) })
	if err != nil {
		k.log.Warn("issuer keys not loaded; retrying", "issuer", k.cfg.Issuer, "err", err)
		return 0
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.maxAge
}

func (k *issuerKeys) fetch(ctx context.Context) error {
	k.mu.RLock()
	jwksURI, needMeta := k.jwksURI, k.jwksURI == "" || (k.cfg.Introspection != nil && k.introspection == "")
	k.mu.RUnlock()
	if needMeta {
		meta, err := discover(ctx, k.client, k.cfg.Issuer)
		if err != nil {
			k.setErr(err)
			return err
		}
		k.mu.Lock()
		if k.jwksURI == "" {
			k.jwksURI = meta.JWKSURI
		}
		if k.introspection == "" {
			k.introspection = meta.IntrospectionEndpoint
		}
		k.grants = boundedGrants(meta.GrantTypesSupported)
		jwksURI = k.jwksURI
		k.mu.Unlock()
	}
	if jwksURI == "" {
		err := fmt.Errorf("issuer %s publishes no jwks_uri; set jwks_uri", k.cfg.Issuer)
		if k.cfg.Introspection != nil {
			k.mu.Lock()
			k.loaded = true
			k.mu.Unlock()
			return nil
		}
		k.setErr(err)
		return err
	}
	set, maxAge, err := fetchJWKS(ctx, k.client, jwksURI)
	if err != nil {
		k.setErr(err)
		return err
	}
	keys := map[string]jose.JSONWebKey{}
	var anon []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Use == "enc" || !key.IsPublic() || !key.Valid() {
			continue // never a symmetric or private key, never an encryption key
		}
		if key.KeyID == "" {
			anon = append(anon, key)
		} else {
			keys[key.KeyID] = key
		}
	}
	tables := k.buildTables(keys, anon)
	k.mu.Lock()
	k.keys, k.anon, k.tables, k.loaded, k.lastErr, k.lastFetch, k.maxAge = keys, anon, tables, true, nil, k.now(), maxAge
	k.mu.Unlock()
	return nil
}

// buildTables precomputes ES256 verification tables for the P-256 keys of
// a fresh key set, reusing the tables of keys that were already loaded, so
// a periodic refresh costs nothing and a new key about 2 ms, off the
// request path except for an unknown-kid refetch.
func (k *issuerKeys) buildTables(keys map[string]jose.JSONWebKey, anon []jose.JSONWebKey) map[*ecdsa.PublicKey]*p256.PublicKey {
	if !slices.Contains(k.algs, jose.ES256) {
		return nil
	}
	k.mu.RLock()
	old := make(map[string]*p256.PublicKey, len(k.tables))
	for pub, t := range k.tables {
		if enc, err := pub.Bytes(); err == nil {
			old[string(enc)] = t
		}
	}
	k.mu.RUnlock()
	tables := map[*ecdsa.PublicKey]*p256.PublicKey{}
	add := func(key jose.JSONWebKey) {
		pub, ok := key.Key.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() || (key.Algorithm != "" && key.Algorithm != string(jose.ES256)) || len(tables) >= maxTables {
			return
		}
		enc, err := pub.Bytes()
		if err != nil {
			return
		}
		if t, ok := old[string(enc)]; ok {
			tables[pub] = t
		} else if t, err := p256.NewPublicKey(pub); err == nil {
			tables[pub] = t
		}
	}
	for _, key := range anon {
		add(key)
	}
	for _, key := range keys {
		add(key)
	}
	return tables
}

// table returns the precomputed table of pub, or nil.
func (k *issuerKeys) table(pub *ecdsa.PublicKey) *p256.PublicKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.tables[pub]
}

func (k *issuerKeys) setErr(err error) {
	k.mu.Lock()
	k.lastErr = err
	k.mu.Unlock()
}

// ready reports whether keys (or introspection) are usable.
func (k *issuerKeys) ready() error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.loaded {
		return nil
	}
	if k.lastErr != nil {
		return fmt.Errorf("issuer %s: %w", k.cfg.Issuer, k.lastErr)
	}
	return fmt.Errorf("issuer %s: keys not loaded yet", k.cfg.Issuer)
}

// candidates returns the keys a token with kid may be verified with. An
// unknown kid triggers one refetch at most every refetchInterval, shared by
// all concurrent callers.
func (k *issuerKeys) candidates(ctx context.Context, kid string) []jose.JSONWebKey {
	if ks := k.lookup(kid); len(ks) > 0 {
		return ks
	}
	k.mu.RLock()
	recent := k.now().Sub(k.lastFetch) < refetchInterval
	k.mu.RUnlock()
	if recent {
		return nil
	}
	_, _, _ = k.sf.Do("fetch", func() (any, error) {
		k.mu.Lock()
		if k.now().Sub(k.lastFetch) < refetchInterval {
			k.mu.Unlock()
			return nil, nil
		}
		k.lastFetch = k.now() // counts attempts, so failures are rate-limited too
		k.mu.Unlock()
		return nil, k.fetch(ctx)
	})
	return k.lookup(kid)
}

func (k *issuerKeys) lookup(kid string) []jose.JSONWebKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if kid != "" {
		if key, ok := k.keys[kid]; ok {
			return []jose.JSONWebKey{key}
		}
		return nil
	}
	out := append([]jose.JSONWebKey(nil), k.anon...)
	for _, key := range k.keys {
		out = append(out, key)
	}
	return out
}

func (k *issuerKeys) introspectionEndpoint() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.introspection
}

// asMetadata is what the gateway needs from RFC 8414 / OpenID metadata.
type asMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
	// GrantTypesSupported is kept to tell which grants the issuer offers
	// (extension declarations, Verifier.Grants); bounded when stored.
	GrantTypesSupported []string `json:"grant_types_supported"`
}

// MetadataURLs lists where an issuer's metadata may be, in order: RFC 8414
// (path inserted), OpenID Connect (path inserted, then appended). For an
// issuer without a path the variants coincide.
func MetadataURLs(issuer string) []string {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil
	}
	origin := u.Scheme + "://" + u.Host
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	if p == "" {
		return []string{origin + "/.well-known/oauth-authorization-server", origin + "/.well-known/openid-configuration"}
	}
	return []string{
		origin + "/.well-known/oauth-authorization-server" + p,
		origin + "/.well-known/openid-configuration" + p,
		origin + p + "/.well-known/openid-configuration",
	}
}

// discover fetches the issuer's metadata; its issuer member must equal the
// configured issuer exactly (RFC 8414 §3.3).
func discover(ctx context.Context, c *http.Client, issuer string) (*asMetadata, error) {
	var errs []error
	for _, u := range MetadataURLs(issuer) {
		var m asMetadata
		if _, err := getJSON(ctx, c, u, &m); err != nil {
			errs = append(errs, err)
			continue
		}
		if m.Issuer != issuer {
			return nil, fmt.Errorf("metadata at %s names issuer %q, want %q exactly", u, m.Issuer, issuer)
		}
		return &m, nil
	}
	return nil, fmt.Errorf("no authorization server metadata for %s: %w", issuer, errors.Join(errs...))
}

func fetchJWKS(ctx context.Context, c *http.Client, u string) (*jose.JSONWebKeySet, time.Duration, error) {
	var set jose.JSONWebKeySet
	h, err := getJSON(ctx, c, u, &set)
	if err != nil {
		return nil, 0, err
	}
	return &set, maxAgeOf(h.Get("Cache-Control")), nil
}

// maxAgeOf reads Cache-Control max-age, bounded to [5m, 24h]; default 1h.
func maxAgeOf(cc string) time.Duration {
	for _, part := range strings.Split(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "max-age="); ok {
			if secs, err := strconv.Atoi(v); err == nil {
				return min(max(time.Duration(secs)*time.Second, minRefresh), maxRefresh)
			}
		}
	}
	return defaultRefresh
}

func getJSON(ctx context.Context, c *http.Client, u string, v any) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(b) > maxDocBytes {
		return nil, fmt.Errorf("GET %s: document larger than %d bytes", u, maxDocBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("GET %s: not JSON: %w", u, err)
	}
	return resp.Header, nil
}
