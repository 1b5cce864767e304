package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the gateway's Prometheus instruments. Label values come from
// configuration (upstream names) or from closed sets (methods are folded to
// "other" unless known, reasons are fixed strings): a client can never mint a
// new label value, and no label carries a token or a subject.
type Metrics struct {
	reg          *prometheus.Registry
	Requests     *prometheus.CounterVec   // upstream, method, decision, status
	Latency      *prometheus.HistogramVec // upstream, method
	AuthFailures *prometheus.CounterVec   // upstream, reason
	Sessions     *prometheus.GaugeVec     // upstream
	Streams      *prometheus.GaugeVec     // upstream
	Children     *prometheus.GaugeVec     // upstream
}

// NewMetrics registers the instruments in a fresh registry (plus the Go and
// process collectors).
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_requests_total", Help: "MCP requests by upstream, JSON-RPC method, policy decision and HTTP status.",
		}, []string{"upstream", "method", "decision", "status"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mcpgate_request_duration_seconds", Help: "Time to the response headers of MCP requests.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"upstream", "method"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcpgate_auth_failures_total", Help: "Rejected requests by upstream and reason.",
		}, []string{"upstream", "reason"}),
		Sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mcpgate_active_sessions", Help: "Live MCP sessions."}, []string{"upstream"}),
		Streams:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mcpgate_active_streams", Help: "Open SSE streams."}, []string{"upstream"}),
		Children: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mcpgate_child_processes", Help: "Running stdio upstream processes."}, []string{"upstream"}),
	}
	reg.MustRegister(m.Requests, m.Latency, m.AuthFailures, m.Sessions, m.Streams, m.Children)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Observe records one finished MCP request.
func (m *Metrics) Observe(upstream, method, decision string, status int, d time.Duration) {
	method = MethodLabel(method)
	m.Requests.WithLabelValues(upstream, method, decision, statusLabel(status)).Inc()
	m.Latency.WithLabelValues(upstream, method).Observe(d.Seconds())
}

// Gauge adapts one labelled gauge to the Add(int) counters upstream
// packages accept.
type Gauge struct{ g prometheus.Gauge }

// Add moves the gauge by delta.
func (g Gauge) Add(delta int) { g.g.Add(float64(delta)) }

// GaugeFor returns an Add(int) adapter for vec's upstream label.
func GaugeFor(vec *prometheus.GaugeVec, upstream string) Gauge {
	return Gauge{vec.WithLabelValues(upstream)}
}

var knownMethods = map[string]bool{
	"initialize": true, "ping": true, "tools/list": true, "tools/call": true, "prompts/list": true,
	"prompts/get": true, "resources/list": true, "resources/read": true, "resources/templates/list": true,
	"resources/subscribe": true, "resources/unsubscribe": true, "completion/complete": true,
	"logging/setLevel": true, "server/discover": true, "subscriptions/listen": true,
	"notifications/initialized": true, "notifications/cancelled": true, "notifications/progress": true,
	"notifications/roots/list_changed": true, "": true, "get": true, "delete": true, "legacy_stream": true,
	"stream": true, "response": true, "batch": true,
}

// MethodLabel folds client-chosen method names into a closed set.
func MethodLabel(method string) string {
	if knownMethods[method] {
		return method
	}
	return "other"
}

func statusLabel(code int) string {
	if code >= 100 && code < 600 {
		return strconv.Itoa(code)
	}
	return "other"
}
