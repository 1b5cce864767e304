package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/state"
	"github.com/mcpgate/mcpgate/internal/upstream"
)

// rateLimiter is a token bucket per subject. Buckets idle long enough to
// be full again are dropped, so the table stays bounded by active callers.
// With shared state (state.redis) the bucket is the deployment's, in
// Redis, borrowed from in batches (sharedRate); this one is then only the
// fallback while Redis is unreachable.
type rateLimiter struct {
	rate   float64 // tokens per second; 0 disables
	burst  float64
	now    func() time.Time
	shared *sharedRate // nil in memory mode

	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), now: time.Now, buckets: map[string]*bucket{}}
}

// allow takes one token for key; when none is left it returns false and how
// long until one is.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	if l.shared != nil {
		return l.shared.allow(key)
	}
	return l.allowLocal(key)
}

// allowLocal is allow on this replica's own buckets.
func (l *rateLimiter) allowLocal(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > time.Minute {
		l.sweep = now
		full := time.Duration(l.burst / l.rate * float64(time.Second))
		for k, b := range l.buckets {
			if now.Sub(b.last) > full {
				delete(l.buckets, k)
			}
		}
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
		return false, wait
	}
	b.tokens--
	return true, 0
}

// Borrowing from the shared bucket. A replica that has spent what it
// borrowed takes the next batch with one round trip (state.Buckets.Take);
// a subject that spends its batch within stashTTL doubles its next batch,
// up to maxBatch; one that does not starts again at one. Borrowed tokens
// unused after stashTTL are dropped (they count as spent). So a quiet
// subject costs one round trip per request, a busy one 1/maxBatch, and in
// any interval a subject gets at most burst + rate×interval +
// replicas×maxBatch requests through (the tokens borrowed before the
// interval): the tolerance in docs/security.md "Shared state".
const (
	stashTTL = time.Second
	// sharedDownFor is how long a replica uses its local buckets after a
	// Redis error before it tries Redis again, so that an outage costs one
	// timeout per sharedDownFor, not one per request.
	sharedDownFor = time.Second
)

// maxBatchFor is the largest batch for burst: an eighth of it, 1..16.
func maxBatchFor(burst int) int { return min(16, max(1, burst/8)) }

// sharedRate is the rate limit on the deployment's shared buckets.
//
// Redis unreachable: the limit falls back to this replica's own buckets
// (rateLimiter.allowLocal) instead of refusing every caller: the limit
// protects capacity, not a security decision (the DPoP replay check and
// the session checks still fail closed), and every request it applies to
// is already authenticated. During an outage a subject gets at most
// replicas × its limit.
type sharedRate struct {
	buckets  *state.Buckets
	local    *rateLimiter
	maxBatch int
	log      *slog.Logger

	mu        sync.Mutex // guards the fields below
	stash     map[string]*borrowed
	downUntil time.Time // local buckets only until then
	sweep     time.Time
}

// borrowed is what this replica holds of one subject's shared bucket.
type borrowed struct {
	n     int       // tokens left to spend
	exp   time.Time // n is dropped then
	batch int       // size of the last batch taken
}

func newSharedRate(b *state.Buckets, local *rateLimiter, burst int, log *slog.Logger) *sharedRate {
	return &sharedRate{buckets: b, local: local, maxBatch: maxBatchFor(burst), log: log, stash: map[string]*borrowed{}}
}

// allow spends a borrowed token, or borrows a batch first.
func (s *sharedRate) allow(key string) (bool, time.Duration) {
	now := s.local.now()
	want, local := s.spend(key, now)
	switch {
	case local:
		return s.local.allowLocal(key)
	case want == 0:
		return true, 0
	}
	got, wait, err := s.buckets.Take(context.Background(), key, want)
	if err != nil {
		s.failed(now, err)
		return s.local.allowLocal(key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.stash[key]
	if b == nil || now.After(b.exp) {
		b = &borrowed{}
		s.stash[key] = b
	}
	b.n, b.exp, b.batch = b.n+got, now.Add(stashTTL), want
	if b.n < 1 {
		return false, max(wait, time.Millisecond)
	}
	b.n--
	return true, 0
}

// spend takes a borrowed token of key (want 0), or says how many to
// borrow, or that Redis is down (local).
func (s *sharedRate) spend(key string, now time.Time) (want int, local bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.downUntil) {
		return 0, true
	}
	if now.Sub(s.sweep) > time.Minute {
		s.sweep = now
		for k, b := range s.stash {
			if now.After(b.exp) {
				delete(s.stash, k)
			}
		}
	}
	b := s.stash[key]
	if b == nil || now.After(b.exp) {
		return 1, false
	}
	if b.n > 0 {
		b.n--
		return 0, false
	}
	return min(2*b.batch, s.maxBatch), false // spent within stashTTL: busy
}

// failed switches to the local buckets for sharedDownFor.
func (s *sharedRate) failed(now time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.downUntil) {
		return
	}
	s.downUntil = now.Add(sharedDownFor)
	s.log.Warn("rate limit: shared buckets unreachable; using this replica's buckets", "err", err, "retry_in", sharedDownFor.String())
}

// streamLimiter bounds concurrent long-lived streams per subject: on this
// replica, and with shared budgets (Redis mode) over the deployment, each
// stream holding a lease from open to end.
type streamLimiter struct {
	max    int
	shared *leaseBudget // nil in memory mode

	mu     sync.Mutex // guards open and leases
	open   map[string]int
	leases map[string]map[string]struct{} // the leases of open streams, by subject (shared only)
}

func newStreamLimiter(max int) *streamLimiter {
	return &streamLimiter{max: max, open: map[string]int{}, leases: map[string]map[string]struct{}{}}
}

// streamRefusal is why a stream was not opened; nil: it was.
type streamRefusal = upstream.LimitError

// acquire reserves a stream slot for key; release(key, lease) must run
// when it ends. With shared budgets the subject's open streams over every
// replica count: a full share refuses (PerSubject), a Redis error too
// (Unavailable).
func (s *streamLimiter) acquire(key string) (lease string, refused *streamRefusal) {
	s.mu.Lock()
	if s.open[key] >= s.max {
		s.mu.Unlock()
		return "", &streamRefusal{PerSubject: true, Limit: s.max}
	}
	s.open[key]++
	s.mu.Unlock()
	if s.shared == nil {
		return "", nil
	}
	lease = newStreamLease()
	if err := s.shared.Acquire(key, lease, s.max); err != nil {
		s.releaseLocal(key)
		return "", leaseRefusal(err)
	}
	s.mu.Lock()
	set := s.leases[key]
	if set == nil {
		set = map[string]struct{}{}
		s.leases[key] = set
	}
	set[lease] = struct{}{}
	s.mu.Unlock()
	return lease, nil
}

// release ends the stream acquire admitted with lease.
func (s *streamLimiter) release(key, lease string) {
	s.releaseLocal(key)
	if lease == "" || s.shared == nil {
		return
	}
	s.mu.Lock()
	delete(s.leases[key], lease)
	if len(s.leases[key]) == 0 {
		delete(s.leases, key)
	}
	s.mu.Unlock()
	s.shared.Release(key, lease)
}

func (s *streamLimiter) releaseLocal(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[key]--; s.open[key] <= 0 {
		delete(s.open, key)
	}
}

// held lists the leases of this replica's open streams (the heartbeat).
func (s *streamLimiter) held() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]string, len(s.leases))
	for key, set := range s.leases {
		for l := range set {
			out[key] = append(out[key], l)
		}
	}
	return out
}

// newStreamLease is a random lease id.
func newStreamLease() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
