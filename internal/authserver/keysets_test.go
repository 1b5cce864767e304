package authserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestKeySetsBudgetAndRefresh: a set is fetched once, refetched for an
// unknown kid only after keySetMinRefresh, refreshed after keySetTTL;
// a failed refresh serves the last good set until it is keySetTTL old,
// then fails; the cache never holds more than maxKeySets URLs.
func TestKeySetsBudgetAndRefresh(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	k := newKeySets(func() time.Time { return now })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "a"}}})
	fetches, fail := 0, false
	fetch := func(context.Context, string) ([]byte, error) {
		fetches++
		if fail {
			return nil, errors.New("down")
		}
		return body, nil
	}
	get := func(kid string) int {
		ks, err := k.keys(context.Background(), "https://x/jwks", kid, fetch)
		if err != nil {
			return -1
		}
		return len(ks)
	}
	if get("a") != 1 || get("a") != 1 || fetches != 1 {
		t.Fatalf("known kid: %d fetches, want 1", fetches)
	}
	if get("b") != 0 || get("b") != 0 || fetches != 1 {
		t.Fatalf("unknown kid within %s: %d fetches, want 1", keySetMinRefresh, fetches)
	}
	now = now.Add(keySetMinRefresh)
	if get("b") != 0 || fetches != 2 {
		t.Fatalf("unknown kid after %s: %d fetches, want 2", keySetMinRefresh, fetches)
	}
	now = now.Add(keySetTTL - time.Second) // the set fetched for kid b is still fresh
	fail = true
	if get("a") != 1 || fetches != 2 {
		t.Fatalf("fresh set: %d fetches", fetches)
	}
	now = now.Add(2 * time.Second) // the set is now past its TTL and the refresh fails
	if get("a") != -1 || fetches != 3 {
		t.Fatalf("stale set with a failing refresh: want an error after 3 fetches, got %d fetches", fetches)
	}
	if get("a") != -1 || fetches != 3 {
		t.Fatal("a failed fetch was retried within the budget")
	}
	for i := 0; i < maxKeySets+10; i++ {
		_, _ = k.keys(context.Background(), "https://x/"+randomID(6), "", fetch)
	}
	if len(k.sets) > maxKeySets {
		t.Fatalf("%d cached URLs, want at most %d", len(k.sets), maxKeySets)
	}
}

// TestKeySetsServeDuringRefresh: while a refresh of a stale set is under
// way, other requests are served the last set instead of failing.
func TestKeySetsServeDuringRefresh(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	k := newKeySets(func() time.Time { return now })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "a"}}})
	started, release := make(chan struct{}), make(chan struct{})
	first := true
	fetch := func(context.Context, string) ([]byte, error) {
		if !first {
			close(started)
			<-release
		}
		first = false
		return body, nil
	}
	if ks, err := k.keys(context.Background(), "u", "a", fetch); err != nil || len(ks) != 1 {
		t.Fatal(err)
	}
	now = now.Add(keySetTTL + time.Second)
	done := make(chan error)
	go func() { _, err := k.keys(context.Background(), "u", "a", fetch); done <- err }()
	<-started
	ks, err := k.keys(context.Background(), "u", "a", fetch)
	close(release)
	if err != nil || len(ks) != 1 {
		t.Fatalf("during a refresh: %v, %d keys; want the last set", err, len(ks))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
