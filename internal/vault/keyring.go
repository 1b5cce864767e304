package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/zalando/go-keyring"
)

const keyringService = "mcpgate"

// indexKey holds the list of keys (keyrings cannot be enumerated).
const indexKey = "mcpgate:index"

// Keyring stores entries in the OS keyring; locks are file locks in dir.
type Keyring struct {
	dir string
}

// OpenKeyring probes the OS keyring with a throwaway entry.
func OpenKeyring(dir string) (*Keyring, error) {
	probe := "mcpgate:probe"
	if err := keyring.Set(keyringService, probe, "ok"); err != nil {
		return nil, fmt.Errorf("OS keyring unavailable: %w", err)
	}
	if v, err := keyring.Get(keyringService, probe); err != nil || v != "ok" {
		return nil, fmt.Errorf("OS keyring does not return what was stored: %v", err)
	}
	_ = keyring.Delete(keyringService, probe)
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	return &Keyring{dir: dir}, nil
}

func (s *Keyring) Name() string { return "keyring" }

func (s *Keyring) Get(key string) ([]byte, error) {
	v, err := keyring.Get(keyringService, key)
	if errors.Is(err, keyring.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("keyring entry %q is not mcpgate's", key)
	}
	return b, nil
}

func (s *Keyring) Put(key string, value []byte) error {
	if err := keyring.Set(keyringService, key, base64.StdEncoding.EncodeToString(value)); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	return s.updateIndex(func(keys []string) []string {
		if !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
		return keys
	})
}

func (s *Keyring) Delete(key string) error {
	if err := keyring.Delete(keyringService, key); err != nil && !errors.Is(err, keyring.ErrNotFound) {
		return fmt.Errorf("keyring: %w", err)
	}
	return s.updateIndex(func(keys []string) []string {
		return slices.DeleteFunc(keys, func(k string) bool { return k == key })
	})
}

func (s *Keyring) index() ([]string, error) {
	raw, err := s.Get(indexKey)
	if err != nil || raw == nil {
		return nil, err
	}
	var keys []string
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, fmt.Errorf("keyring index is damaged: %v", err)
	}
	return keys, nil
}

func (s *Keyring) updateIndex(f func([]string) []string) error {
	unlock, err := lockFile(context.Background(), s.dir, "keyring-index")
	if err != nil {
		return err
	}
	defer unlock()
	keys, err := s.index()
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(f(keys))
	if err := keyring.Set(keyringService, indexKey, base64.StdEncoding.EncodeToString(raw)); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	return nil
}

func (s *Keyring) List(prefix string) ([]string, error) {
	keys, err := s.index()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (s *Keyring) Lock(ctx context.Context, name string) (func(), error) {
	return lockFile(ctx, s.dir, name)
}
