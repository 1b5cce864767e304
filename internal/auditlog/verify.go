package auditlog

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxLine bounds one line that the verifier and a restart read: 64 MiB,
// far above a gateway record (a 4 MiB request body, the default limit,
// JSON-escaped, stays under 25 MiB).
const MaxLine = 64 << 20

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Key, when set, checks every signature and requires the log to be
	// signed as its signed start records promise.
	Key ed25519.PublicKey
	// Continued accepts a first file whose chain begins after seq 1 (its
	// predecessors were deleted by retention); without it that is an error.
	Continued bool
}

// Result is what a successful verification found.
type Result struct {
	Records    int
	Signatures int // verified (0 without a key)
	Unchecked  int // signatures seen but not checked (no key)
	FirstSeq   uint64
	// UnsignedTail counts the records after the last signature, which a
	// writer of the file could have altered or removed (with a key only).
	UnsignedTail int
	TornLines    []string // torn lines acknowledged by a restart record
}

// BreakError names the first record that does not verify.
type BreakError struct {
	File string
	Line int
	Seq  uint64 // 0 when the line has none
	ID   string // the record's request_id, if any
	Msg  string
}

func (e *BreakError) Error() string {
	where := fmt.Sprintf("%s:%d", e.File, e.Line)
	if e.Seq != 0 {
		where += fmt.Sprintf(" (seq %d", e.Seq)
		if e.ID != "" {
			where += fmt.Sprintf(", request_id %q", e.ID) // quoted: the log's text is not trusted
		}
		where += ")"
	}
	return where + ": " + e.Msg
}

// pos is where one verified record sits.
type pos struct {
	file string
	line int
	seq  uint64
	hash [sha256.Size]byte
}

// verifier walks records in order; the fields hold what the checks need.
type verifier struct {
	o         VerifyOptions
	keyID     string
	res       Result
	last      *pos // the previous record
	before    *pos // the one before it (to name an inserted record)
	torn      *tornLine
	signEvery int // from the last signed start/restart record
	sinceSig  int
	file      string
	line      int
}

// tornLine is an invalid line waiting for a restart record to own it.
type tornLine struct {
	file string
	line int
	text []byte
	why  error
}

// Verify checks the files, in the order written, as one chain.
func Verify(files []string, o VerifyOptions) (Result, error) {
	v := &verifier{o: o}
	if o.Key != nil {
		v.keyID = KeyID(o.Key)
	}
	for _, name := range files {
		if err := v.file1(name); err != nil {
			return v.res, err
		}
	}
	if v.torn != nil {
		return v.res, v.brk(v.torn.file, v.torn.line, nil, "%v; no restart record acknowledges it (the writer crashed and has not restarted, or the line was damaged)", v.torn.why)
	}
	if v.last == nil {
		return v.res, errors.New("no records")
	}
	if o.Key != nil && v.res.Signatures == 0 {
		return v.res, v.brk(v.last.file, v.last.line, nil, "no record is signed: the log was written without a key, or rewritten by someone without it")
	}
	v.res.UnsignedTail = v.sinceSig
	return v.res, nil
}

func (v *verifier) file1(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	v.file, v.line = name, 0
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := readLine(r)
		if len(line) > 0 {
			v.line++
			terminated := line[len(line)-1] == '\n'
			if err := v.one(bytes.TrimSuffix(line, []byte{'\n'}), terminated); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, v.line+1, err)
		}
	}
}

// readLine reads one line with its newline, at most MaxLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		frag, err := r.ReadSlice('\n')
		out = append(out, frag...)
		if len(out) > MaxLine {
			return nil, fmt.Errorf("line longer than %d bytes: not an audit log", MaxLine)
		}
		if err != bufio.ErrBufferFull {
			return out, err
		}
	}
}

// one checks one line: its own hash, its link to the previous record, its
// signature.
func (v *verifier) one(line []byte, terminated bool) error {
	p, err := parseLine(line)
	if !terminated {
		p, err = nil, errors.New("it has no newline: torn (the write did not finish: a crash, or the file was cut)")
	}
	if err != nil {
		if v.torn != nil {
			return v.brk(v.torn.file, v.torn.line, nil, "%v", v.torn.why)
		}
		v.torn = &tornLine{file: v.file, line: v.line, text: bytes.Clone(line), why: fmt.Errorf("not a valid chained record: %w", err)}
		return nil
	}
	if err := v.acknowledge(p); err != nil {
		return err
	}
	if err := v.link(p); err != nil {
		return err
	}
	if err := v.signature(p); err != nil {
		return err
	}
	v.before, v.last = v.last, &pos{file: v.file, line: v.line, seq: p.Seq, hash: p.hash}
	v.res.Records++
	return nil
}

// acknowledge accepts a pending torn line only when this record is the
// restart (or start) record that names its exact length and hash.
func (v *verifier) acknowledge(p *parsed) error {
	if v.torn == nil {
		return nil
	}
	t := v.torn
	h := sha256.Sum256(t.text)
	if p.Kind != "restart" && p.Kind != "start" {
		return v.brk(t.file, t.line, nil, "%v", t.why)
	}
	if p.TornBytes != len(t.text) || p.TornSHA256 != hex.EncodeToString(h[:]) {
		return v.brk(t.file, t.line, nil, "%v; the restart record at %s:%d names a torn line of %d bytes with another hash: this line was altered after the restart", t.why, v.file, v.line, p.TornBytes)
	}
	v.res.TornLines = append(v.res.TornLines, fmt.Sprintf("%s:%d (%d bytes, acknowledged by the restart record at %s:%d)", t.file, t.line, len(t.text), v.file, v.line))
	v.torn = nil
	return nil
}

// link checks that p follows the previous record, and says what the break
// looks like when it does not.
func (v *verifier) link(p *parsed) error {
	if v.last == nil {
		if p.Seq == 1 && p.prev == zeroHash {
			v.res.FirstSeq = 1
			return nil
		}
		if v.o.Continued {
			v.res.FirstSeq = p.Seq
			return nil
		}
		return v.brk(v.file, v.line, p, "the chain begins here at seq %d, not 1: earlier records or files are missing; pass the earlier files first, or --continued if retention deleted them", p.Seq)
	}
	l := v.last
	if p.Seq == l.seq+1 && p.prev == l.hash {
		return nil
	}
	if v.before != nil && p.Seq == v.before.seq+1 && p.prev == v.before.hash {
		return v.brk(l.file, l.line, nil, "this record was inserted: the next record (%s:%d) links to the one before it (%s:%d)", v.file, v.line, v.before.file, v.before.line)
	}
	at := fmt.Sprintf("the previous record (%s:%d, seq %d)", l.file, l.line, l.seq)
	switch {
	case p.Seq == 1 && p.prev == zeroHash:
		return v.brk(v.file, v.line, p, "a new chain starts here: the chain ending at %s was not continued (the writer lost its state: the file was moved or emptied while it was stopped?)", at)
	case p.Seq <= l.seq:
		return v.brk(v.file, v.line, p, "seq %d does not follow seq %d of %s: records were reordered, duplicated or inserted", p.Seq, l.seq, at)
	case p.Seq > l.seq+1 && v.file != l.file && v.line == 1:
		return v.brk(v.file, v.line, p, "this file does not continue %s: %s missing between the files: was a file left out or deleted?", at, missing(l.seq, p.Seq))
	case p.Seq > l.seq+1:
		return v.brk(v.file, v.line, p, "%s missing after %s: deleted, or moved (reordered)", missing(l.seq, p.Seq), at)
	default:
		return v.brk(v.file, v.line, p, "prev does not match the hash of %s: that record was altered (hash recomputed), or this one was", at)
	}
}

// missing names the records between seq a and b.
func missing(a, b uint64) string {
	if b-a == 2 {
		return fmt.Sprintf("1 record (seq %d)", a+1)
	}
	return fmt.Sprintf("%d records (seq %d to %d)", b-a-1, a+1, b-1)
}

// signature checks p's signature against the key, and that records are
// signed as often as the last signed policy promised.
func (v *verifier) signature(p *parsed) error {
	if p.sig == nil {
		v.sinceSig++
		if v.o.Key != nil && v.signEvery > 0 && v.sinceSig >= v.signEvery {
			return v.brk(v.file, v.line, p, "%d records without a signature, but the signed policy signs every %d: records from here on were written without the key", v.sinceSig, v.signEvery)
		}
		return nil
	}
	if v.o.Key == nil {
		v.res.Unchecked++
		v.sinceSig = 0
		return nil
	}
	if p.Key != v.keyID {
		return v.brk(v.file, v.line, p, "signed by key %s, not by the given key %s", p.Key, v.keyID)
	}
	if !ed25519.Verify(v.o.Key, p.signed, p.sig) {
		return v.brk(v.file, v.line, p, "the signature does not verify with key %s: the record was forged or altered", v.keyID)
	}
	v.res.Signatures++
	v.sinceSig = 0
	if p.Kind == "start" || p.Kind == "restart" {
		v.signEvery = p.SignEvery
	}
	return nil
}

func (v *verifier) brk(file string, line int, p *parsed, format string, args ...any) error {
	e := &BreakError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
	if p != nil {
		e.Seq, e.ID = p.Seq, p.RequestID
	}
	return e
}
