package dpop

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
)

// A proof's header and claims are read strictly (RFC 9449 §4.2, RFC 7515
// §4, RFC 7519 §4): one JSON object, each member name exactly once, every
// member the JSON type its definition gives it. Go's encoding/json would
// otherwise take the last of duplicate names, match names case-
// insensitively and turn a quoted number into a json.Number, so that the
// gateway would read a proof differently from other verifiers.

// headerMembers and claimMembers are the members this verifier reads.
var (
	headerMembers = []string{"typ", "alg", "jwk"}
	claimMembers  = []string{"jti", "htm", "htu", "iat", "ath", "nonce", "content_digest"}
)

// strictObject decodes one JSON object into its members, refusing
// duplicate names, names that differ from a known member only in case,
// and anything after the object.
func strictObject(data []byte, known []string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errors.New("not a JSON object")
		}
		name, ok := t.(string)
		if !ok {
			return nil, errors.New("not a JSON object")
		}
		if _, dup := out[name]; dup {
			return nil, errors.New("member " + strconv.Quote(name) + " appears more than once")
		}
		for _, k := range known {
			if name != k && strings.EqualFold(name, k) {
				return nil, errors.New("member " + strconv.Quote(name) + " is not " + strconv.Quote(k) + " (member names are case-sensitive)")
			}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("not a JSON object")
		}
		out[name] = raw
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, errors.New("not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return out, nil
}

// jsonString reads a member that must be a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// checkHeader reads the protected header of a compact proof strictly:
// typ and alg JSON strings, jwk a JSON object, no duplicate or case-
// variant member names. go-jose checks the values afterwards.
func checkHeader(proof string) error {
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return invalid("the DPoP proof must be a JWS in compact serialization")
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return invalid("the DPoP proof header is not base64url")
	}
	m, err := strictObject(hdr, headerMembers)
	if err != nil {
		return invalid("the DPoP proof header is refused: %s", err)
	}
	for _, k := range []string{"typ", "alg"} {
		if _, ok := jsonString(m[k]); !ok {
			return invalid("the DPoP proof header needs %s as a JSON string", k)
		}
	}
	if raw := m["jwk"]; len(raw) == 0 || raw[0] != '{' {
		return invalid("the DPoP proof header needs jwk as a JSON object")
	}
	if _, err := strictObject(m["jwk"], nil); err != nil {
		return invalid("the DPoP proof jwk is refused: %s", err)
	}
	return nil
}

// claims are a proof's claims, read by parseClaims.
type claims struct {
	JTI, HTM, HTU      string
	IAT                int64
	ATH, Nonce, Digest *string
}

// parseClaims reads the proof claims strictly: jti, htm, htu JSON strings;
// iat a JSON number (a NumericDate, RFC 7519 §2: fractions allowed, read
// to the second); ath, nonce and content_digest JSON strings when present
// (null is not absent).
func parseClaims(payload []byte) (*claims, error) {
	m, err := strictObject(payload, claimMembers)
	if err != nil {
		return nil, invalid("the DPoP proof claims are refused: %s", err)
	}
	c := &claims{}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"jti", &c.JTI}, {"htm", &c.HTM}, {"htu", &c.HTU}} {
		raw, ok := m[f.name]
		if !ok {
			continue // checked by Check (needs a jti, htm and htu must match)
		}
		if *f.dst, ok = jsonString(raw); !ok {
			return nil, invalid("the DPoP proof claim %s must be a JSON string", f.name)
		}
	}
	raw, ok := m["iat"]
	if !ok {
		return nil, invalid("the DPoP proof needs an iat")
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return nil, invalid("the DPoP proof iat must be a JSON number (NumericDate)")
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || math.Abs(f) > 1<<53 {
		return nil, invalid("the DPoP proof iat must be a JSON number (NumericDate)")
	}
	c.IAT = int64(math.Floor(f))
	for _, f := range []struct {
		name string
		dst  **string
	}{{"ath", &c.ATH}, {"nonce", &c.Nonce}, {"content_digest", &c.Digest}} {
		raw, ok := m[f.name]
		if !ok {
			continue
		}
		s, ok := jsonString(raw)
		if !ok {
			return nil, invalid("the DPoP proof claim %s must be a JSON string", f.name)
		}
		*f.dst = &s
	}
	return c, nil
}
