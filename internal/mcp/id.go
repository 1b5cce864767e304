package mcp

import (
	"encoding/json"
	"math"
	"strconv"
)

// CanonicalID returns the key under which a JSON-RPC id is compared: two
// spellings of one id give the same key, so an upstream that re-serialises
// an id (JSON.parse then JSON.stringify turns 1.0, 1e0 and 10e-1 into 1,
// and "\u0061" into "a") is still matched to the request it answers.
//
// Numbers are compared by their IEEE 754 double value, the value
// JavaScript and most JSON libraries hold an id in (so 2^53 and 2^53+1
// are one id, as they are to such a server; -0 is 0); strings by their
// decoded value. A string and a number never share a key. ok is false for
// anything else (null, objects, a string with an unpaired surrogate
// escape, which decoders disagree on).
func CanonicalID(raw json.RawMessage) (key string, ok bool) {
	raw = trimWS(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		s, ok := stringValue(raw)
		if !ok {
			return "", false
		}
		return "s" + s, true
	case c == '-' || c >= '0' && c <= '9':
		if !json.Valid(raw) {
			return "", false
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil && !math.IsInf(f, 0) {
			return "", false
		}
		if f == 0 {
			f = 0 // -0 is 0
		}
		return "n" + strconv.FormatFloat(f, 'g', -1, 64), true
	}
	return "", false
}

// SameID reports whether two raw ids are one id under CanonicalID.
func SameID(a, b json.RawMessage) bool {
	ka, ok1 := CanonicalID(a)
	kb, ok2 := CanonicalID(b)
	return ok1 && ok2 && ka == kb
}

func trimWS(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isWS(b[i]) {
		i++
	}
	for j > i && isWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
