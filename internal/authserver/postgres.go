package authserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresStore keeps the state in PostgreSQL, so that several gateway
// replicas behind one public URL share one authorization server: flows,
// codes, clients, consents, refresh tokens and signing keys.
type PostgresStore struct {
	pool *pgxpool.Pool
}

const pgSchema = `CREATE TABLE IF NOT EXISTS mcpgate_authserver (
	bucket  text NOT NULL,
	key     text NOT NULL,
	value   bytea NOT NULL,
	expires timestamptz,
	PRIMARY KEY (bucket, key)
)`

// OpenPostgres connects with dsn and creates the table when missing.
func OpenPostgres(ctx context.Context, dsn string) (*PostgresStore, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("authorization server state (PostgreSQL): %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := pool.Exec(cctx, pgSchema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("authorization server state (PostgreSQL): %w", err)
	}
	return &PostgresStore{pool: pool}, nil
}

// Expiry is kept on the database's clock only: a row's expires is set
// from now() + ttl and compared with now() (Get, List, Take, PutCapped,
// Sweep), so that replicas whose clocks disagree — one writes a code,
// another takes it — still agree on when it expires.
const pgExpires = `now() + $4::float8 * interval '1 second'`

// ttlSeconds is the $4 of pgExpires: nil (SQL NULL, no expiry) for ttl <= 0.
func ttlSeconds(ttl time.Duration) *float64 {
	if ttl <= 0 {
		return nil
	}
	sec := ttl.Seconds()
	return &sec
}

func (s *PostgresStore) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

func (s *PostgresStore) Put(b, k string, v []byte, ttl time.Duration) error {
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.pool.Exec(ctx, `INSERT INTO mcpgate_authserver (bucket, key, value, expires) VALUES ($1, $2, $3, `+pgExpires+`)
		ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires`, b, k, v, ttlSeconds(ttl))
	return err
}

func (s *PostgresStore) Get(b, k string) ([]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM mcpgate_authserver WHERE bucket = $1 AND key = $2 AND (expires IS NULL OR expires > now())`, b, k).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

func (s *PostgresStore) Take(b, k string) ([]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var v []byte
	var dead bool
	err := s.pool.QueryRow(ctx, `DELETE FROM mcpgate_authserver WHERE bucket = $1 AND key = $2
		RETURNING value, expires IS NOT NULL AND expires <= now()`, b, k).Scan(&v, &dead)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && dead {
		return nil, nil
	}
	return v, err
}

func (s *PostgresStore) Delete(b, k string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.pool.Exec(ctx, `DELETE FROM mcpgate_authserver WHERE bucket = $1 AND key = $2`, b, k)
	return err
}

func (s *PostgresStore) List(b string) (map[string][]byte, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT key, value FROM mcpgate_authserver WHERE bucket = $1 AND (expires IS NULL OR expires > now())`, b)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

func (s *PostgresStore) Close() error {
	s.pool.Close()
	return nil
}
