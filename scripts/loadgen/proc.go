package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// memory is one process's memory from /proc/<pid>/smaps_rollup, in KiB.
// Private is Private_Clean + Private_Dirty: what the process alone holds,
// the figure that grows with its own allocations (RSS also counts shared
// pages of the binary and libraries).
type memory struct {
	RSS, PSS, Private, Anonymous int64
}

func (m memory) add(o memory) memory {
	return memory{m.RSS + o.RSS, m.PSS + o.PSS, m.Private + o.Private, m.Anonymous + o.Anonymous}
}

func (m memory) String() string {
	return fmt.Sprintf("RSS %s, PSS %s, private %s, anonymous %s", kib(m.RSS), kib(m.PSS), kib(m.Private), kib(m.Anonymous))
}

func kib(n int64) string {
	if n >= 10*1024 {
		return fmt.Sprintf("%.1f MiB", float64(n)/1024)
	}
	return fmt.Sprintf("%d KiB", n)
}

// parseSmapsRollup reads the fields of smaps_rollup ("Rss:  1234 kB").
// A file without an Rss line is an error (not a zero reading).
func parseSmapsRollup(r io.Reader) (memory, error) {
	var m memory
	var privClean, privDirty int64
	found := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			m.RSS, found = v, true
		case "Pss:":
			m.PSS = v
		case "Private_Clean:":
			privClean = v
		case "Private_Dirty:":
			privDirty = v
		case "Anonymous:":
			m.Anonymous = v
		}
	}
	if err := sc.Err(); err != nil {
		return memory{}, err
	}
	if !found {
		return memory{}, fmt.Errorf("smaps_rollup: no Rss line")
	}
	m.Private = privClean + privDirty
	return m, nil
}

func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	return parseSmapsRollup(f)
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 100

// parseStatCPU returns utime+stime from /proc/<pid>/stat. The command
// name (field 2) may hold spaces and parentheses, so fields are counted
// after the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no ')'")
	}
	f := strings.Fields(stat[i+1:])
	// after ')': state(3) ppid(4) ... utime is field 14, stime 15 → f[11], f[12]
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name, want ≥ 13", len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: utime/stime not numbers: %q %q", f[11], f[12])
	}
	return time.Duration(u+s) * time.Second / clockTick, nil
}

func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// children lists the direct children of pid (stdio MCP servers).
func children(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// childrenMemory sums the memory of pid's children.
func childrenMemory(pid int) (memory, int) {
	var sum memory
	kids := children(pid)
	for _, c := range kids {
		if m, err := readMemory(c); err == nil {
			sum = sum.add(m)
		}
	}
	return sum, len(kids)
}

// gauges are the figures the gateway's /metrics exposes about its runtime.
type gauges struct {
	Goroutines, HeapInuse, StackInuse float64
}

// parseMetrics picks go_goroutines and the heap/stack gauges out of the
// Prometheus text format. A missing go_goroutines is an error.
func parseMetrics(r io.Reader) (gauges, error) {
	var g gauges
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			g.Goroutines, found = v, true
		case "go_memstats_heap_inuse_bytes":
			g.HeapInuse = v
		case "go_memstats_stack_inuse_bytes":
			g.StackInuse = v
		}
	}
	if !found {
		return gauges{}, fmt.Errorf("metrics: no go_goroutines")
	}
	return g, sc.Err()
}

var metricsClient = &http.Client{Timeout: 10 * time.Second}

func readGauges(metricsURL string) (gauges, error) {
	resp, err := metricsClient.Get(metricsURL)
	if err != nil {
		return gauges{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return gauges{}, fmt.Errorf("metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// snapshot is one sample of the gateway process.
type snapshot struct {
	At       time.Time
	CPU      time.Duration
	Mem      memory // gateway alone
	Children memory // its stdio children together
	Kids     int
	G        gauges
}

func (s snapshot) String() string {
	out := fmt.Sprintf("%s; goroutines %.0f, heap in use %s, stacks %s",
		s.Mem, s.G.Goroutines, kib(int64(s.G.HeapInuse/1024)), kib(int64(s.G.StackInuse/1024)))
	if s.Kids > 0 {
		out += fmt.Sprintf("; %d children: %s", s.Kids, s.Children)
	}
	return out
}

func sample(pid int, metricsURL string) (snapshot, error) {
	s := snapshot{At: time.Now()}
	var err error
	if s.CPU, err = readCPU(pid); err != nil {
		return s, err
	}
	if s.Mem, err = readMemory(pid); err != nil {
		return s, err
	}
	s.Children, s.Kids = childrenMemory(pid)
	s.G, err = readGauges(metricsURL)
	return s, err
}
