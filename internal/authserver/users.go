package authserver

import (
	"bufio"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Users are local accounts from a password file: one "name:hash" per
// line, hash in argon2id ($argon2id$v=19$m=…,t=…,p=…$salt$key) or bcrypt
// ($2a$/$2b$/$2y$) form; # starts a comment.
type Users struct {
	hashes map[string]string
}

// ParseUsers reads a password file.
func ParseUsers(r io.Reader) (*Users, error) {
	u := &Users{hashes: map[string]string{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		name, hash, ok := strings.Cut(l, ":")
		if !ok || name == "" || !(strings.HasPrefix(hash, "$argon2id$") || strings.HasPrefix(hash, "$2")) {
			return nil, fmt.Errorf("password file line %d: want name:hash with an argon2id or bcrypt hash (make one with mcpgate hash-password)", n)
		}
		if _, dup := u.hashes[name]; dup {
			return nil, fmt.Errorf("password file line %d: user %q appears twice", n, name)
		}
		u.hashes[name] = hash
	}
	return u, sc.Err()
}

// LoadUsers reads a password file from disk; it must not be readable by
// other users.
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("password file %s is readable by other users; run chmod 600 %s", path, path)
	}
	return ParseUsers(f)
}

// Add adds a user with a plain password (the demo's user).
func (u *Users) Add(name, password string) error {
	h, err := HashPassword(password)
	if err != nil {
		return err
	}
	if u.hashes == nil {
		u.hashes = map[string]string{}
	}
	u.hashes[name] = h
	return nil
}

// dummy is verified for unknown users so that timing does not reveal
// which names exist. It is computed on first use: an argon2id hash takes
// 64 MiB and most of 200 ms, which a package-level variable spent at every
// start of the binary, `mcpgate connect` included.
var dummy = sync.OnceValue(func() string {
	h, _ := HashPassword("mcpgate-dummy-password")
	return h
})

// Check verifies a user's password.
func (u *Users) Check(name, password string) bool {
	h, ok := u.hashes[name]
	if !ok {
		_ = verify(dummy(), password)
		return false
	}
	return verify(h, password) && ok
}

// argon2id parameters (RFC 9106 second recommendation: 64 MiB, t=3, p=4).
const (
	argonTime   = 3
	argonMemory = 64 * 1024
	argonLanes  = 4
	argonKeyLen = 32
)

// HashPassword makes an argon2id hash in the PHC string format.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonLanes, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", argonMemory, argonTime, argonLanes,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

func verify(hash, password string) bool {
	if strings.HasPrefix(hash, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<22 || t > 16 || p == 0 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 128 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
