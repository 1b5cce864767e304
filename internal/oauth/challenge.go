// Package oauth is mcpgate's OAuth 2.1 client engine: the MCP discovery
// chain (RFC 9728 protected resource metadata, RFC 8414 / OpenID discovery),
// client registration (pre-registered, Client ID Metadata Documents, RFC 7591),
// the authorization code flow with PKCE, PAR (RFC 9126), DPoP (RFC 9449),
// RFC 8707 resource indicators and RFC 9207 issuer checks, token refresh,
// step-up, and the device and client credentials grants.
//
// It stores nothing itself: credentials go through the Store interface,
// which internal/vault implements.
package oauth

import (
	"fmt"
	"strings"
)

// Challenge is one challenge of a WWW-Authenticate header (RFC 9110 §11.6.1).
type Challenge struct {
	// Scheme as sent; compare with strings.EqualFold.
	Scheme string
	// Token68 is set for challenges of the token68 form.
	Token68 string
	// Params maps lowercased parameter names to their (unquoted) values.
	Params map[string]string
}

// Param returns a parameter value ("" when absent).
func (c Challenge) Param(name string) string { return c.Params[strings.ToLower(name)] }

// Scopes are the space-separated values of the scope parameter.
func (c Challenge) Scopes() []string { return strings.Fields(c.Param("scope")) }

// ParseChallenges parses every WWW-Authenticate field value (a header may
// carry several challenges, and a response several headers). It returns the
// challenges it could read and an error describing the first malformed
// value; challenges before the malformed part are kept.
func ParseChallenges(values []string) ([]Challenge, error) {
	var out []Challenge
	var firstErr error
	for _, v := range values {
		cs, err := parseHeader(v)
		out = append(out, cs...)
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return out, firstErr
}

// Find returns the first challenge with the scheme (case-insensitive).
func Find(cs []Challenge, scheme string) (Challenge, bool) {
	for _, c := range cs {
		if strings.EqualFold(c.Scheme, scheme) {
			return c, true
		}
	}
	return Challenge{}, false
}

type lexer struct {
	s   string
	pos int
}

func (l *lexer) skipSpace() {
	for l.pos < len(l.s) && (l.s[l.pos] == ' ' || l.s[l.pos] == '\t') {
		l.pos++
	}
}

func (l *lexer) skipSpaceAndCommas() {
	for l.pos < len(l.s) && (l.s[l.pos] == ' ' || l.s[l.pos] == '\t' || l.s[l.pos] == ',') {
		l.pos++
	}
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken68Char(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}

func (l *lexer) token() string {
	start := l.pos
	for l.pos < len(l.s) && isTchar(l.s[l.pos]) {
		l.pos++
	}
	return l.s[start:l.pos]
}

// quoted reads a quoted-string at pos (which holds '"'), handling
// quoted-pair escapes.
func (l *lexer) quoted() (string, error) {
	l.pos++ // opening quote
	var b strings.Builder
	for l.pos < len(l.s) {
		c := l.s[l.pos]
		switch {
		case c == '"':
			l.pos++
			return b.String(), nil
		case c == '\\':
			if l.pos+1 >= len(l.s) {
				return "", fmt.Errorf("unterminated escape at offset %d", l.pos)
			}
			// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
			if e := l.s[l.pos+1]; e < 0x20 && e != '\t' || e == 0x7f {
				return "", fmt.Errorf("escaped control character in quoted string at offset %d", l.pos)
			}
			b.WriteByte(l.s[l.pos+1])
			l.pos += 2
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", fmt.Errorf("control character in quoted string at offset %d", l.pos)
		default:
			b.WriteByte(c)
			l.pos++
		}
	}
	return "", fmt.Errorf("unterminated quoted string")
}

// isParamStart reports whether an auth-param (token BWS "=" not followed
// by another "=" as in token68 padding) starts at pos.
func (l *lexer) isParamStart() bool {
	p := l.pos
	for p < len(l.s) && isTchar(l.s[p]) {
		p++
	}
	if p == l.pos {
		return false
	}
	for p < len(l.s) && (l.s[p] == ' ' || l.s[p] == '\t') {
		p++
	}
	if p >= len(l.s) || l.s[p] != '=' {
		return false
	}
	// "abc==" is token68 padding, "abc=" followed by end or comma too.
	q := p + 1
	for q < len(l.s) && (l.s[q] == ' ' || l.s[q] == '\t') {
		q++
	}
	return q < len(l.s) && l.s[q] != '=' && l.s[q] != ','
}

func parseHeader(v string) ([]Challenge, error) {
	l := &lexer{s: v}
	var out []Challenge
	for {
		l.skipSpaceAndCommas()
		if l.pos >= len(l.s) {
			return out, nil
		}
		scheme := l.token()
		if scheme == "" {
			return out, fmt.Errorf("malformed WWW-Authenticate %q: expected an auth scheme at offset %d", v, l.pos)
		}
		c := Challenge{Scheme: scheme, Params: map[string]string{}}
		if l.pos < len(l.s) && l.s[l.pos] != ' ' && l.s[l.pos] != '\t' && l.s[l.pos] != ',' {
			return out, fmt.Errorf("malformed WWW-Authenticate %q: unexpected %q after scheme %s", v, l.s[l.pos], scheme)
		}
		l.skipSpace()
		// token68 form
		if l.pos < len(l.s) && l.s[l.pos] != ',' && !l.isParamStart() && isToken68Char(l.s[l.pos]) {
			start := l.pos
			for l.pos < len(l.s) && isToken68Char(l.s[l.pos]) {
				l.pos++
			}
			for l.pos < len(l.s) && l.s[l.pos] == '=' {
				l.pos++
			}
			c.Token68 = l.s[start:l.pos]
			l.skipSpace()
			if l.pos < len(l.s) && l.s[l.pos] != ',' {
				return out, fmt.Errorf("malformed WWW-Authenticate %q: unexpected text after token68 at offset %d", v, l.pos)
			}
			out = append(out, c)
			continue
		}
		// auth-params until the next challenge
		for {
			l.skipSpaceAndCommas()
			if l.pos >= len(l.s) || !l.isParamStart() {
				break
			}
			name := strings.ToLower(l.token())
			l.skipSpace()
			l.pos++ // '='
			l.skipSpace()
			var val string
			if l.pos < len(l.s) && l.s[l.pos] == '"' {
				q, err := l.quoted()
				if err != nil {
					return append(out, c), fmt.Errorf("malformed WWW-Authenticate %q: %v", v, err)
				}
				val = q
			} else {
				val = l.token()
				if val == "" {
					return append(out, c), fmt.Errorf("malformed WWW-Authenticate %q: parameter %s has no value", v, name)
				}
			}
			if _, dup := c.Params[name]; dup {
				return out, fmt.Errorf("malformed WWW-Authenticate %q: parameter %s repeated", v, name)
			}
			c.Params[name] = val
			l.skipSpace()
			if l.pos < len(l.s) && l.s[l.pos] != ',' {
				return append(out, c), fmt.Errorf("malformed WWW-Authenticate %q: expected a comma at offset %d", v, l.pos)
			}
		}
		out = append(out, c)
	}
}
