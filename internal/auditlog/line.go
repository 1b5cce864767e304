package auditlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

const (
	hashMarker = `,"hash":"`
	sigMarker  = `,"sig":"`
	hashHex    = 2 * sha256.Size
	sigB64     = 88 // base64.StdEncoding of a 64-byte Ed25519 signature
	keyIDHex   = 16
	// hashTail is `,"hash":"<64 hex>"}`: the fixed end of every line.
	hashTail = len(hashMarker) + hashHex + 2
	// sigTail is `,"sig":"<88 base64>"`: the fixed end of a signed line's
	// hashed part.
	sigTail = len(sigMarker) + sigB64 + 1
)

// zeroHash is the prev of a chain's first record.
var zeroHash [sha256.Size]byte

// record is what the verifier and the restart logic read from a line.
type record struct {
	Seq        uint64 `json:"seq"`
	Prev       string `json:"prev"`
	Key        string `json:"key"`
	Sig        string `json:"sig"`
	Hash       string `json:"hash"`
	Kind       string `json:"kind"`
	RequestID  string `json:"request_id"`
	SignEvery  int    `json:"sign_every"`
	TornBytes  int    `json:"torn_bytes"`
	TornSHA256 string `json:"torn_sha256"`
}

// parsed is one line split at its markers.
type parsed struct {
	record
	hash   [sha256.Size]byte
	prev   [sha256.Size]byte
	signed []byte // bytes the signature covers (nil when unsigned)
	sig    []byte
}

// errNotChained marks a line that has no chain fields at all (a record
// written before chaining, or foreign text).
var errNotChained = errors.New("it has no hash chain fields")

// parseLine splits one line (without its newline) at the markers, checks
// its hash against its bytes and decodes the chain fields. The error says
// what is wrong in words an operator can act on.
func parseLine(line []byte) (*parsed, error) {
	n := len(line)
	if n < hashTail || !bytes.HasSuffix(line, []byte(`"}`)) || string(line[n-hashTail:n-hashTail+len(hashMarker)]) != hashMarker {
		if bytes.Contains(line, []byte(`"hash":`)) {
			return nil, errors.New("its hash member is not at the end of the line in the fixed format (edited)")
		}
		return nil, errNotChained
	}
	p := &parsed{}
	hashed := line[:n-hashTail]
	if _, err := hex.Decode(p.hash[:], line[n-hashHex-2:n-2]); err != nil {
		return nil, errors.New("its hash is not hex (edited)")
	}
	if sha256.Sum256(hashed) != p.hash {
		return nil, errors.New("its hash does not match its content (the record was edited)")
	}
	if err := json.Unmarshal(line, &p.record); err != nil {
		return nil, fmt.Errorf("it is not a JSON object: %v", err)
	}
	if p.Hash != hex.EncodeToString(p.hash[:]) {
		return nil, errors.New("it has more than one hash member (edited)")
	}
	if _, err := hex.Decode(p.prev[:], []byte(p.Prev)); err != nil || len(p.Prev) != hashHex {
		return nil, errors.New("its prev member is not a 64-digit hex hash (edited)")
	}
	if p.Seq == 0 {
		return nil, errors.New("it has no seq (edited)")
	}
	return p, p.splitSig(hashed)
}

// splitSig finds a signature at the fixed place before the hash marker.
func (p *parsed) splitSig(hashed []byte) error {
	n := len(hashed)
	if n < sigTail || string(hashed[n-sigTail:n-sigTail+len(sigMarker)]) != sigMarker {
		if p.Sig != "" {
			return errors.New("its sig member is not just before the hash (edited)")
		}
		return nil
	}
	sig, err := base64.StdEncoding.DecodeString(string(hashed[n-sigB64-1 : n-1]))
	if err != nil || len(sig) != 64 || p.Sig != string(hashed[n-sigB64-1:n-1]) {
		return errors.New("its signature is malformed (edited)")
	}
	p.signed, p.sig = hashed[:n-sigTail], sig
	return nil
}

// seal appends obj (a JSON object without a trailing newline) to dst with
// the chain fields, signing it when sign is not nil, and returns dst and
// the new record's hash. It allocates nothing when dst has room (sign
// aside).
func seal(dst, obj []byte, seq uint64, prev *[sha256.Size]byte, s *signer) ([]byte, [sha256.Size]byte) {
	dst = append(dst, obj[:len(obj)-1]...)
	if len(obj) > 2 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"seq":`...)
	dst = appendUint(dst, seq)
	dst = append(dst, `,"prev":"`...)
	dst = hex.AppendEncode(dst, prev[:])
	dst = append(dst, '"')
	if s != nil {
		dst = s.appendSig(dst)
	}
	h := sha256.Sum256(dst)
	dst = append(dst, hashMarker...)
	dst = hex.AppendEncode(dst, h[:])
	dst = append(dst, `"}`...)
	return append(dst, '\n'), h
}

func appendUint(dst []byte, v uint64) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		if v /= 10; v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

// checkObject says whether p is one JSON object the writer can chain.
func checkObject(p []byte) ([]byte, error) {
	p = bytes.TrimRight(p, "\n")
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' || bytes.IndexByte(p, '\n') >= 0 {
		return nil, errors.New("auditlog: a record must be one JSON object on one line")
	}
	return p, nil
}
