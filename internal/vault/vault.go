// Package vault stores mcpgate's client credentials: the OS keyring
// (Keychain, Windows Credential Manager, Secret Service), an encrypted
// file store for headless machines, and memory. Every backend offers a
// lock shared by all of the user's processes, so that a rotating refresh
// token is redeemed once however many mcpgate processes need it.
package vault

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Store is the credential store. Get returns (nil, nil) for a missing key.
type Store interface {
	Get(key string) ([]byte, error)
	Put(key string, value []byte) error
	Delete(key string) error
	List(prefix string) ([]string, error)
	Lock(ctx context.Context, name string) (unlock func(), err error)
	// Name says which backend this is (status output).
	Name() string
}

// Dir is the default vault directory: <user config dir>/mcpgate.
func Dir(getenv func(string) string) (string, error) {
	if d := getenv("MCPGATE_CONFIG_DIR"); d != "" {
		return d, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no user config directory (%v); set MCPGATE_CONFIG_DIR", err)
	}
	return filepath.Join(base, "mcpgate"), nil
}

// ensureDir creates dir with mode 0700 and tightens an existing one.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("vault directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("vault directory %s is accessible to other users and cannot be fixed: %w", dir, err)
		}
	}
	return nil
}

// Open returns the store for kind: auto, keyring, file or memory. auto
// tries the keyring and falls back to the file store, saying so on notice.
func Open(kind, dir string, getenv func(string) string, notice io.Writer) (Store, error) {
	switch kind {
	case "memory":
		return NewMemory(), nil
	case "file":
		return OpenFile(dir, getenv("MCPGATE_VAULT_PASSPHRASE"))
	case "keyring":
		return OpenKeyring(dir)
	case "", "auto":
		k, err := OpenKeyring(dir)
		if err == nil {
			return k, nil
		}
		f, ferr := OpenFile(dir, getenv("MCPGATE_VAULT_PASSPHRASE"))
		if ferr != nil {
			return nil, ferr
		}
		if notice != nil {
			fmt.Fprintf(notice, "mcpgate: no OS keyring available (%v); using the encrypted file store in %s\n", err, dir)
		}
		return f, nil
	}
	return nil, fmt.Errorf("--store %q: use auto, keyring, file or memory", kind)
}

// Memory keeps credentials in the process (tests, CI, --store memory).
type Memory struct {
	mu    sync.Mutex // guards m and locks
	m     map[string][]byte
	locks map[string]chan struct{}
}

// NewMemory returns an empty memory store.
func NewMemory() *Memory {
	return &Memory{m: map[string][]byte{}, locks: map[string]chan struct{}{}}
}

func (s *Memory) Name() string { return "memory" }

func (s *Memory) Get(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, nil
	}
	return append([]byte(nil), v...), nil
}

func (s *Memory) Put(key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = append([]byte(nil), value...)
	return nil
}

func (s *Memory) Delete(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

func (s *Memory) List(prefix string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.m {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			out = append(out, k)
		}
	}
	return out, nil
}

func (s *Memory) Lock(ctx context.Context, name string) (func(), error) {
	s.mu.Lock()
	ch, ok := s.locks[name]
	if !ok {
		ch = make(chan struct{}, 1)
		s.locks[name] = ch
	}
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-ch }) }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the credential lock %q: %w", name, ctx.Err())
	}
}
