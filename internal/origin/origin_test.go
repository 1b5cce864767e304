package origin

import (
	"net/url"
	"testing"
)

func TestOrigin(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"https://example.com/mcp", "https://EXAMPLE.com:443/other", true},
		{"http://127.0.0.1/mcp", "http://127.0.0.1:80/x", true},
		{"HTTP://127.0.0.1:8080/", "http://127.0.0.1:8080/y", true},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8081/", false},
		{"http://127.0.0.1:8080/", "https://127.0.0.1:8080/", false},
		{"http://127.0.0.1:8080/", "http://localhost:8080/", false},
		{"http://[::1]:8080/", "http://[::1]:8080/z", true},
		{"http://127.0.0.1:8080/", "/relative", false},
		{"", "", false},
	} {
		a, _ := url.Parse(c.a)
		b, _ := url.Parse(c.b)
		if got := Same(a, b); got != c.same {
			t.Errorf("Same(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// TestApplyOnlyToTheServersOrigin: the session attaches its credential
// only to requests for its server's origin.
