package authserver

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// errHashBusy: every hashing slot is taken and the queue is full, or the
// wait for a slot ran out. The sign-in answers 503 with Retry-After.
var errHashBusy = errors.New("password checking is busy")

// hashLimiter bounds password hashing, the one thing an unauthenticated
// caller can make the server do that costs real memory (argon2id: 64 MiB
// per check). At most `slots` checks run at once; at most `queue` more wait
// for a slot, each at most `wait`; anything beyond is refused at once, so
// neither memory nor waiting requests grow with the number of callers.
type hashLimiter struct {
	slots   chan struct{}
	queue   atomic.Int64
	maxWait int64
	wait    time.Duration

	active, peak atomic.Int64 // for tests and metrics
}

func newHashLimiter(slots, queue int, wait time.Duration) *hashLimiter {
	return &hashLimiter{slots: make(chan struct{}, slots), maxWait: int64(queue), wait: wait}
}

// run calls fn in a hashing slot.
func (l *hashLimiter) run(ctx context.Context, fn func()) error {
	select {
	case l.slots <- struct{}{}:
	default:
		if l.queue.Add(1) > l.maxWait {
			l.queue.Add(-1)
			return errHashBusy
		}
		t := time.NewTimer(l.wait)
		select {
		case l.slots <- struct{}{}:
			t.Stop()
			l.queue.Add(-1)
		case <-t.C:
			l.queue.Add(-1)
			return errHashBusy
		case <-ctx.Done():
			t.Stop()
			l.queue.Add(-1)
			return errHashBusy
		}
	}
	defer func() { <-l.slots }()
	n := l.active.Add(1)
	for {
		p := l.peak.Load()
		if n <= p || l.peak.CompareAndSwap(p, n) {
			break
		}
	}
	defer l.active.Add(-1)
	fn()
	return nil
}
