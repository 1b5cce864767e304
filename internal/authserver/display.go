package authserver

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxDisplayRunes bounds every string shown on a page: a 60 kB client
// name is cut, not rendered.
const maxDisplayRunes = 120

// display makes a server- or client-supplied string safe to show on the
// sign-in, consent and error pages. It is the one helper for every such
// string (render applies it to every field of pageData): bidirectional
// overrides, isolates and marks, zero-width and other format characters,
// control characters, private-use and unassigned code points and invalid
// UTF-8 are replaced by a visible ⟨U+XXXX⟩ marker, so text cannot reorder
// itself or hide characters ("Safe App\u202Eexe.live" shows its override),
// and the string is cut at maxDisplayRunes runes. HTML escaping is still
// done by html/template; the pages also put each value in a <bdi>.
func display(s string) string { return displayN(s, maxDisplayRunes) }

// displayN is display with another length bound (messages).
func displayN(s string, limit int) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if n >= limit {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteString("⟨invalid⟩")
		case r == ' ':
			b.WriteRune(r)
		case hiddenRune(r):
			fmt.Fprintf(&b, "⟨U+%04X⟩", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// hiddenRune: characters that change how the text around them is shown,
// or are not shown at all.
func hiddenRune(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs, unicode.Zl, unicode.Zp) ||
		(unicode.IsSpace(r) && r != ' ') || // other spaces (NBSP, ideographic…) look like a space but are not one
		!unicode.Is(unicode.L, r) && !unicode.Is(unicode.M, r) && !unicode.Is(unicode.N, r) &&
			!unicode.Is(unicode.P, r) && !unicode.Is(unicode.S, r) // unassigned or otherwise invisible
}

// displayHost is the origin a redirect URI returns to, for the pages: the
// scheme and host (in its ASCII form as sent; a non-ASCII host is shown
// escaped so look-alike letters cannot pass as another name), and "this
// computer" for loopback redirects of native apps.
func displayHost(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil || u.Host == "" {
		if err == nil && u.Scheme != "" {
			return u.Scheme + ": (an application on this device)"
		}
		return redirectURI
	}
	host := u.Hostname()
	for _, r := range host {
		if r > unicode.MaxASCII {
			host = url.PathEscape(host)
			break
		}
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
		return "this computer (" + u.Scheme + "://" + u.Host + ")"
	}
	out := u.Scheme + "://" + host
	if p := u.Port(); p != "" {
		out += ":" + p
	}
	return out
}
