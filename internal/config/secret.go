package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ReadSecret returns a secret configured by environment variable name
// (envKey: envName) or by file (fileKey: file); exactly one is expected.
// Errors name the key and never contain the secret.
func ReadSecret(envKey, envName, fileKey, file string, getenv func(string) string) (string, error) {
	switch {
	case envName != "":
		v := getenv(envName)
		if v == "" {
			return "", fmt.Errorf("%s: environment variable %s is empty or unset", envKey, envName)
		}
		return v, nil
	case file != "":
		if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%s: %s is readable by other users (mode %v); run chmod 600 %s", fileKey, file, fi.Mode().Perm(), file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", fileKey, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s: %s is empty", fileKey, file)
		}
		return v, nil
	}
	return "", errors.New("set " + envKey + " or " + fileKey)
}
