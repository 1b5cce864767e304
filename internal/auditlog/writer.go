package auditlog

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Options configures a Writer. The zero value of each field is its default.
type Options struct {
	// Path is the audit file, opened for appending and created 0600. When
	// it already holds records the chain continues from its last record
	// (or, when it is empty, from the newest rotated file beside it).
	// "" means Stream receives the lines and every process starts a new
	// chain.
	Path string
	// Stream is the destination when Path is "".
	Stream io.Writer
	// RotateBytes rotates Path before a record would make it larger: the
	// file is renamed Path.<UTC time> and a new one continues the chain.
	// 0 never rotates.
	RotateBytes int64
	// Key signs records; nil writes an unsigned chain.
	Key ed25519.PrivateKey
	// SignEvery signs every SignEvery-th record (1 signs each one).
	// Default 1000.
	SignEvery int
	// SignInterval writes a signed checkpoint when records were written
	// but none signed for this long. Default 10s; negative turns it off.
	SignInterval time.Duration
	// Syslog, when not nil, receives a copy of every line (syslog.go).
	Syslog *Syslog
	// Logger reports write errors (at most one per errorEvery).
	// Default: discard.
	Logger *slog.Logger
	// Now is the clock of the writer's own records. Default time.Now.
	Now func() time.Time
}

// errorEvery bounds how often a failing destination is logged.
const errorEvery = 10 * time.Second

// Writer appends chained records. It is safe for concurrent use; the lines
// appear in the order Write calls take its lock.
type Writer struct {
	opts   Options
	signer *signer // nil: unsigned

	mu       sync.Mutex // guards all fields below and the order of lines
	out      io.Writer
	file     *os.File // nil for a stream
	size     int64    // bytes in file
	seq      uint64   // the last record's seq
	prev     [sha256.Size]byte
	unsigned int    // records since the last signed one
	buf      []byte // the line being sealed, reused
	closed   bool
	errAt    time.Time // when an error was last logged

	stop, done chan struct{} // the checkpoint ticker's
	once       sync.Once     // makes Close idempotent
}

// event is a record the writer adds itself (see the package doc).
type event struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	SignEvery int       `json:"sign_every,omitempty"`
	// Clean says, on restart, whether the previous process ended with a
	// stop record (false: it crashed or was killed).
	Clean      *bool  `json:"clean,omitempty"`
	TornBytes  int    `json:"torn_bytes,omitempty"`
	TornSHA256 string `json:"torn_sha256,omitempty"`
}

// Open starts a writer: it reads the chain's state from the file's tail,
// acknowledges a torn last line, and writes a start or restart record.
func Open(o Options) (*Writer, error) {
	o.setDefaults()
	w := &Writer{opts: o, out: o.Stream, buf: make([]byte, 0, 1024)}
	if o.Key != nil {
		w.signer = &signer{key: o.Key, id: KeyID(o.Key.Public().(ed25519.PublicKey))}
	}
	var t tail
	if o.Path != "" {
		var err error
		if t, err = w.openFile(); err != nil {
			return nil, err
		}
	} else if o.Stream == nil {
		return nil, errors.New("auditlog: no path and no stream")
	}
	if err := w.begin(t); err != nil {
		w.closeFile()
		return nil, err
	}
	if w.signer != nil && o.SignInterval > 0 {
		w.stop, w.done = make(chan struct{}), make(chan struct{})
		go w.tick()
	}
	return w, nil
}

func (o *Options) setDefaults() {
	if o.SignEvery <= 0 {
		o.SignEvery = 1000
	}
	if o.SignInterval == 0 {
		o.SignInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// begin writes the first record of this process: start for a new chain,
// restart (naming a torn line) when it continues one.
func (w *Writer) begin(t tail) error {
	ev := event{Kind: "start"}
	if t.found {
		w.seq, w.prev = t.seq, t.hash
		clean := t.kind == "stop"
		ev.Kind, ev.Clean = "restart", &clean
	}
	if len(t.torn) > 0 {
		h := sha256.Sum256(t.torn)
		ev.TornBytes, ev.TornSHA256 = len(t.torn), fmt.Sprintf("%x", h)
		if t.inActive {
			// End the torn line so the restart record is a line of its own.
			if _, err := w.out.Write([]byte{'\n'}); err != nil {
				return fmt.Errorf("audit.file: %w", err)
			}
			w.size++
		}
	}
	if w.signer != nil {
		ev.SignEvery = w.opts.SignEvery
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.emitEvent(ev); err != nil {
		return fmt.Errorf("audit.file: %w", err)
	}
	return nil
}

// Write appends p, one JSON object (a trailing newline is allowed), as the
// chain's next record. It implements io.Writer for the gateway.
func (w *Writer) Write(p []byte) (int, error) {
	obj, err := checkObject(p)
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errors.New("auditlog: closed")
	}
	w.rotateIfDue(len(obj))
	if err := w.emit(obj, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// emitEvent writes one of the writer's own records, signed when a key is
// configured. Callers hold mu.
func (w *Writer) emitEvent(ev event) error {
	ev.Time = w.opts.Now().UTC()
	if ev.Kind != "start" && ev.Kind != "restart" && w.signer != nil {
		ev.SignEvery = w.opts.SignEvery
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return w.emit(b, true)
}

// emit seals obj as record seq+1 and writes it. A record that could not be
// written does not advance the chain. Callers hold mu.
func (w *Writer) emit(obj []byte, forceSign bool) error {
	var s *signer
	if w.signer != nil && (forceSign || w.unsigned+1 >= w.opts.SignEvery) {
		s = w.signer
	}
	line, h := seal(w.buf[:0], obj, w.seq+1, &w.prev, s)
	w.buf = line[:0]
	if _, err := w.out.Write(line); err != nil {
		w.report(err)
		w.cutPartial()
		return err
	}
	w.seq, w.prev, w.size = w.seq+1, h, w.size+int64(len(line))
	if s != nil {
		w.unsigned = 0
	} else {
		w.unsigned++
	}
	if w.opts.Syslog != nil {
		w.opts.Syslog.send(line)
	}
	return nil
}

// cutPartial removes what a failed write left of a line (a full disk
// writes part of it), so the next record does not continue that line.
// Callers hold mu.
func (w *Writer) cutPartial() {
	if w.file == nil {
		return
	}
	if fi, err := w.file.Stat(); err == nil && fi.Size() > w.size {
		_ = w.file.Truncate(w.size)
	}
}

// report logs a write error, at most once per errorEvery. Callers hold mu.
func (w *Writer) report(err error) {
	if now := time.Now(); now.Sub(w.errAt) >= errorEvery {
		w.errAt = now
		w.opts.Logger.Error("audit write failed; records are being lost", "err", err.Error())
	}
}

// tick writes a signed checkpoint every SignInterval when records were
// written since the last signature, bounding the unsigned tail in time.
func (w *Writer) tick() {
	defer close(w.done)
	t := time.NewTicker(w.opts.SignInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			if !w.closed && w.unsigned > 0 {
				_ = w.emitEvent(event{Kind: "checkpoint"})
			}
			w.mu.Unlock()
		}
	}
}

// Checkpoint writes a signed checkpoint now if any record is unsigned.
func (w *Writer) Checkpoint() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.signer == nil || w.unsigned == 0 {
		return nil
	}
	return w.emitEvent(event{Kind: "checkpoint"})
}

// Close writes a stop record (signed when a key is configured) and closes
// the file. It is idempotent.
func (w *Writer) Close() error {
	var err error
	w.once.Do(func() {
		if w.stop != nil {
			close(w.stop)
			<-w.done
		}
		w.mu.Lock()
		err = w.emitEvent(event{Kind: "stop"})
		w.closed = true
		if cerr := w.closeFile(); err == nil {
			err = cerr
		}
		w.mu.Unlock()
		if w.opts.Syslog != nil {
			w.opts.Syslog.Close()
		}
	})
	return err
}

func (w *Writer) closeFile() error {
	if w.file == nil {
		return nil
	}
	err := w.file.Close()
	w.file = nil
	return err
}
