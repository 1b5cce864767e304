package authserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Remote key sets (client jwks_uri, trusted IdPs, workload issuers) are
// fetched on demand by unauthenticated requests, so every fetch is
// budgeted: a set is kept keySetTTL; an unknown kid refetches it at most
// once per keySetMinRefresh; a failed fetch is not retried before
// keySetMinRefresh either; at most maxKeySets URLs are remembered.
const (
	keySetTTL        = 10 * time.Minute
	keySetMinRefresh = 30 * time.Second
	maxKeySets       = 1000
	maxKeySetBytes   = 256 << 10
)

// FetchFunc reads one document (a JWKS or a discovery document).
type FetchFunc func(ctx context.Context, url string) ([]byte, error)

// keySets caches JSON Web Key Sets by URL.
type keySets struct {
	now func() time.Time
	mu  sync.Mutex // guards sets and their entries
	// sets by URL.
	sets map[string]*keySetEntry
}

type keySetEntry struct {
	set   *jose.JSONWebKeySet // the last good set (nil before one arrived)
	setAt time.Time           // when set arrived
	tried time.Time           // the last fetch attempt (under way, or done)
	err   error               // of the last attempt, nil while one is under way
}

func newKeySets(now func() time.Time) *keySets {
	return &keySets{now: now, sets: map[string]*keySetEntry{}}
}

// keys returns the keys of the set at u that may verify a JWS with this
// kid ("" = every signing key), fetching the set when it is unknown, old,
// or lacks the kid — at most once per keySetMinRefresh. While a fetch is
// under way, others are served the last set (even if just past its
// keySetTTL, so that a routine refresh never fails requests); after a
// failed fetch the last set is served until it is keySetTTL old.
func (k *keySets) keys(ctx context.Context, u, kid string, fetch FetchFunc) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	e := k.sets[u]
	now := k.now()
	fresh := e != nil && e.set != nil && now.Sub(e.setAt) < keySetTTL
	if fresh {
		if ks := pick(e.set, kid); len(ks) > 0 {
			k.mu.Unlock()
			return ks, nil
		}
	}
	if e != nil && now.Sub(e.tried) < keySetMinRefresh {
		defer k.mu.Unlock() // fetched, or being fetched, just now: no second fetch
		switch {
		case e.set != nil && (fresh || e.err == nil):
			return pick(e.set, kid), nil
		case e.err != nil:
			return nil, e.err
		}
		return nil, errors.New("the key set is being fetched; retry")
	}
	if e == nil {
		k.evictLocked()
		e = &keySetEntry{}
		k.sets[u] = e
	}
	e.tried, e.err = now, nil
	k.mu.Unlock()

	set, err := fetchKeySet(ctx, u, fetch)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		e.err = err
		if fresh {
			return pick(e.set, kid), nil
		}
		return nil, err
	}
	e.set, e.setAt = set, now
	return pick(set, kid), nil
}

// evictLocked drops the oldest entry when the cache is full.
func (k *keySets) evictLocked() {
	if len(k.sets) < maxKeySets {
		return
	}
	var oldest string
	var at time.Time
	for u, e := range k.sets {
		if oldest == "" || e.tried.Before(at) {
			oldest, at = u, e.tried
		}
	}
	delete(k.sets, oldest)
}

func fetchKeySet(ctx context.Context, u string, fetch FetchFunc) (*jose.JSONWebKeySet, error) {
	body, err := fetch(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("fetching the key set %s: %v", u, err)
	}
	return parseKeySet(body)
}

// parseKeySet reads a JWKS; private keys are refused (a key set is
// public; one with private parts is a configuration mistake).
func parseKeySet(body []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("the key set is not a JWKS: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("the key set has no keys")
	}
	for _, key := range set.Keys {
		if !key.IsPublic() {
			return nil, errors.New("the key set holds a private key: publish public keys only")
		}
	}
	return &set, nil
}

// pick: the signing keys with this kid (every signing key for kid "").
func pick(set *jose.JSONWebKeySet, kid string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Use == "enc" || kid != "" && key.KeyID != kid {
			continue
		}
		out = append(out, key)
	}
	return out
}

// issuerFetcher fetches from an operator-configured issuer: TLS verified
// against the system roots plus caFile, no redirects, 5 s, 256 KiB. http
// is refused unless allowHTTP (loopback IdPs in tests; config validation
// allows it only for loopback hosts).
func issuerFetcher(caFile string, allowHTTP bool) (FetchFunc, error) {
	tr := &http.Transport{TLSHandshakeTimeout: 3 * time.Second, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the CA file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("redirects are not followed") }}
	return clientFetcher(c, allowHTTP), nil
}

// clientFetcher fetches with c (tests pass an httptest TLS client).
func clientFetcher(c *http.Client, allowHTTP bool) FetchFunc {
	return func(ctx context.Context, u string) ([]byte, error) {
		if !strings.HasPrefix(u, "https://") && !(allowHTTP && loopbackHTTPURL(u)) {
			return nil, fmt.Errorf("%s is not an https URL (keys are fetched over TLS only)", u)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxKeySetBytes+1))
		if err != nil {
			return nil, err
		}
		if len(b) > maxKeySetBytes {
			return nil, fmt.Errorf("larger than %d bytes", maxKeySetBytes)
		}
		return b, nil
	}
}

func loopbackHTTPURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http" && isLoopbackHost(u.Hostname())
}
