package auditlog

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rfc5424 = regexp.MustCompile(`^<86>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ mcpgate \d+ audit - (\{.*\})$`)

func TestSyslogDatagram(t *testing.T) {
	for _, network := range []string{"udp", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unixgram" {
				addr = filepath.Join(t.TempDir(), "log.sock")
			}
			c, err := net.ListenPacket(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := DialSyslog(SyslogOptions{Network: network, Address: c.LocalAddr().String()})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			writeLog(t, "", 3, Options{Path: path, Syslog: s})
			lines := readLines(t, path)
			buf := make([]byte, 65536)
			for i, want := range lines {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				m := rfc5424.FindSubmatch(buf[:n])
				if m == nil || string(m[1])+"\n" != want {
					t.Fatalf("message %d: %q, want the line %q", i, buf[:n], want)
				}
			}
		})
	}
}

func TestSyslogTCPOctetCounting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r := bufio.NewReader(c)
		var msgs []string
		for {
			n, err := r.ReadString(' ')
			if err != nil {
				break
			}
			size, _ := strconv.Atoi(strings.TrimSpace(n))
			b := make([]byte, size)
			if _, err := io.ReadFull(r, b); err != nil {
				break
			}
			msgs = append(msgs, string(b))
		}
		got <- msgs
	}()
	s, err := DialSyslog(SyslogOptions{Network: "tcp", Address: ln.Addr().String(), Facility: "local0"})
	if err != nil {
		t.Fatal(err)
	}
	path := writeLog(t, t.TempDir(), 4, Options{Syslog: s})
	msgs := <-got
	if len(msgs) != 6 || !strings.HasPrefix(msgs[0], "<134>1 ") || !strings.HasSuffix(msgs[5], strings.TrimSuffix(readLines(t, path)[5], "\n")) {
		t.Fatalf("messages: %q", msgs)
	}
}

func TestSyslogRefusesNonLoopbackAndBadNames(t *testing.T) {
	for _, o := range []SyslogOptions{
		{Network: "udp", Address: "192.0.2.1:514"},
		{Network: "tcp", Address: "syslog.example.com:514"},
		{Network: "udp", Address: "127.0.0.1"},
		{Network: "tls", Address: "127.0.0.1:6514"},
		{Network: "unixgram"},
		{Network: "udp", Address: "127.0.0.1:514", Facility: "nope"},
	} {
		if _, err := DialSyslog(o); err == nil || !strings.HasPrefix(err.Error(), "audit.syslog.") {
			t.Errorf("%+v: %v", o, err)
		}
	}
}
