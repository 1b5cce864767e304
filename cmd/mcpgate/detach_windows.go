//go:build windows

package main

import "errors"

func detachBroker(e *env, _ []string, _, _ string) int {
	return fail(e, "broker", errors.New("--detach is not available on Windows; run the broker as a service or in the foreground"))
}
