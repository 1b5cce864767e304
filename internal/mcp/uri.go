package mcp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNonCanonicalURI is wrapped by CheckResourceURI errors.
var ErrNonCanonicalURI = errors.New("resource uri is not in canonical form")

// specialPorts are the WHATWG special schemes with their default ports
// (file has none). Servers built on WHATWG URL (the TypeScript SDK reads
// resources by new URL(uri).toString()) rewrite these more than others.
var specialPorts = map[string]string{"http": "80", "https": "443", "ws": "80", "wss": "443", "ftp": "21", "file": ""}

// CheckResourceURI reports whether s is a resource URI in the canonical
// form the gateway routes by: one that no normalisation a server may apply
// before acting on it changes, so the string the policy matched is the
// resource the server reads. The checks, all fail closed:
//
//   - only printable ASCII from RFC 3986 (unreserved, sub-delims, ":/?@"
//     and '%'): no space, control, backslash, raw non-ASCII, '"<>^`{|}',
//     no '[' ']' (IPv6 literals have several spellings) and no fragment
//     ('#': the URI without it names the same resource);
//   - the scheme is lowercase [a-z][a-z0-9+.-]*;
//   - no userinfo ('@' in the authority), no percent-encoding in the
//     authority, the host is lowercase (RFC 3986 §6.2.2.1), a port has
//     digits only, no leading zero, at most 65535;
//   - for http, https, ws, wss, ftp and file: an authority ("//"), a
//     path that is not empty, no default port, no empty or trailing-dot
//     host label, a host whose last label is a number only as a dotted
//     decimal IPv4 address, no file://localhost;
//   - in the path, no "." or ".." segment and no empty one ("a//b"; a
//     file server joining paths reads "a/b");
//   - a percent-encoding has two uppercase hex digits and encodes
//     neither an unreserved character (§6.2.2.2 decodes those), nor '/',
//     '\' or NUL, nor (as %25) another encoding; in the path it encodes
//     only a character that may not appear there raw, so that each
//     decoded path has exactly one accepted spelling;
//   - a ' in the query of a special scheme (WHATWG encodes it).
func CheckResourceURI(s string) error {
	if err := checkURI(s); err != nil {
		return fmt.Errorf("%w: %s; send the canonical form (lowercase scheme and host, no dot segments, no whitespace or controls, percent-encoding only where required, with uppercase hex)", ErrNonCanonicalURI, err.Error())
	}
	return nil
}

// CheckResourceTemplate is CheckResourceURI for an RFC 6570 URI template
// (resources/templates/list uriTemplate, completion ref/resource uri): each
// {expression} stands for one character of a segment, the rest must be
// canonical.
func CheckResourceTemplate(s string) error {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 2 || strings.ContainsAny(s[i+1:i+j], "{ ") {
				return fmt.Errorf("%w: malformed template expression at byte %d", ErrNonCanonicalURI, i)
			}
			b.WriteByte('x')
			i += j
		case '}':
			return fmt.Errorf("%w: unmatched } at byte %d", ErrNonCanonicalURI, i)
		default:
			b.WriteByte(s[i])
		}
	}
	return CheckResourceURI(b.String())
}

// uriByte reports bytes allowed raw anywhere in a canonical URI (before
// the position-specific checks).
func uriByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:/?@%", c) >= 0
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// rawInPath reports characters a path may carry raw (RFC 3986 pchar and
// '/'): their encoded forms are refused in the path.
func rawInPath(c byte) bool {
	return unreserved(c) || strings.IndexByte("!$&'()*+,;=:@/", c) >= 0
}

func upperHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func checkURI(s string) error {
	if s == "" {
		return errors.New("it is empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '#':
			return fmt.Errorf("it has a fragment ('#' at byte %d)", i)
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("it has a space or control character at byte %d", i)
		case c >= 0x80:
			return fmt.Errorf("it has a non-ASCII byte at byte %d (percent-encode UTF-8)", i)
		case !uriByte(c):
			return fmt.Errorf("it has %q at byte %d", c, i)
		}
	}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return errors.New("it has no scheme")
	}
	scheme := s[:colon]
	for i := 0; i < len(scheme); i++ {
		c := scheme[i]
		if !('a' <= c && c <= 'z' || i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return fmt.Errorf("the scheme %q is not lowercase [a-z][a-z0-9+.-]*", scheme)
		}
	}
	rest := s[colon+1:]
	hier, query, hasQuery := strings.Cut(rest, "?")
	defPort, special := specialPorts[scheme]
	path := hier
	if strings.HasPrefix(hier, "//") {
		auth := hier[2:]
		if j := strings.IndexByte(auth, '/'); j >= 0 {
			auth, path = auth[:j], auth[j:]
		} else {
			path = ""
		}
		if err := checkAuthority(scheme, auth, special, defPort); err != nil {
			return err
		}
	} else if special {
		return fmt.Errorf("a %s uri needs an authority (%s://)", scheme, scheme)
	}
	if special && path == "" {
		return fmt.Errorf("a %s uri needs a path (at least /)", scheme)
	}
	if err := checkPath(path); err != nil {
		return err
	}
	if err := checkEncodings(path, true); err != nil {
		return err
	}
	if hasQuery {
		if special && strings.IndexByte(query, '\'') >= 0 {
			return fmt.Errorf("the query of a %s uri has a ' (send %%27)", scheme)
		}
		if err := checkEncodings(query, false); err != nil {
			return err
		}
	}
	return nil
}

func checkAuthority(scheme, auth string, special bool, defPort string) error {
	if strings.IndexByte(auth, '@') >= 0 {
		return errors.New("it has userinfo ('@' in the authority)")
	}
	if strings.IndexByte(auth, '%') >= 0 {
		return errors.New("the authority is percent-encoded")
	}
	host, port, hasPort := strings.Cut(auth, ":")
	if strings.ToLower(host) != host {
		return fmt.Errorf("the host %q is not lowercase", host)
	}
	if hasPort {
		if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" || len(port) > 1 && port[0] == '0' {
			return fmt.Errorf("the port %q is not a canonical number", port)
		}
		if n, _ := strconv.Atoi(port); n > 65535 {
			return fmt.Errorf("the port %s is out of range", port)
		}
		if special && (port == defPort || scheme == "file") {
			return fmt.Errorf("the port %s is the default of %s (leave it out)", port, scheme)
		}
	}
	if !special {
		return nil
	}
	if scheme == "file" {
		if host == "localhost" {
			return errors.New("file://localhost/ is file:/// (send that)")
		}
		if host == "" {
			return nil
		}
	}
	return checkSpecialHost(host)
}

// checkSpecialHost accepts a WHATWG domain that serialises to itself:
// labels of [a-z0-9_-], none empty, and a numeric last label only in a
// dotted decimal IPv4 address (WHATWG rewrites 1.2.3, 0x7f.1, 01.2.3.4).
func checkSpecialHost(host string) error {
	if host == "" {
		return errors.New("the host is empty")
	}
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" {
			return fmt.Errorf("the host %q has an empty label", host)
		}
		if strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return fmt.Errorf("the host %q has a character outside [a-z0-9._-]", host)
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") != "" && !strings.HasPrefix(last, "0x") {
		return nil
	}
	if len(labels) != 4 {
		return fmt.Errorf("the host %q is not a dotted decimal IPv4 address", host)
	}
	for _, l := range labels {
		n, err := strconv.Atoi(l)
		if err != nil || n > 255 || len(l) > 1 && l[0] == '0' {
			return fmt.Errorf("the host %q is not a dotted decimal IPv4 address", host)
		}
	}
	return nil
}

// checkPath refuses dot segments and empty segments ("." and ".." are
// resolved by WHATWG and RFC 3986 §5.2.4; "a//b" by path joining).
func checkPath(path string) error {
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		switch {
		case seg == "." || seg == "..":
			return fmt.Errorf("the path has a %q segment", seg)
		case seg == "" && i > 0 && i < len(segs)-1:
			return errors.New("the path has an empty segment (//)")
		}
	}
	return nil
}

// checkEncodings checks every %XX of part; inPath refuses encodings of
// characters the path may carry raw.
func checkEncodings(part string, inPath bool) error {
	for i := 0; i < len(part); i++ {
		if part[i] != '%' {
			continue
		}
		if i+2 >= len(part) {
			return fmt.Errorf("a %% at the end is not an encoding (send %%25)")
		}
		hi, ok1 := upperHex(part[i+1])
		lo, ok2 := upperHex(part[i+2])
		if !ok1 || !ok2 {
			return fmt.Errorf("%q is not an encoding with uppercase hex digits", part[i:i+3])
		}
		c := hi<<4 | lo
		switch {
		case unreserved(c):
			return fmt.Errorf("%s encodes %q, which is sent unencoded", part[i:i+3], c)
		case c == '/' || c == '\\' || c == 0:
			return fmt.Errorf("%s encodes a path separator or NUL", part[i:i+3])
		case c == '%' && i+4 < len(part) && isHex(part[i+3]) && isHex(part[i+4]):
			return fmt.Errorf("%s encodes a %% that starts another encoding", part[i:i+5])
		case inPath && rawInPath(c):
			return fmt.Errorf("%s encodes %q, which the path carries unencoded", part[i:i+3], c)
		}
		i += 2
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
