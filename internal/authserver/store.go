package authserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Store keeps the authorization server's state: clients, consents,
// authorization codes, refresh tokens, signing keys. Values are opaque
// bytes with an optional expiry.
type Store interface {
	Put(bucket, key string, value []byte, ttl time.Duration) error
	// Get returns nil for a missing or expired entry.
	Get(bucket, key string) ([]byte, error)
	// Take returns and deletes an entry atomically (single-use codes).
	Take(bucket, key string) ([]byte, error)
	Delete(bucket, key string) error
	// List returns the live entries of a bucket.
	List(bucket string) (map[string][]byte, error)
	Close() error
}

// entry encoding: 8 bytes expiry (unix nanoseconds, 0 = never) + value.
func encode(v []byte, ttl time.Duration) []byte {
	out := make([]byte, 8+len(v))
	if ttl > 0 {
		binary.BigEndian.PutUint64(out, uint64(time.Now().Add(ttl).UnixNano()))
	}
	copy(out[8:], v)
	return out
}

func decode(raw []byte) []byte {
	if len(raw) < 8 {
		return nil
	}
	if exp := int64(binary.BigEndian.Uint64(raw)); exp != 0 && time.Now().UnixNano() > exp {
		return nil
	}
	return append([]byte(nil), raw[8:]...)
}

// MemoryStore keeps everything in memory (tests; nothing survives a
// restart).
type MemoryStore struct {
	mu sync.Mutex // guards m
	m  map[string]map[string][]byte
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{m: map[string]map[string][]byte{}} }

func (s *MemoryStore) Put(b, k string, v []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[b] == nil {
		s.m[b] = map[string][]byte{}
	}
	s.m[b][k] = encode(v, ttl)
	return nil
}

func (s *MemoryStore) Get(b, k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return decode(s.m[b][k]), nil
}

func (s *MemoryStore) Take(b, k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := decode(s.m[b][k])
	delete(s.m[b], k)
	return v, nil
}

func (s *MemoryStore) Delete(b, k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m[b], k)
	return nil
}

func (s *MemoryStore) List(b string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k, raw := range s.m[b] {
		if v := decode(raw); v != nil {
			out[k] = v
		}
	}
	return out, nil
}

func (s *MemoryStore) Close() error { return nil }

// BoltStore is the embedded default: one bbolt file (0600) that keeps
// clients, grants, refresh tokens and keys across restarts.
type BoltStore struct {
	db *bolt.DB
}

// OpenBolt opens (creating) the database at path; its directory is made
// 0700 and the file 0600. A world-readable existing file is refused: it
// holds signing keys.
func OpenBolt(path string) (*BoltStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("authorization server state: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("authorization server state %s is readable by other users (mode %v): it holds signing keys; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 3 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("authorization server state %s is locked by another process (one gateway per file; use PostgreSQL for several replicas)", path)
		}
		return nil, fmt.Errorf("authorization server state %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

func (s *BoltStore) Put(b, k string, v []byte, ttl time.Duration) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte(b))
		if err != nil {
			return err
		}
		return bk.Put([]byte(k), encode(v, ttl))
	})
}

func (s *BoltStore) Get(b, k string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket([]byte(b)); bk != nil {
			out = decode(bk.Get([]byte(k)))
		}
		return nil
	})
	return out, err
}

func (s *BoltStore) Take(b, k string) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(b))
		if bk == nil {
			return nil
		}
		out = decode(bk.Get([]byte(k)))
		return bk.Delete([]byte(k))
	})
	return out, err
}

func (s *BoltStore) Delete(b, k string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if bk := tx.Bucket([]byte(b)); bk != nil {
			return bk.Delete([]byte(k))
		}
		return nil
	})
}

func (s *BoltStore) List(b string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(b))
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, raw []byte) error {
			if v := decode(raw); v != nil {
				out[string(k)] = v
			}
			return nil
		})
	})
	return out, err
}

func (s *BoltStore) Close() error { return s.db.Close() }

// ttlUntil is the store TTL of an entry that must be gone at t. Store
// treats a TTL of 0 or less as "never expires", so a deadline that has
// just passed is clamped to one second instead of becoming eternal.
func ttlUntil(t time.Time) time.Duration {
	return max(time.Until(t), time.Second)
}
