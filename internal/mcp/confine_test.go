package mcp

import (
	"net/http"
	"strings"
	"testing"
)

// TestConfineAnswer: only the two MCP media types survive; every answer
// carries the sandbox policy and nosniff and loses the headers a browser
// would act on for the relaying origin.
func TestConfineAnswer(t *testing.T) {
	for ct, keep := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "text/event-stream": true, "TEXT/EVENT-STREAM": true,
		"text/html": false, "text/html; charset=utf-8": false, "image/svg+xml": false, "application/xhtml+xml": false,
		"text/plain": false, "application/javascript": false, "": false, "application/json, text/html": false,
		"text/xml": false, "multipart/x-mixed-replace; boundary=x": false, "application/jsonx": false,
	} {
		h := http.Header{"Set-Cookie": {"a=1"}, "Clear-Site-Data": {`"*"`}, "Refresh": {"0; url=https://evil.example"},
			"Link": {"<https://evil.example/x.js>; rel=preload"}, "Content-Disposition": {"inline"}}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		if got := ConfineAnswer(h); got != keep {
			t.Errorf("%q: kept %v", ct, got)
		}
		want := ct
		if !keep {
			want = "application/octet-stream"
		}
		if h.Get("Content-Type") != want {
			t.Errorf("%q: Content-Type %q, want %q", ct, h.Get("Content-Type"), want)
		}
		if h.Get("Content-Security-Policy") != "sandbox; default-src 'none'; frame-ancestors 'none'" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%q: %v", ct, h)
		}
		for _, k := range []string{"Set-Cookie", "Clear-Site-Data", "Refresh", "Link", "Content-Disposition"} {
			if h.Get(k) != "" {
				t.Errorf("%q: %s kept", ct, k)
			}
		}
	}
}

// TestCheckFetch: browser navigations and resource loads are refused,
// fetch(), XMLHttpRequest, EventSource and non-browser clients pass.
func TestCheckFetch(t *testing.T) {
	refused := []http.Header{
		{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"document"}},
		{"Sec-Fetch-Mode": {"navigate"}, "Sec-Fetch-Dest": {"iframe"}},
		{"Sec-Fetch-Mode": {"no-cors"}, "Sec-Fetch-Dest": {"script"}},
		{"Sec-Fetch-Mode": {"no-cors"}, "Sec-Fetch-Dest": {"image"}},
		{"Sec-Fetch-Dest": {"embed"}},
		{"Sec-Fetch-Dest": {"worker"}},
		{"Accept": {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}},
		{"Accept": {"application/json", "text/html"}},
	}
	for _, h := range refused {
		if err := CheckFetch(h); err == nil || !strings.Contains(err.Error(), "Accept: application/json, text/event-stream") {
			t.Errorf("%v: %v", h, err)
		}
	}
	allowed := []http.Header{
		{},
		{"Accept": {"application/json, text/event-stream"}},
		{"Accept": {"*/*"}},
		{"Accept": {"text/event-stream"}, "Sec-Fetch-Mode": {"cors"}, "Sec-Fetch-Dest": {"empty"}},
		{"Sec-Fetch-Mode": {"same-origin"}, "Sec-Fetch-Dest": {"empty"}},
	}
	for _, h := range allowed {
		if err := CheckFetch(h); err != nil {
			t.Errorf("%v: %v", h, err)
		}
	}
}
