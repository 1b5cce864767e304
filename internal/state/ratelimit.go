package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"
)

// Buckets are the shared token buckets of the per-subject rate limit
// (limits.requests_per_second, limits.burst): one bucket per subject for
// the whole deployment, refilled by Redis's clock so that replicas' clocks
// do not matter. A replica takes tokens in batches (Take) and spends them
// locally (internal/gateway/limits.go), so that a busy subject costs one
// round trip per batch, not per request.
//
// Key: <prefix>rl:<hex SHA-256 of subject>, a hash {t: tokens, ts: ms},
// expiring when it would be full again.
type Buckets struct {
	r           *Redis
	rate, burst float64
}

// NewBuckets shares buckets of rate tokens per second and burst tokens.
func NewBuckets(r *Redis, rate float64, burst int) *Buckets {
	return &Buckets{r: r, rate: rate, burst: float64(burst)}
}

// takeScript: KEYS[1] the bucket; ARGV[1] rate per second, ARGV[2] burst,
// ARGV[3] tokens wanted. Returns {granted, ms until one token}.
var takeScript = redis.NewScript(`
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
if now > ts then tokens = math.min(burst, tokens + (now - ts) / 1000 * rate) end
local got = math.min(want, math.floor(tokens))
if got < 0 then got = 0 end
tokens = tokens - got
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
local wait = 0
if got == 0 then wait = math.ceil((1 - tokens) / rate * 1000) end
return {got, wait}
`)

// Take takes up to want tokens from key's bucket: the tokens granted
// (0..want) and, when none was, how long until one is. A Redis error
// wraps ErrUnavailable.
func (b *Buckets) Take(ctx context.Context, key string, want int) (int, time.Duration, error) {
	h := sha256.Sum256([]byte(key))
	ctx, cancel := context.WithTimeout(ctx, b.r.Timeout())
	defer cancel()
	v, err := takeScript.Run(ctx, b.r.Client(), []string{b.r.Key("rl", hex.EncodeToString(h[:]))}, b.rate, b.burst, want).Int64Slice()
	if err != nil {
		return 0, 0, b.r.safe(err)
	}
	if len(v) != 2 {
		return 0, 0, b.r.safe(errUnexpected)
	}
	return int(v[0]), time.Duration(v[1]) * time.Millisecond, nil
}
