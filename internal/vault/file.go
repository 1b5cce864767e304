package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/privfile"
)

// File stores each entry encrypted (AES-256-GCM, the entry's key as
// associated data) in its own 0600 file inside a 0700 directory. The
// encryption key comes from MCPGATE_VAULT_PASSPHRASE (PBKDF2-SHA256) or,
// without one, from a random key file (0600) next to the entries: the
// store then protects against copies of the entries (backups, sync
// folders) but not against someone who can read the whole directory as
// the user. docs/client.md explains the trade-off.
type File struct {
	dir  string
	aead cipher.AEAD
	mode string // "passphrase" or "key file"
}

const pbkdf2Iterations = 600_000

// OpenFile opens (creating) the file store in dir.
func OpenFile(dir, passphrase string) (*File, error) {
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	if err := ensureDir(filepath.Join(dir, "entries")); err != nil {
		return nil, err
	}
	var key []byte
	mode := "key file"
	if passphrase != "" {
		salt, err := readOrCreate(filepath.Join(dir, "vault.salt"), 16)
		if err != nil {
			return nil, err
		}
		key, err = pbkdf2.Key(sha256.New, passphrase, salt, pbkdf2Iterations, 32)
		if err != nil {
			return nil, err
		}
		mode = "passphrase"
	} else {
		var err error
		if key, err = readOrCreate(filepath.Join(dir, "vault.key"), 32); err != nil {
			return nil, err
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &File{dir: dir, aead: aead, mode: mode}, nil
}

// readOrCreate reads a random secret file, creating it 0600 when missing;
// it refuses one that other users can read. A new file is written whole
// under a temporary name and then hard-linked into place, which fails if
// the name exists: processes starting at once all end up with the one key
// that won, and none can read a key that is still being written.
func readOrCreate(path string, n int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(path, n)
	}
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("vault: %s is readable by other users (mode %v); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	if len(b) != n {
		return nil, fmt.Errorf("vault: %s is damaged (%d bytes, want %d); move it away to start a new vault", path, len(b), n)
	}
	return b, nil
}

// create publishes a new random secret of n bytes at path, or, when another
// process published one first, reads that one.
func create(path string, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	name, err := privfile.Temp(filepath.Dir(path), ".new-*", b)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	defer os.Remove(name)
	err = os.Link(name, path)
	if errors.Is(err, fs.ErrExist) {
		return readOrCreate(path, n) // another process published its key first
	}
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return b, nil
}

func (s *File) Name() string { return "file (" + s.mode + ", " + s.dir + ")" }

func (s *File) path(key string) string {
	h := sha256.Sum256([]byte(key))
	return filepath.Join(s.dir, "entries", hex.EncodeToString(h[:])+".json")
}

type fileEntry struct {
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

type plainEntry struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

func (s *File) Get(key string) ([]byte, error) {
	p, err := s.read(s.path(key))
	if err != nil || p == nil {
		return nil, err
	}
	if p.Key != key {
		return nil, fmt.Errorf("vault: entry %s belongs to another key", s.path(key))
	}
	return p.Value, nil
}

func (s *File) read(path string) (*plainEntry, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	var e fileEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("vault: %s is damaged: %v", path, err)
	}
	if len(e.Nonce) != s.aead.NonceSize() {
		return nil, fmt.Errorf("vault: %s is damaged (bad nonce)", path)
	}
	plain, err := s.aead.Open(nil, e.Nonce, e.Ciphertext, []byte(filepath.Base(path)))
	if err != nil {
		if s.mode == "passphrase" {
			return nil, fmt.Errorf("vault: cannot decrypt %s: wrong MCPGATE_VAULT_PASSPHRASE, or the entry was altered", path)
		}
		return nil, fmt.Errorf("vault: cannot decrypt %s: it was altered, or vault.key was replaced", path)
	}
	var p plainEntry
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, fmt.Errorf("vault: %s is damaged: %v", path, err)
	}
	return &p, nil
}

func (s *File) Put(key string, value []byte) error {
	plain, _ := json.Marshal(plainEntry{Key: key, Value: value})
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	path := s.path(key)
	raw, _ := json.Marshal(fileEntry{Nonce: nonce, Ciphertext: s.aead.Seal(nil, nonce, plain, []byte(filepath.Base(path)))})
	if err := privfile.Replace(path, raw); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	return nil
}

func (s *File) Delete(key string) error {
	err := os.Remove(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (s *File) List(prefix string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "entries"))
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p, err := s.read(filepath.Join(s.dir, "entries", e.Name()))
		if err != nil {
			return nil, err
		}
		if p != nil && strings.HasPrefix(p.Key, prefix) {
			out = append(out, p.Key)
		}
	}
	return out, nil
}

func (s *File) Lock(ctx context.Context, name string) (func(), error) {
	return lockFile(ctx, s.dir, name)
}

// lockFile takes an exclusive OS file lock for name under dir/locks,
// polling so that the wait follows ctx.
func lockFile(ctx context.Context, dir, name string) (func(), error) {
	ld := filepath.Join(dir, "locks")
	if err := ensureDir(ld); err != nil {
		return nil, err
	}
	h := sha256.Sum256([]byte(name))
	f, err := os.OpenFile(filepath.Join(ld, hex.EncodeToString(h[:16])+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("vault lock: %w", err)
	}
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("vault lock: %w", err)
		}
		if ok {
			return func() { _ = unlock(f); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the credential lock (another mcpgate process holds it): %w", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}
