package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := dispatch(ctx, args, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }})
	return code, out.String(), errb.String()
}

func TestDemoCheck(t *testing.T) {
	code, out, errs := run(t, "demo", "--check", "--listen", "127.0.0.1:0")
	if code != 0 || !strings.Contains(out, "demo check passed") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "long_task reported 3 progress steps") || !strings.Contains(out, "tiny_image returned an image/png") {
		t.Fatalf("progress or image results did not pass through:\n%s", out)
	}
	if !strings.Contains(out, "demo signed in through the login and consent pages") {
		t.Fatalf("the demo user's login through the built-in server failed:\n%s", out)
	}
	if !strings.Contains(out, "demo-reader sees [add echo long_task tiny_image]") {
		t.Fatalf("the reader must not see the admin tool:\n%s", out)
	}
}

func TestDemoRefusesNonLoopback(t *testing.T) {
	if code, _, errs := run(t, "demo", "--listen", "0.0.0.0:0"); code != 2 || !strings.Contains(errs, "loopback") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

func TestServeConfigErrorsNameKeyAndFix(t *testing.T) {
	code, _, errs := run(t, "serve", "--upstream", "http://127.0.0.1:9/mcp", "--issuer", "http://idp.example.com", "--dpop", "maybe")
	if code != 2 || !strings.Contains(errs, "issuers[0].issuer") || !strings.Contains(errs, "https") || !strings.Contains(errs, "upstreams[0].dpop") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if code, _, errs := run(t, "serve", "stray"); code != 2 || !strings.Contains(errs, "after --") {
		t.Fatalf("stray argument: %d %s", code, errs)
	}
}

func TestUnknownCommand(t *testing.T) {
	if code, _, errs := run(t, "nope"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("%d %s", code, errs)
	}
}
