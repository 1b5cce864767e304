package auditlog

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// SyslogOptions configures the copy of the audit log sent to a local
// syslog daemon as RFC 5424 messages (MSGID "audit", severity info, the
// audit line as MSG). The daemon, not mcpgate, forwards off the host (over
// TLS): mcpgate only talks to it on a unix socket or on loopback.
type SyslogOptions struct {
	// Network is "unixgram" (e.g. /dev/log), "unix" (stream), "udp" or
	// "tcp". Stream transports frame messages by octet counting (RFC 6587
	// §3.4.1).
	Network string
	// Address is the socket path, or a loopback host:port.
	Address string
	// Facility is a syslog facility name. Default "authpriv".
	Facility string
	// AppName is the RFC 5424 APP-NAME. Default "mcpgate".
	AppName string
	// Logger reports delivery problems. Default: discard.
	Logger *slog.Logger
}

// syslogQueue bounds the lines waiting for the daemon: the request path
// never blocks on syslog; a full queue drops (and counts) lines, which the
// audit file still holds.
const syslogQueue = 4096

// Syslog ships lines to a syslog daemon from one goroutine.
type Syslog struct {
	o       SyslogOptions
	pri     int
	host    string
	pid     string
	ch      chan []byte
	done    chan struct{}
	dropped atomic.Uint64
	closed  atomic.Bool
	conn    net.Conn // owned by the run goroutine
}

var facilities = map[string]int{"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
	"news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18,
	"local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23}

// CheckSyslog validates o without dialling: config validation uses it.
func CheckSyslog(o SyslogOptions) error {
	switch o.Network {
	case "unixgram", "unix":
		if o.Address == "" {
			return errors.New("address: set the socket path, e.g. /dev/log")
		}
	case "udp", "tcp":
		host, _, err := net.SplitHostPort(o.Address)
		if err != nil {
			return fmt.Errorf("address: %q is not host:port", o.Address)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("address: %q is not on loopback: audit records travel in clear text here; send them to the local syslog daemon and let it forward over TLS", o.Address)
		}
	default:
		return fmt.Errorf("network: %q: use unixgram, unix, udp or tcp", o.Network)
	}
	if _, ok := facilities[o.Facility]; o.Facility != "" && !ok {
		return fmt.Errorf("facility: %q is not a syslog facility (e.g. authpriv, local0)", o.Facility)
	}
	return nil
}

// DialSyslog connects to the daemon (failing now, so a wrong address is a
// startup error) and starts the sender.
func DialSyslog(o SyslogOptions) (*Syslog, error) {
	if err := CheckSyslog(o); err != nil {
		return nil, fmt.Errorf("audit.syslog.%w", err)
	}
	if o.Facility == "" {
		o.Facility = "authpriv"
	}
	if o.AppName == "" {
		o.AppName = "mcpgate"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "-"
	}
	s := &Syslog{o: o, pri: facilities[o.Facility]*8 + 6, host: host, pid: strconv.Itoa(os.Getpid()),
		ch: make(chan []byte, syslogQueue), done: make(chan struct{})}
	c, err := s.dial()
	if err != nil {
		return nil, fmt.Errorf("audit.syslog: %w", err)
	}
	s.conn = c
	go s.run()
	return s, nil
}

func (s *Syslog) dial() (net.Conn, error) {
	return net.DialTimeout(s.o.Network, s.o.Address, 2*time.Second)
}

// send queues a copy of line without blocking.
func (s *Syslog) send(line []byte) {
	if s.closed.Load() {
		return
	}
	select {
	case s.ch <- append([]byte(nil), line...):
	default:
		s.dropped.Add(1)
	}
}

// Dropped counts lines the queue or the daemon lost.
func (s *Syslog) Dropped() uint64 { return s.dropped.Load() }

// run sends queued lines; after a failure it redials at most once a
// second, dropping (and counting) lines meanwhile.
func (s *Syslog) run() {
	defer close(s.done)
	var buf []byte
	var retry time.Time
	var told uint64
	for line := range s.ch {
		if s.conn == nil && time.Now().After(retry) {
			if c, err := s.dial(); err == nil {
				s.conn = c
			} else {
				retry = time.Now().Add(time.Second)
			}
		}
		if s.conn == nil {
			s.dropped.Add(1)
			continue
		}
		buf = s.format(buf[:0], line)
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := s.conn.Write(buf); err != nil {
			s.dropped.Add(1)
			_ = s.conn.Close()
			s.conn, retry = nil, time.Now().Add(time.Second)
		}
		if d := s.dropped.Load(); d != told {
			told = d
			s.o.Logger.Warn("audit lines not delivered to syslog (the audit file has them)", "dropped", d)
		}
	}
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// format appends one RFC 5424 message (§6):
// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG,
// with an octet count in front on stream transports (RFC 6587 §3.4.1).
func (s *Syslog) format(dst, line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	msg := fmt.Appendf(nil, "<%d>1 %s %s %s %s audit - ", s.pri, time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"), s.host, s.o.AppName, s.pid)
	msg = append(msg, line...)
	if s.o.Network == "tcp" || s.o.Network == "unix" {
		dst = strconv.AppendInt(dst, int64(len(msg)), 10)
		dst = append(dst, ' ')
	}
	return append(dst, msg...)
}

// Close stops accepting lines and waits (at most 2s) for the queue to
// drain. It is idempotent.
func (s *Syslog) Close() {
	if s.closed.Swap(true) {
		return
	}
	close(s.ch)
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
	}
}
