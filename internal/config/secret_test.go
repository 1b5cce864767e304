package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSecret(t *testing.T) {
	env := map[string]string{"S": "from-env"}
	getenv := func(k string) string { return env[k] }
	if v, err := ReadSecret("a_env", "S", "a_file", "", getenv); err != nil || v != "from-env" {
		t.Fatalf("%q %v", v, err)
	}
	f := filepath.Join(t.TempDir(), "s")
	os.WriteFile(f, []byte("from-file\n"), 0o600)
	if v, err := ReadSecret("a_env", "", "a_file", f, getenv); err != nil || v != "from-file" {
		t.Fatalf("%q %v", v, err)
	}
	for _, c := range []struct{ env, file, want string }{
		{"UNSET", "", "a_env: environment variable UNSET"},
		{"", filepath.Join(t.TempDir(), "missing"), "a_file:"},
		{"", "", "set a_env or a_file"},
	} {
		if _, err := ReadSecret("a_env", c.env, "a_file", c.file, getenv); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	os.Chmod(f, 0o644)
	if _, err := ReadSecret("a_env", "", "a_file", f, getenv); err == nil || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "from-file") {
		t.Fatalf("world-readable secret file: %v", err)
	}
	os.WriteFile(f, []byte("  \n"), 0o600)
	os.Chmod(f, 0o600)
	if _, err := ReadSecret("a_env", "", "a_file", f, getenv); err == nil {
		t.Fatal("empty secret file accepted")
	}
}
