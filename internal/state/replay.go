package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/dpop"
)

// Replay is the DPoP jti store shared by every replica (dpop.OwnedReplayStore):
// a proof recorded by one replica is refused by all. One round trip per
// proof: a Lua script checks the jti, prunes and counts the owner's live
// entries and records the jti, atomically.
//
// Keys (scope separates the stores that are separate in memory mode: one
// per upstream, one for the built-in authorization server):
//
//	<prefix>jti:<scope>:<hex SHA-256 of thumbprint:jti>   string, PX = the proof's window
//	<prefix>jtio:<scope>:<hex SHA-256 of owner>          sorted set of the owner's live jtis,
//	                                                      scored by expiry (ms, Redis clock)
//
// The per-owner share (limits.dpop_replay_per_subject) holds across
// replicas. The total (limits.dpop_replay_entries) is Redis's maxmemory: a
// Redis out of memory refuses the write and the proof fails closed (503),
// provided maxmemory-policy is noeviction — an evicting policy would forget
// jtis and let replays through (docs/security.md "Shared state").
type Replay struct {
	r     *Redis
	scope string
	share int
	now   func() time.Time
}

// NewReplay is the shared jti store named scope, at most share live
// entries per owner (0: no share).
func NewReplay(r *Redis, scope string, share int) *Replay {
	return &Replay{r: r, scope: scope, share: max(share, 0), now: time.Now}
}

// replayScript: KEYS[1] the jti key, KEYS[2] the owner's set (or "" when
// there is no share); ARGV[1] the ttl in ms, ARGV[2] the share, ARGV[3]
// the set member. Returns 1 for a replay, 2 for a full share, 0 recorded.
// The SET comes first among the writes: Redis checks maxmemory only before
// a script's first write, so an out-of-memory Redis refuses the record
// instead of letting a pruning write slip the check.
var replayScript = redis.NewScript(`
local ttl = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local share = tonumber(ARGV[2])
local now = 0
if share > 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf') >= share then return 2 end
end
redis.call('SET', KEYS[1], '1', 'PX', ttl)
if share > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
  if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return 0
`)

// Seen implements dpop.ReplayStore: SeenBy with one anonymous owner.
func (s *Replay) Seen(ctx context.Context, key string, until time.Time) (bool, error) {
	return s.SeenBy(ctx, "", key, until)
}

// SeenBy implements dpop.OwnedReplayStore. A Redis error is
// dpop.ErrReplayUnavailable: the proof is refused, never accepted.
func (s *Replay) SeenBy(ctx context.Context, owner, key string, until time.Time) (bool, error) {
	ttl := until.Sub(s.now()).Milliseconds()
	if ttl < 1 {
		ttl = 1 // expired already: the iat check refuses it next time
	}
	h := sha256.Sum256([]byte(key))
	jti := s.r.Key("jti", s.scope, hex.EncodeToString(h[:]))
	keys := []string{jti, jti} // the second key is unused without a share
	if s.share > 0 {
		o := sha256.Sum256([]byte(owner))
		keys[1] = s.r.Key("jtio", s.scope, hex.EncodeToString(o[:]))
	}
	ctx, cancel := context.WithTimeout(ctx, s.r.Timeout())
	defer cancel()
	n, err := replayScript.Run(ctx, s.r.Client(), keys, ttl, s.share, h[:16]).Int()
	switch {
	case err != nil:
		return false, fmt.Errorf("%w: %w", dpop.ErrReplayUnavailable, s.r.safe(err))
	case n == 1:
		return true, nil
	case n == 2:
		return false, dpop.ErrReplayShareFull
	}
	return false, nil
}

var _ dpop.OwnedReplayStore = (*Replay)(nil)
