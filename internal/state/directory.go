package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Directory is where replicas find each other's bindings: which subject
// owns a session, a task or a parked Multi Round-Trip request, and which
// replica holds its upstream connection when one does (stdio children,
// legacy SSE connections, task hosts). Keys hash the caller-chosen id
// with the upstream's name, so that neither leaks into key names and no
// id can collide with another key's syntax:
//
//	<prefix>dir:<kind>:<hex sha256(upstream NUL id)>  →  JSON Entry, PX = the binding's idle timeout
//
// One Redis round trip per operation, each bounded by state.redis.timeout.
// A caller that gets an error must fail closed (503), never treat the id
// as unknown-but-fine or skip the ownership check.
type Directory struct {
	r *Redis
}

// NewDirectory returns the directory on r.
func NewDirectory(r *Redis) *Directory { return &Directory{r: r} }

// Kinds of bindings.
const (
	KindSession = "sess" // an MCP session (2025-era Mcp-Session-Id)
	KindTask    = "task" // a task id (Tasks extension)
	KindState   = "mrtr" // a parked Multi Round-Trip requestState
	KindLegacy  = "sse"  // a 2024-11-05 HTTP+SSE front session (?sessionId=)
)

// Entry is one binding as every replica sees it.
type Entry struct {
	// Owner is the issuer and subject the binding belongs to (the gateway's
	// owner key); only that caller may use it.
	Owner string `json:"o"`
	// ClientID is the OAuth client the binding was created through.
	ClientID string `json:"c,omitempty"`
	// Tool is the tool whose call created a task (its policy applies).
	Tool string `json:"t,omitempty"`
	// Held says the upstream connection lives in one replica (stdio, sse):
	// only Replica, and only its Instance, can serve the binding.
	Held bool `json:"h,omitempty"`
	// Replica is the advertise URL of the replica holding the upstream
	// connection; "" when the binding lives at the upstream itself
	// (Streamable HTTP) and any replica serves it, or when the holding
	// replica has no state.replica.advertise_url (then no other replica can
	// reach it).
	Replica string `json:"r,omitempty"`
	// Instance is the holding replica's process instance (random per
	// start): a replica restarted on the same URL knows the entry is not
	// its own.
	Instance string `json:"i,omitempty"`
}

// key is the Redis key of kind id on upstream.
func (d *Directory) key(kind, upstream, id string) string {
	h := sha256.Sum256([]byte(upstream + "\x00" + id))
	return d.r.Key("dir", kind, hex.EncodeToString(h[:]))
}

func (d *Directory) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.r.timeout)
}

// Put records e for id, for ttl. It refuses (ok false, no error) when id is
// already bound to another owner: an id two subjects got must not merge
// their bindings. An existing entry of the same owner is replaced.
func (d *Directory) Put(ctx context.Context, kind, upstream, id string, e Entry, ttl time.Duration) (ok bool, err error) {
	b, _ := json.Marshal(e)
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	k := d.key(kind, upstream, id)
	set, err := d.r.c.SetNX(ctx, k, b, ttl).Result()
	if err != nil {
		return false, unavailable(err)
	}
	if set {
		return true, nil
	}
	old, err := d.get(ctx, k)
	if err != nil || old == nil {
		return false, err // vanished in between: the caller retries the initialize
	}
	if old.Owner != e.Owner {
		return false, nil
	}
	if err := d.r.c.Set(ctx, k, b, ttl).Err(); err != nil {
		return false, unavailable(err)
	}
	return true, nil
}

// Get returns the entry of id, nil when there is none.
func (d *Directory) Get(ctx context.Context, kind, upstream, id string) (*Entry, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	return d.get(ctx, d.key(kind, upstream, id))
}

func (d *Directory) get(ctx context.Context, k string) (*Entry, error) {
	b, err := d.r.c.Get(ctx, k).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil || e.Owner == "" {
		return nil, fmt.Errorf("shared state (Redis): malformed directory entry")
	}
	return &e, nil
}

// Touch extends id's entry to ttl from now; ok is false when there is no
// entry. Callers bound how often they touch (once per half the TTL,
// not once per request).
func (d *Directory) Touch(ctx context.Context, kind, upstream, id string, ttl time.Duration) (ok bool, err error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	ok, err = d.r.c.PExpire(ctx, d.key(kind, upstream, id), ttl).Result()
	if err != nil {
		return false, unavailable(err)
	}
	return ok, nil
}

// Delete removes id's entry (the session was deleted or expired).
func (d *Directory) Delete(ctx context.Context, kind, upstream, id string) error {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	if err := d.r.c.Del(ctx, d.key(kind, upstream, id)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// UnavailableError is a failed Redis round trip: the caller answers 503
// with Retry-After and never treats it as "not found".
type UnavailableError struct{ err error }

func (e *UnavailableError) Error() string {
	return "shared state (Redis) unavailable: " + e.err.Error()
}

func (e *UnavailableError) Unwrap() error { return e.err }

func unavailable(err error) error { return &UnavailableError{err: err} }
