package telemetry

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMethodLabelIsClosed(t *testing.T) {
	if MethodLabel("tools/call") != "tools/call" || MethodLabel("evil/\"label") != "other" || MethodLabel(strings.Repeat("x", 1000)) != "other" {
		t.Fatal("method labels must be a closed set")
	}
}

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics()
	m.Observe("files", "attacker-chosen-method", "allow", 200, time.Millisecond)
	m.Observe("files", "tools/call", "deny", 403, time.Millisecond)
	GaugeFor(m.Sessions, "files").Add(2)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`mcpgate_requests_total{decision="allow",method="other",status="200",upstream="files"} 1`,
		`mcpgate_requests_total{decision="deny",method="tools/call",status="403",upstream="files"} 1`,
		`mcpgate_active_sessions{upstream="files"} 2`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Fatalf("missing %s", want)
		}
	}
	if bytes.Contains(body, []byte("attacker-chosen")) {
		t.Fatal("client-chosen value became a label")
	}
}

func TestLoggerLevelsAndFormats(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"msg":"shown"`) {
		t.Fatalf("%s", buf.String())
	}
	if _, err := NewLogger(&buf, "info", "xml"); err == nil {
		t.Fatal("bad format accepted")
	}
	if _, err := NewLogger(&buf, "loud", "text"); err == nil {
		t.Fatal("bad level accepted")
	}
	if a, b := NewRequestID(), NewRequestID(); a == b || len(a) < 8 {
		t.Fatalf("request ids %q %q", a, b)
	}
}
