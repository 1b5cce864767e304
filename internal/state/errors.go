package state

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnavailable wraps every error of a shared store that could not
// answer (Redis down, timed out, out of memory): the caller fails closed
// with 503 (docs/security.md "Shared state").
var ErrUnavailable = errors.New("shared state (Redis) unavailable")

// safe wraps a Redis error as ErrUnavailable with a text that never holds
// the password (go-redis does not put it in errors; this is the guard
// should a future version echo its options).
func (r *Redis) safe(err error) error {
	msg := err.Error()
	if pw := r.c.Options().Password; pw != "" {
		msg = strings.ReplaceAll(msg, pw, "<redacted>")
	}
	return fmt.Errorf("%w: %s", ErrUnavailable, msg)
}

var errUnexpected = errors.New("unexpected script reply")
