package authserver

import (
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxLoggedName is how much of a submitted user name a log line carries.
const maxLoggedName = 64

// logName is a submitted user name as logs show it: at most
// maxLoggedName bytes (cut at a character boundary, the full length
// noted), control and formatting characters and invalid UTF-8 replaced by
// '?'. A caller can make the server write a line, never a large one.
func logName(user string) string {
	var b strings.Builder
	for i, r := range user {
		if i >= maxLoggedName {
			b.WriteString("…(" + strconv.Itoa(len(user)) + " bytes)")
			break
		}
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// logLimiter lets one line per kind through per interval and counts the
// rest, for log lines any caller can trigger at request rate. Kinds are
// constants, so its table does not grow.
type logLimiter struct {
	mu    sync.Mutex // guards last and held
	every time.Duration
	last  map[string]time.Time
	held  map[string]int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, last: map[string]time.Time{}, held: map[string]int{}}
}

// allow reports whether to log kind now, and how many lines of that kind
// were held back since the last one.
func (l *logLimiter) allow(kind string, now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[kind]; ok && now.Sub(t) < l.every {
		l.held[kind]++
		return false, 0
	}
	n := l.held[kind]
	l.last[kind], l.held[kind] = now, 0
	return true, n
}
