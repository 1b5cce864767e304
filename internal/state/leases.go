package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Leases are the per-subject budgets shared by every replica (sessions,
// streams, stdio children, tasks): one sorted set per (budget, owner) of
// lease ids scored by their expiry on Redis's clock, so that replicas'
// clocks do not matter. A replica acquires a lease when it creates the
// thing counted (one round trip, refused when the owner already holds its
// share of live leases), releases it when that ends (one round trip), and
// renews every lease it still holds on a heartbeat (Renew: one round trip
// per replica and heartbeat for all of them). A replica that dies stops
// renewing: its leases expire within ttl and the budget comes back.
//
// Keys: <prefix>lease:<budget>:<hex SHA-256 of owner>, members the hex
// SHA-256 of the caller's lease id (a session or task id is never a key
// or a member), the set expiring with its last lease; and <that>:m, a mark
// that lives ttl past the set's last acquire or renewal, so that a renewal
// tells a set emptied by releases from one Redis lost.
type Leases struct {
	r   *Redis
	ttl time.Duration
}

// NewLeases shares budgets on r; a lease not renewed for ttl expires.
func NewLeases(r *Redis, ttl time.Duration) *Leases { return &Leases{r: r, ttl: ttl} }

// TTL is how long a lease outlives its last renewal.
func (l *Leases) TTL() time.Duration { return l.ttl }

// Held is the leases one replica holds in one owner's set (Renew).
type Held struct {
	Budget, Owner string
	IDs           []string
}

// acquireScript: KEYS[1] the owner's set; ARGV[1] the member, ARGV[2]
// ttl ms, ARGV[3] the share. A member already in the set is renewed and
// granted (the same session adopted by a second replica counts once);
// otherwise expired members are pruned and the member added unless share
// live members are there. Returns 1 granted, 0 full.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, share = tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) <= now then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= share then return 0 end
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('SET', KEYS[2], '1', 'PX', ttl)
return 1
`)

// renameScript: KEYS[1] the owner's set; ARGV[1] the old member, ARGV[2]
// the new one, ARGV[3] ttl ms. The new member takes the old one's place
// (no share check: the place was granted).
var renameScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('SET', KEYS[2], '1', 'PX', ttl)
return 1
`)

// renewScript: KEYS pairs of an owner's set and its mark; ARGV[1] ttl
// ms, then for each pair its member count followed by its members.
// Members still in their set get a fresh expiry; a member another replica
// released (a session ended through it) is not written back, even when
// that emptied the set. A set whose mark is gone (Redis restarted empty,
// or an outage longer than the ttl let it lapse) is written again whole:
// what it counts still exists on this replica. The mark lives ttl past
// the last acquire or renewal by any replica. Expired members are pruned.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local i = 2
for k = 1, #KEYS, 2 do
  local n = tonumber(ARGV[i])
  i = i + 1
  local lost = redis.call('EXISTS', KEYS[k + 1]) == 0
  for j = 0, n - 1 do
    if lost then redis.call('ZADD', KEYS[k], now + ttl, ARGV[i + j])
    else redis.call('ZADD', KEYS[k], 'XX', now + ttl, ARGV[i + j]) end
  end
  i = i + n
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
  if redis.call('EXISTS', KEYS[k]) == 1 and redis.call('PTTL', KEYS[k]) < ttl then redis.call('PEXPIRE', KEYS[k], ttl) end
  redis.call('SET', KEYS[k + 1], '1', 'PX', ttl)
end
return 1
`)

// renewChunk bounds the members of one Renew script call, so that one
// replica's heartbeat never blocks Redis for long.
const renewChunk = 2000

func (l *Leases) key(budget, owner string) string {
	h := sha256.Sum256([]byte(owner))
	return l.r.Key("lease", budget, hex.EncodeToString(h[:]))
}

// keys are owner's set of budget and its mark (renewScript).
func (l *Leases) keys(budget, owner string) []string {
	k := l.key(budget, owner)
	return []string{k, k + ":m"}
}

func member(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:16])
}

func (l *Leases) ms() int64 { return max(l.ttl.Milliseconds(), 1) }

// Acquire takes lease id in owner's set of budget unless owner holds
// share live leases there already (ok false). An id owner holds already is
// renewed and granted. A Redis error wraps ErrUnavailable.
func (l *Leases) Acquire(ctx context.Context, budget, owner, id string, share int) (ok bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, l.r.timeout)
	defer cancel()
	n, err := acquireScript.Run(ctx, l.r.c, l.keys(budget, owner), member(id), l.ms(), share).Int()
	if err != nil {
		return false, l.r.safe(err)
	}
	return n == 1, nil
}

// Rename moves a granted lease from id to to (a reserved session place
// becomes the session's own lease once its id is known).
func (l *Leases) Rename(ctx context.Context, budget, owner, id, to string) error {
	ctx, cancel := context.WithTimeout(ctx, l.r.timeout)
	defer cancel()
	if err := renameScript.Run(ctx, l.r.c, l.keys(budget, owner), member(id), member(to), l.ms()).Err(); err != nil {
		return l.r.safe(err)
	}
	return nil
}

// Release gives lease id back. Releasing a lease not held is a no-op.
func (l *Leases) Release(ctx context.Context, budget, owner, id string) error {
	ctx, cancel := context.WithTimeout(ctx, l.r.timeout)
	defer cancel()
	if err := l.r.c.ZRem(ctx, l.key(budget, owner), member(id)).Err(); err != nil {
		return l.r.safe(err)
	}
	return nil
}

// Count is the number of live leases in owner's set of budget.
func (l *Leases) Count(ctx context.Context, budget, owner string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, l.r.timeout)
	defer cancel()
	t, err := l.r.c.Time(ctx).Result()
	if err != nil {
		return 0, l.r.safe(err)
	}
	n, err := l.r.c.ZCount(ctx, l.key(budget, owner), "("+strconv.FormatInt(t.UnixMilli(), 10), "+inf").Result()
	if err != nil {
		return 0, l.r.safe(err)
	}
	return int(n), nil
}

// Renew rewrites every lease in held with a fresh expiry: one round trip
// per renewChunk leases (one, for most replicas).
func (l *Leases) Renew(ctx context.Context, held []Held) error {
	var keys []string
	args := []any{l.ms()}
	members := 0
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		c, cancel := context.WithTimeout(ctx, l.r.timeout)
		defer cancel()
		err := renewScript.Run(c, l.r.c, keys, args...).Err()
		keys, args, members = nil, []any{l.ms()}, 0
		if err != nil {
			return l.r.safe(err)
		}
		return nil
	}
	for _, h := range held {
		for ids := h.IDs; len(ids) > 0; {
			n := min(len(ids), renewChunk-members)
			keys = append(keys, l.keys(h.Budget, h.Owner)...)
			args = append(args, n)
			for _, id := range ids[:n] {
				args = append(args, member(id))
			}
			ids, members = ids[n:], members+n
			if members >= renewChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}
