package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"
)

// leakCheck compares the mean of the last third of series with the mean
// of its first third, both after the warm-up samples are dropped. It fails
// when last > first × (1 + tol) + slack: slack absorbs small absolute
// noise (a few goroutines, a few hundred KiB) that a ratio alone would
// call growth on a small base.
func leakCheck(series []float64, warmup int, tol, slack float64) (first, last float64, ok bool, err error) {
	if warmup < 0 || warmup >= len(series) {
		return 0, 0, false, fmt.Errorf("leak check: %d samples with a warm-up of %d leaves nothing to compare", len(series), warmup)
	}
	s := series[warmup:]
	third := len(s) / 3
	if third < 2 {
		return 0, 0, false, fmt.Errorf("leak check: %d samples after warm-up, need at least 6 (run longer or sample more often)", len(s))
	}
	first, last = mean(s[:third]), mean(s[len(s)-third:])
	return first, last, last <= first*(1+tol)+slack, nil
}

func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

var csvHeader = []string{"elapsed_s", "rss_kib", "pss_kib", "private_kib", "anonymous_kib", "goroutines",
	"heap_inuse_kib", "stack_inuse_kib", "cpu_s", "ops", "errors", "children", "children_pss_kib"}

// writeCSVRow writes one sample; start is the soak's start.
func writeCSVRow(w *csv.Writer, start time.Time, s snapshot, ops, errs int64) error {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	row := []string{
		strconv.FormatFloat(s.At.Sub(start).Seconds(), 'f', 1, 64),
		f(float64(s.Mem.RSS)), f(float64(s.Mem.PSS)), f(float64(s.Mem.Private)), f(float64(s.Mem.Anonymous)),
		f(s.G.Goroutines), f(s.G.HeapInuse / 1024), f(s.G.StackInuse / 1024),
		strconv.FormatFloat(s.CPU.Seconds(), 'f', 2, 64),
		strconv.FormatInt(ops, 10), strconv.FormatInt(errs, 10),
		strconv.Itoa(s.Kids), f(float64(s.Children.PSS)),
	}
	if err := w.Write(row); err != nil {
		return err
	}
	w.Flush()
	return w.Error()
}

// verdict runs the leak check over the memory and goroutine series and
// prints one line per series; it returns false if any grew.
func verdict(out io.Writer, samples []snapshot, warmup int, tol float64) bool {
	series := map[string][]float64{}
	order := []string{"private_kib", "pss_kib", "rss_kib", "goroutines"}
	for _, s := range samples {
		series["private_kib"] = append(series["private_kib"], float64(s.Mem.Private))
		series["pss_kib"] = append(series["pss_kib"], float64(s.Mem.PSS))
		series["rss_kib"] = append(series["rss_kib"], float64(s.Mem.RSS))
		series["goroutines"] = append(series["goroutines"], s.G.Goroutines)
	}
	slack := map[string]float64{"private_kib": 1024, "pss_kib": 1024, "rss_kib": 1024, "goroutines": 8}
	pass := true
	for _, name := range order {
		first, last, ok, err := leakCheck(series[name], warmup, tol, slack[name])
		switch {
		case err != nil:
			fmt.Fprintf(out, "leak check %-12s: %v\n", name, err)
			pass = false
		default:
			word := "ok"
			if !ok {
				word, pass = "GROWTH", false
			}
			fmt.Fprintf(out, "leak check %-12s: first third %.0f, last third %.0f (%+.1f%%; limit +%.0f%% + %.0f): %s\n",
				name, first, last, 100*(last-first)/first, 100*tol, slack[name], word)
		}
	}
	return pass
}
