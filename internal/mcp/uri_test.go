package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand"
	"os/exec"
	"strings"
	"testing"
)

// The reviewer's payloads (review-gw finding 1) and their neighbours: every
// one is a spelling some server normalises to another resource than the
// string says, so the gateway refuses it.
var nonCanonicalURIs = []string{
	"DEMO://resource/static/document/architecture.md",
	"Demo://resource/dynamic/text/1",
	"demo://resource/static/x/../document/architecture.md",
	"demo://resource/dynamic/./text/1",
	" demo://resource/static/document/architecture.md",
	"demo://resource/static/document/architecture.md ",
	"demo:/\t/resource/static/document/architecture.md",
	"demo://resource/static/document/architecture.md\n",
	"\x00demo://resource/static/document/architecture.md",
	"demo://resource/static/document/architecture.md\x1f",
	"demo://resource/dynamic/%2e/text/1",
	"demo://resource/dynamic/%2E/text/1",
	"demo://resource/dynamic/x/%2e%2e/text/1",
	"demo://resource/dynamic/x/.%2E/text/1",
	"demo://resource/dynamic/x/%2E./text/1",
	"demo://resource/dynamic/x/..",
	"demo://resource/dynamic/x/.",
	"demo://resource/dynamic//text/1",
	"demo://resource/dynamic/%74ext/1",
	"demo://resource/dynamic/text%2F1",
	"demo://resource/dynamic/text%5C1",
	"demo://resource/dynamic/text%001",
	"demo://resource/dynamic/text/%c3%a9",
	"demo://resource/dynamic/text/%252E%252E",
	"demo://resource/dynamic/text/%21",
	"demo://resource/dynamic/text/a%3Ab",
	"demo://resource/dynamic/text/1#frag",
	"demo://resource/dynamic/text\\1",
	"demo://resource/dynamic/text/\u00e9",
	"demo://resource/dynamic/text/{id}",
	"demo://resource/dynamic/text/%",
	"demo://resource/dynamic/text/%zz",
	"demo://Resource/dynamic/text/1",
	"demo://u@resource/dynamic/text/1",
	"demo://resource:080/dynamic/text/1",
	"demo://resource:/dynamic/text/1",
	"demo://[::1]/x",
	"demo",
	"demo/x",
	"",
	"1demo://x",
	"file:///srv/public/../private/x",
	"FILE:///srv/private/x",
	"file:///srv//private/x",
	"file:///srv/%70rivate/x",
	"file:/srv/private/x",
	"file:srv/private/x",
	"file://localhost/srv/private/x",
	"file://LOCALHOST/srv/private/x",
	"file://h:1/srv/private/x",
	"file:///C|/x",
	"http://A.example/x",
	"http://a.example",
	"http://a.example:80/x",
	"https://a.example:443/x",
	"ws://a.example:80/x",
	"wss://a.example:443/x",
	"ftp://a.example:21/x",
	"http://a.example./x",
	"http://a..example/x",
	"http://1.2.3/x",
	"http://0x7f.0.0.1/x",
	"http://127.0.0.01/x",
	"http://0/x",
	"http://a%41.example/x",
	"http://a.example?q",
	"http://a.example/x?it's",
	"http:/a.example/x",
	"http:a.example/x",
}

var canonicalURIs = []string{
	"demo://resource/static/document/architecture.md",
	"demo://resource/dynamic/text/1",
	"demo://Resource", // refused: host case
	"demo:x",
	"demo:/x/y",
	"demo:",
	"demo://",
	"demo:///x",
	"demo://h/",
	"demo://h:8080/x",
	"demo://h/a%20b",
	"demo://h/%C3%A9",
	"demo://h/a!$&'()*+,;=:@~_-.b",
	"demo://h/a.b/.c/..d/c.",
	"demo://h/x?a=b&c=%2B'd",
	"demo://h/x?a/../b",
	"demo://h/%25",
	"demo://h/%3F%23%5B%5D",
	"x+y.z-w://h/x",
	"file:///srv/private/x",
	"file:///c:/x",
	"file://host/x",
	"http://a.example/",
	"http://a.example/x?q=1",
	"https://a.example:8443/x",
	"http://127.0.0.1/x",
	"http://a_b-c.example/x",
}

func TestCheckResourceURIRefusesNonCanonical(t *testing.T) {
	for _, u := range nonCanonicalURIs {
		err := CheckResourceURI(u)
		if err == nil {
			t.Errorf("%q accepted", u)
			continue
		}
		if !errors.Is(err, ErrNonCanonicalURI) || !strings.Contains(err.Error(), "send the canonical form") {
			t.Errorf("%q: error %q does not name the problem and the fix", u, err)
		}
	}
}

func TestCheckResourceURIAcceptsCanonical(t *testing.T) {
	for _, u := range canonicalURIs {
		err := CheckResourceURI(u)
		if want := u != "demo://Resource"; (err == nil) != want {
			t.Errorf("%q: %v", u, err)
		}
	}
}

func TestCheckResourceTemplate(t *testing.T) {
	for u, ok := range map[string]bool{
		"demo://resource/dynamic/text/{id}": true,
		"file:///{+path}":                   true,
		"demo://h/x{?q,r}":                  true,
		"demo://h/{a}/{b}":                  true,
		"DEMO://resource/dynamic/text/{id}": false,
		"demo://h/../{id}":                  false,
		"demo://h/{id":                      false,
		"demo://h/id}":                      false,
		"demo://h/{}":                       false,
		"demo://h/{a{b}}":                   false,
		"demo://h/{ a}":                     false,
		" demo://h/{a}":                     false,
	} {
		if err := CheckResourceTemplate(u); (err == nil) != ok {
			t.Errorf("%q: %v, want accepted %v", u, err, ok)
		}
	}
}

// uriCorpus is every table entry plus generated spellings built from the
// pieces servers normalise: scheme case, special and plain schemes, hosts
// WHATWG rewrites, dot and empty segments, encodings, controls, queries.
func uriCorpus(n int) []string {
	schemes := []string{"demo", "DEMO", "dEmo", "http", "HTTP", "https", "file", "FILE", "ws", "wss", "ftp", "x+y", "a.b", "1a", "", "urn"}
	seps := []string{"://", ":", ":/", ":///", ":\\\\", ":/\t/", " ://"}
	hosts := []string{"h", "H", "a.com", "A.com", "1.2.3", "1.2.3.4", "01.2.3.4", "256.1.1.1", "0x7f.1", "0X7F.1", "a.0x1", "localhost", "LocalHost", "a..b", "a.com.", "xn--a", "xn--bcher-kva", "a_b", "", "a:80", "a:443", "a:21", "a:0080", "a:", "a:65536", "a:0", "u@h", "%41", "[::1]", "a$b", "a*b", "a~b", "a'b", "a!b", "a=b", "a;b", "c:", "a%2eb"}
	segs := []string{"a", "b.c", ".", "..", "%2e", "%2E", "%2E%2E", ".%2e", "%2e.", "", "A", "%41", "%7E", "%7e", "%2F", "%2f", "%5C", "%00", "%20", "%c3%a9", "%C3%A9", "%25", "%252E", "%2525", "!", "'", "*", "~", "a b", "\t", "\n", "\\", "\u00e9", "{x}", "|", "^", "@", ":", "%3A", "%21", "%3F", "%23", "%5B", "[", "]", "`", "\"", "<", "%7F", "%80", "c:", "C|", "...", ".a", "a."}
	queries := []string{"", "", "", "?", "?a=b", "?'", "?%27", "?%2e", "?a%2Fb", "?%20", "?#f", "?a b", "?%7e", "?{", "?a/../b", "#f", "#"}
	pick := func(r *rand.Rand, xs []string) string { return xs[r.Intn(len(xs))] }
	out := append(append([]string{}, nonCanonicalURIs...), canonicalURIs...)
	r := rand.New(rand.NewSource(11))
	// mutations of accepted URIs: one byte or piece inserted, replaced or
	// removed, the spellings nearest to the accepted side
	pieces := append(append(append([]string{}, segs...), hosts...), queries...)
	for len(out) < n/2 {
		u := canonicalURIs[r.Intn(len(canonicalURIs))]
		at := r.Intn(len(u) + 1)
		ins := string(rune(0x20 + r.Intn(0x5f)))
		if r.Intn(2) == 0 {
			ins = pick(r, pieces)
		}
		switch r.Intn(3) {
		case 0:
			u = u[:at] + ins + u[at:]
		case 1:
			if at < len(u) {
				u = u[:at] + ins + u[at+1:]
			}
		default:
			if at < len(u) {
				u = u[:at] + u[at+1:]
			}
		}
		out = append(out, u)
	}
	for len(out) < n {
		var b strings.Builder
		b.WriteString(pick(r, schemes))
		b.WriteString(pick(r, seps))
		b.WriteString(pick(r, hosts))
		for k := r.Intn(4); k > 0; k-- {
			b.WriteString("/")
			b.WriteString(pick(r, segs))
			if r.Intn(4) == 0 {
				b.WriteString(pick(r, segs))
			}
		}
		if r.Intn(5) == 0 {
			b.WriteString("/")
		}
		b.WriteString(pick(r, queries))
		out = append(out, b.String())
	}
	return out
}

const whatwgOracle = `
const lines = require('fs').readFileSync(0, 'utf8');
const out = JSON.parse(lines).map((u) => { try { return new URL(u).toString(); } catch (e) { return null; } });
process.stdout.write(JSON.stringify(out));
`

// whatwg serialises every input with Node's WHATWG URL parser (null when
// it does not parse) in one node process.
func whatwg(t *testing.T, in []string) []*string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed: no WHATWG oracle")
	}
	body, _ := json.Marshal(in)
	cmd := exec.Command(node, "-e", whatwgOracle)
	cmd.Stdin = bytes.NewReader(body)
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("node oracle: %v", err)
	}
	var out []*string
	if err := json.Unmarshal(outb, &out); err != nil || len(out) != len(in) {
		t.Fatalf("node oracle output: %v (%d of %d)", err, len(out), len(in))
	}
	return out
}

// TestCheckResourceURIWHATWGFixedPoint is the differential test against
// the parser the TypeScript SDK reads resources with: every URI the gateway
// accepts is a fixed point of new URL(u).toString() (or does not parse, so
// the server reads nothing). The reviewer's payloads are shown to be
// rewritten by it, which is the attack.
func TestCheckResourceURIWHATWGFixedPoint(t *testing.T) {
	in := uriCorpus(20000)
	out := whatwg(t, in)
	accepted := 0
	for i, u := range in {
		if CheckResourceURI(u) != nil {
			continue
		}
		accepted++
		if out[i] != nil && *out[i] != u {
			t.Errorf("accepted %q, but WHATWG serialises it as %q", u, *out[i])
		}
	}
	if accepted < 500 {
		t.Fatalf("only %d of %d generated URIs accepted: the corpus does not exercise the accepted side", accepted, len(in))
	}
	rewritten := 0
	for i, u := range in[:len(nonCanonicalURIs)] {
		if out[i] != nil && *out[i] != u {
			rewritten++
		}
	}
	if rewritten < 40 {
		t.Fatalf("only %d of the refused payloads are rewritten by WHATWG", rewritten)
	}
	t.Logf("%d of %d generated URIs accepted, all WHATWG fixed points; %d of %d refused payloads rewritten by WHATWG", accepted, len(in), rewritten, len(nonCanonicalURIs))
}

// decodePath percent-decodes p (the way decodeURIComponent does, bytewise).
func decodePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			hi, _ := upperHex(p[i+1])
			lo, _ := upperHex(p[i+2])
			b.WriteByte(hi<<4 | lo)
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// encodePath is the one spelling of a decoded path: bytes the path carries
// raw stay, every other byte is %XX with uppercase hex.
func encodePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if rawInPath(p[i]) {
			b.WriteByte(p[i])
			continue
		}
		b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[p[i]>>4])+string("0123456789abcdef"[p[i]&15])))
	}
	return b.String()
}

// uriPath is the part of an accepted URI a server maps to a path: after
// the scheme and authority, before the query.
func uriPath(u string) string {
	rest := u[strings.IndexByte(u, ':')+1:]
	rest, _, _ = strings.Cut(rest, "?")
	if strings.HasPrefix(rest, "//") {
		if j := strings.IndexByte(rest[2:], '/'); j >= 0 {
			return rest[2+j:]
		}
		return ""
	}
	return rest
}

// checkDecodingProperties asserts what a percent-decoding server sees of
// an accepted URI: its path decodes to segments with no separator, dot
// segment or NUL that the encoded form did not show, and decoding is
// one-to-one (re-encoding gives the accepted spelling back), so a glob
// over the canonical form that treats %XX as one character matches
// exactly when the same glob over the decoded form would.
func checkDecodingProperties(t *testing.T, u string) {
	t.Helper()
	p := uriPath(u)
	d := decodePath(p)
	if strings.Count(d, "/") != strings.Count(p, "/") || strings.ContainsAny(d, "\\\x00") {
		t.Fatalf("accepted %q decodes to a path with other separators: %q", u, d)
	}
	for _, seg := range strings.Split(d, "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("accepted %q decodes to a dot segment: %q", u, d)
		}
	}
	if e := encodePath(d); e != p {
		t.Fatalf("accepted %q: its decoded path %q has another spelling %q", u, d, e)
	}
	if strings.ToLower(u[:strings.IndexByte(u, ':')]) != u[:strings.IndexByte(u, ':')] {
		t.Fatalf("accepted %q with an uppercase scheme", u)
	}
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] >= 0x7f {
			t.Fatalf("accepted %q with byte %#x", u, u[i])
		}
	}
}

func TestCheckResourceURIDecodingProperties(t *testing.T) {
	for _, u := range uriCorpus(20000) {
		if CheckResourceURI(u) == nil {
			checkDecodingProperties(t, u)
		}
	}
}

// FuzzCheckResourceURI checks the Go-side properties of every accepted
// input (the WHATWG fixed point is checked by the table test above, which
// needs node).
func FuzzCheckResourceURI(f *testing.F) {
	for _, u := range append(append([]string{}, nonCanonicalURIs...), canonicalURIs...) {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, u string) {
		if CheckResourceURI(u) != nil {
			return
		}
		checkDecodingProperties(t, u)
		if CheckResourceTemplate(u) != nil {
			t.Fatalf("accepted %q as a URI but not as a template", u)
		}
	})
}
