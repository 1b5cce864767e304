package authserver

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"
)

// cappedStore is a Store that can insert into a bucket only while it
// holds fewer than max live entries, counted and inserted in one
// transaction (so that replicas sharing a database cannot overshoot), and
// delete expired entries (which Get and List skip but do not remove).
// MemoryStore, BoltStore and PostgresStore implement it.
type cappedStore interface {
	PutCapped(bucket, key string, value []byte, ttl time.Duration, max int) (bool, error)
	Sweep() (int, error)
}

// fallbackCapMu guards the count-then-put of putCapped for a Store that
// cannot do it atomically itself.
var fallbackCapMu sync.Mutex

// putCapped stores value under key unless bucket already holds max live
// entries; it reports whether it stored. An existing key is replaced and
// does not count twice.
func putCapped(st Store, bucket, key string, value []byte, ttl time.Duration, max int) (bool, error) {
	if cs, ok := st.(cappedStore); ok {
		return cs.PutCapped(bucket, key, value, ttl, max)
	}
	fallbackCapMu.Lock() // another Store: atomic in this process only
	defer fallbackCapMu.Unlock()
	all, err := st.List(bucket)
	if err != nil {
		return false, err
	}
	if _, replace := all[key]; !replace && len(all) >= max {
		return false, nil
	}
	return true, st.Put(bucket, key, value, ttl)
}

// Sweep deletes expired entries from the store (codes, flows, unused
// clients, refresh tokens, …), which would otherwise stay on disk. Call it
// periodically; the gateway does, hourly.
func (s *Server) Sweep() (int, error) {
	if cs, ok := s.cfg.Store.(cappedStore); ok {
		return cs.Sweep()
	}
	return 0, nil
}

func expired(raw []byte, now int64) bool {
	if len(raw) < 8 {
		return true
	}
	exp := int64(binary.BigEndian.Uint64(raw))
	return exp != 0 && now > exp
}

func (s *MemoryStore) PutCapped(b, k string, v []byte, ttl time.Duration, max int) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UnixNano()
	n := 0
	for key, raw := range s.m[b] {
		if expired(raw, now) {
			delete(s.m[b], key)
		} else if key != k {
			n++
		}
	}
	if n >= max {
		return false, nil
	}
	if s.m[b] == nil {
		s.m[b] = map[string][]byte{}
	}
	s.m[b][k] = encode(v, ttl)
	return true, nil
}

func (s *MemoryStore) Sweep() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, n := time.Now().UnixNano(), 0
	for _, bk := range s.m {
		for k, raw := range bk {
			if expired(raw, now) {
				delete(bk, k)
				n++
			}
		}
	}
	return n, nil
}

func (s *BoltStore) PutCapped(b, k string, v []byte, ttl time.Duration, max int) (bool, error) {
	stored := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte(b))
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		var dead [][]byte
		n := 0
		if err := bk.ForEach(func(key, raw []byte) error {
			if expired(raw, now) {
				dead = append(dead, append([]byte(nil), key...))
			} else if string(key) != k {
				n++
			}
			return nil
		}); err != nil {
			return err
		}
		for _, key := range dead {
			if err := bk.Delete(key); err != nil {
				return err
			}
		}
		if n >= max {
			return nil
		}
		stored = true
		return bk.Put([]byte(k), encode(v, ttl))
	})
	return stored && err == nil, err
}

func (s *BoltStore) Sweep() (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		now := time.Now().UnixNano()
		return tx.ForEach(func(_ []byte, bk *bolt.Bucket) error {
			var dead [][]byte
			if err := bk.ForEach(func(key, raw []byte) error {
				if raw != nil && expired(raw, now) {
					dead = append(dead, append([]byte(nil), key...))
				}
				return nil
			}); err != nil {
				return err
			}
			for _, key := range dead {
				if err := bk.Delete(key); err != nil {
					return err
				}
			}
			n += len(dead)
			return nil
		})
	})
	return n, err
}

func (s *PostgresStore) PutCapped(b, k string, v []byte, ttl time.Duration, max int) (bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	stored := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// one inserter per bucket at a time, across replicas
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('mcpgate_authserver/' || $1))`, b); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM mcpgate_authserver WHERE bucket = $1 AND expires IS NOT NULL AND expires <= now()`, b); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM mcpgate_authserver WHERE bucket = $1 AND key <> $2`, b, k).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO mcpgate_authserver (bucket, key, value, expires) VALUES ($1, $2, $3, `+pgExpires+`)
			ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires`, b, k, v, ttlSeconds(ttl)); err != nil {
			return err
		}
		stored = true
		return nil
	})
	return stored && err == nil, err
}

func (s *PostgresStore) Sweep() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM mcpgate_authserver WHERE expires IS NOT NULL AND expires <= now()`)
	return int(tag.RowsAffected()), err
}
