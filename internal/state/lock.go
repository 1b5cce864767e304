package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"
)

// A short mutual-exclusion lock shared by the replicas (SET NX PX with a
// random token; released only by its holder, by compare-and-delete). Its
// holder must finish within ttl: the lock then lapses on its own, so a
// replica that dies holding it blocks the others for ttl at most.

var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// TryLock takes the lock named key (a Key the caller built, hashed parts)
// for ttl. held is false when another holder has it.
func (r *Redis) TryLock(ctx context.Context, key string, ttl time.Duration) (unlock func(), held bool, err error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	c, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ok, err := r.c.SetNX(c, key, tok, ttl).Result()
	if err != nil {
		return nil, false, r.safe(err)
	}
	if !ok {
		return nil, false, nil
	}
	return func() {
		c, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		_ = unlockScript.Run(c, r.c, []string{key}, tok).Err()
	}, true, nil
}
