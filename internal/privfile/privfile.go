// Package privfile writes files that hold secrets (keys, sealed tokens):
// the content goes to a new 0600 file in the target's directory, synced
// before it is published, so a reader never sees a partial file and a
// crash leaves either the old content or the new one.
package privfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Temp writes data to a new 0600 file in dir named after pattern (as
// os.CreateTemp), synced and closed, and returns its name. The caller
// publishes it (rename or link) and removes it if it does not.
func Temp(dir, pattern string, data []byte) (name string, err error) {
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return "", err
	}
	if _, err = tmp.Write(data); err != nil {
		return "", err
	}
	if err = tmp.Sync(); err != nil {
		return "", err
	}
	if err = tmp.Close(); err != nil {
		return "", fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	return tmp.Name(), nil
}

// Replace atomically replaces path with data (a 0600 file of its own).
func Replace(path string, data []byte) error {
	name, err := Temp(filepath.Dir(path), "."+filepath.Base(path)+".new-*", data)
	if err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return err
	}
	return nil
}
