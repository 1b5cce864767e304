package auditlog

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// rotatedLayout is the suffix of a rotated file: UTC time, fixed width, so
// that names sort in the order the files were written.
const rotatedLayout = "20060102T150405.000000000Z"

// tail is what a file's end says about the chain.
type tail struct {
	found    bool // a last record was read
	seq      uint64
	hash     [sha256.Size]byte
	kind     string
	torn     []byte // an unterminated last line (a crash mid-write)
	inActive bool   // torn is in the file being appended to
}

// openFile opens Path for appending (0600) and reads the chain's state from
// its tail, or from the newest rotated file when it is empty.
func (w *Writer) openFile() (tail, error) {
	path := w.opts.Path
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return tail{}, fmt.Errorf("audit.file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return tail{}, fmt.Errorf("audit.file: %w", err)
	}
	t, size, err := readTail(f)
	activeTorn := len(t.torn) > 0
	if err == nil && !t.found {
		err = continueRotated(path, &t)
	}
	if err != nil {
		f.Close()
		return tail{}, fmt.Errorf("audit.file %s: %w", path, err)
	}
	t.inActive = activeTorn
	w.file, w.out, w.size = f, f, size
	return t, nil
}

// continueRotated reads the tail of the newest rotated file beside path,
// so a chain survives a rotation followed by a restart.
func continueRotated(path string, t *tail) error {
	name := latestRotated(path)
	if name == "" {
		return nil
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	torn := t.torn
	rt, _, err := readTail(f)
	if err != nil {
		return fmt.Errorf("rotated file %s: %w", name, err)
	}
	if len(rt.torn) > 0 && len(torn) > 0 {
		return fmt.Errorf("both %s and the rotated file %s end in a torn line: run 'mcpgate audit verify' on them", path, name)
	}
	*t = rt
	if len(torn) > 0 {
		t.torn = torn
	}
	return nil
}

// latestRotated is the newest Path.<rotatedLayout> file, or "".
func latestRotated(path string) string {
	names, _ := filepath.Glob(path + ".*")
	var ok []string
	for _, n := range names {
		if _, err := time.Parse(rotatedLayout, n[len(path)+1:]); err == nil {
			ok = append(ok, n)
		}
	}
	if len(ok) == 0 {
		return ""
	}
	sort.Strings(ok)
	return ok[len(ok)-1]
}

// readTail reads the last record of f and an unterminated line after it.
func readTail(f *os.File) (tail, int64, error) {
	var t tail
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return t, 0, err
	}
	size := fi.Size()
	buf, err := tailBytes(f, size)
	if err != nil {
		return t, 0, err
	}
	if buf[len(buf)-1] != '\n' {
		i := bytes.LastIndexByte(buf, '\n')
		t.torn, buf = bytes.Clone(buf[i+1:]), buf[:i+1]
	}
	if len(buf) == 0 {
		return t, size, nil
	}
	buf = buf[:len(buf)-1]
	p, err := parseLine(buf[bytes.LastIndexByte(buf, '\n')+1:])
	if errors.Is(err, errNotChained) {
		return t, 0, errors.New("it holds records without a hash chain (an older mcpgate wrote it): move it aside (mv FILE FILE.unchained) so a new chained log starts")
	}
	if err != nil {
		return t, 0, fmt.Errorf("its last record is not valid: %v: run 'mcpgate audit verify' on it, then move it aside to start a new chain", err)
	}
	t.found, t.seq, t.hash, t.kind = true, p.Seq, p.hash, p.Kind
	return t, size, nil
}

// tailBytes reads f's end in growing windows until it holds the last
// complete line whole (two newlines, or the file's start) and whatever
// torn bytes follow it; a last line over MaxLine is refused.
func tailBytes(f *os.File, size int64) ([]byte, error) {
	for win := int64(64 << 10); ; win *= 2 {
		off := max(0, size-win)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil {
			return nil, err
		}
		if off == 0 || bytes.Count(buf, []byte{'\n'}) >= 2 {
			return buf, nil
		}
		if win > 2*MaxLine {
			return nil, fmt.Errorf("its last line is longer than %d bytes: not an audit log?", MaxLine)
		}
	}
}

// rotateIfDue rotates the file before a record of about n payload bytes
// would take it past RotateBytes: a signed rotate record ends the old file,
// which is renamed; a new file continues the chain. A failed rename or
// open leaves the records in the old file, chain intact. Callers hold mu.
func (w *Writer) rotateIfDue(n int) {
	const chainBytes = 300 // the chain fields a record gains, signed
	if w.file == nil || w.opts.RotateBytes <= 0 || w.size == 0 || w.size+int64(n+chainBytes) <= w.opts.RotateBytes {
		return
	}
	if err := w.emitEvent(event{Kind: "rotate"}); err != nil {
		return
	}
	path := w.opts.Path
	name := path + "." + w.opts.Now().UTC().Format(rotatedLayout)
	if _, err := os.Lstat(name); err == nil {
		w.report(fmt.Errorf("rotate: %s exists", name))
		return
	}
	if err := os.Rename(path, name); err != nil {
		w.report(fmt.Errorf("rotate: %w", err))
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		w.report(fmt.Errorf("rotate: %w (records continue in %s)", err, name))
		return
	}
	_ = w.file.Close()
	w.file, w.out, w.size = f, f, 0
}
