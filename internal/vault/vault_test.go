package vault

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

func exercise(t *testing.T, s Store) {
	t.Helper()
	if v, err := s.Get("missing"); v != nil || err != nil {
		t.Fatalf("Get(missing) = %q, %v", v, err)
	}
	if err := s.Put("token|a", []byte("secret-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("token|b", []byte("secret-2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("client|a", []byte("c")); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get("token|a"); string(v) != "secret-1" {
		t.Fatalf("Get = %q", v)
	}
	keys, err := s.List("token|")
	slices.Sort(keys)
	if err != nil || !slices.Equal(keys, []string{"token|a", "token|b"}) {
		t.Fatalf("List = %v, %v", keys, err)
	}
	if err := s.Put("token|a", []byte("secret-3")); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get("token|a"); string(v) != "secret-3" {
		t.Fatalf("overwrite: %q", v)
	}
	if err := s.Delete("token|a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("token|a"); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	if v, _ := s.Get("token|a"); v != nil {
		t.Fatalf("deleted entry still there: %q", v)
	}
}

func TestMemory(t *testing.T) { exercise(t, NewMemory()) }

func TestFileStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vault")
	s, err := OpenFile(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, s)
	for _, p := range []string{dir, filepath.Join(dir, "entries")} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v, want 0700", p, fi.Mode().Perm())
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "entries", "*.json"))
	files = append(files, filepath.Join(dir, "vault.key"))
	if len(files) != 3 {
		t.Fatalf("files: %v", files)
	}
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
		raw, _ := os.ReadFile(f)
		if bytes.Contains(raw, []byte("secret-2")) || bytes.Contains(raw, []byte("token|b")) {
			t.Errorf("%s holds plaintext", f)
		}
	}
	// a second open (another process) reads the same entries
	s2, err := OpenFile(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := s2.Get("token|b"); string(v) != "secret-2" {
		t.Fatalf("reopened: %q", v)
	}
	// tampering is detected, not returned
	f := s.path("token|b")
	raw, _ := os.ReadFile(f)
	raw[len(raw)/2] ^= 1
	os.WriteFile(f, raw, 0o600)
	if v, err := s.Get("token|b"); err == nil {
		t.Fatalf("tampered entry read back: %q", v)
	}
	// swapping two entries' files is detected (the name is authenticated)
	a, b := s.path("client|a"), s.path("token|c")
	s.Put("token|c", []byte("x"))
	ra, _ := os.ReadFile(a)
	os.WriteFile(b, ra, 0o600)
	if v, err := s.Get("token|c"); err == nil {
		t.Fatalf("swapped entry read back: %q", v)
	}
}

func TestFileStorePassphrase(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenFile(dir, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	s.Put("k", []byte("v"))
	if _, err := os.Stat(filepath.Join(dir, "vault.key")); err == nil {
		t.Fatal("a key file was written although a passphrase was given")
	}
	wrong, _ := OpenFile(dir, "wrong")
	if _, err := wrong.Get("k"); err == nil || !bytes.Contains([]byte(err.Error()), []byte("MCPGATE_VAULT_PASSPHRASE")) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	right, _ := OpenFile(dir, "correct horse")
	if v, err := right.Get("k"); string(v) != "v" || err != nil {
		t.Fatalf("right passphrase: %q %v", v, err)
	}
}

func TestFileStoreRefusesLooseKeyFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenFile(dir, ""); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "vault.key"), 0o644)
	if _, err := OpenFile(dir, ""); err == nil {
		t.Fatal("a world-readable key file was accepted")
	}
	// a loose directory is tightened
	os.Chmod(filepath.Join(dir, "vault.key"), 0o600)
	os.Chmod(dir, 0o755)
	if _, err := OpenFile(dir, ""); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory left at %v", fi.Mode().Perm())
	}
}

func TestOpenKinds(t *testing.T) {
	dir := t.TempDir()
	get := func(string) string { return "" }
	if s, err := Open("memory", dir, get, nil); err != nil || s.Name() != "memory" {
		t.Fatal(s, err)
	}
	if _, err := Open("bogus", dir, get, nil); err == nil {
		t.Fatal("unknown kind accepted")
	}
	var notice bytes.Buffer
	// without a session bus there is no keyring: auto falls back to the file
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(dir, "no-bus"))
	s, err := Open("auto", dir, get, &notice)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*File); !ok || !bytes.Contains(notice.Bytes(), []byte("encrypted file store")) {
		t.Fatalf("auto without keyring: %T, notice %q", s, notice.String())
	}
}

func TestMemoryLock(t *testing.T) {
	s := NewMemory()
	unlock, err := s.Lock(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, "x"); err == nil {
		t.Fatal("a held lock was taken twice")
	}
	unlock()
	unlock() // idempotent
	u2, err := s.Lock(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	u2()
}

// TestFileLockAcrossProcesses: child processes increment a counter file
// under the lock; without mutual exclusion updates would be lost.
func TestFileLockAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(dir, "counter")
	os.WriteFile(counter, []byte("0"), 0o600)
	const procs, rounds = 4, 25
	var cmds []*exec.Cmd
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "VAULT_LOCK_CHILD="+dir, "VAULT_LOCK_ROUNDS="+strconv.Itoa(rounds))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	raw, _ := os.ReadFile(counter)
	if string(raw) != strconv.Itoa(procs*rounds) {
		t.Fatalf("counter = %s, want %d (lost updates: the lock does not exclude)", raw, procs*rounds)
	}
}

// TestMain turns the test binary into the lock-holding child process of
// TestFileLockAcrossProcesses when VAULT_LOCK_CHILD is set.
func TestMain(m *testing.M) {
	if dir := os.Getenv("VAULT_LOCK_CHILD"); dir != "" {
		rounds, _ := strconv.Atoi(os.Getenv("VAULT_LOCK_ROUNDS"))
		for range rounds {
			unlock, err := lockFile(context.Background(), dir, "counter")
			if err != nil {
				os.Exit(2)
			}
			raw, _ := os.ReadFile(filepath.Join(dir, "counter"))
			n, _ := strconv.Atoi(string(raw))
			time.Sleep(time.Millisecond)
			os.WriteFile(filepath.Join(dir, "counter"), []byte(strconv.Itoa(n+1)), 0o600)
			unlock()
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
