// Command testsummary reads `go test -json` streams and prints what CI
// needs: tests run and passed per package, coverage per package,
// conformance scenarios per suite (lines "conformance <suite>: N passed, M
// failed" logged by the e2e tests), the output of every failed test, and a
// closing line "N passed, N failed". It exits 1 when anything failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type pkgStats struct {
	pass, fail, skip int
	coverage         string
	failedPkg        bool
	output           []string
}

var (
	coverRe = regexp.MustCompile(`coverage: ([0-9.]+% of statements)`)
	confRe  = regexp.MustCompile(`conformance ([^:\s]+): (\d+) passed, (\d+) failed`)
)

func main() {
	pkgs := map[string]*pkgStats{}
	testOut := map[string][]string{}
	var failed []string
	type conf struct{ pass, fail int }
	confs := map[string]conf{}
	for _, file := range os.Args[1:] {
		f, err := os.Open(file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testsummary: %v\n", err)
			os.Exit(1)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				// Build errors are printed as plain text.
				fmt.Println(sc.Text())
				continue
			}
			p := pkgs[e.Package]
			if p == nil {
				p = &pkgStats{}
				pkgs[e.Package] = p
			}
			key := e.Package + " " + e.Test
			switch e.Action {
			case "output":
				if m := coverRe.FindStringSubmatch(e.Output); m != nil {
					p.coverage = m[1]
				}
				if m := confRe.FindStringSubmatch(e.Output); m != nil {
					a, _ := strconv.Atoi(m[2])
					b, _ := strconv.Atoi(m[3])
					confs[m[1]] = conf{a, b}
				}
				if e.Test != "" {
					testOut[key] = append(testOut[key], e.Output)
				} else {
					p.output = append(p.output, e.Output)
				}
			case "pass":
				if e.Test != "" && !strings.Contains(e.Test, "/") {
					p.pass++
				}
			case "fail":
				if e.Test == "" {
					p.failedPkg = true
				} else if !strings.Contains(e.Test, "/") {
					p.fail++
					failed = append(failed, key)
				}
			case "skip":
				if e.Test != "" && !strings.Contains(e.Test, "/") {
					p.skip++
				}
			}
		}
		f.Close()
	}
	for _, k := range failed {
		fmt.Printf("\n----- FAILED %s -----\n%s", k, strings.Join(testOut[k], ""))
	}
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	sort.Strings(names)
	total, bad := 0, 0
	fmt.Println("\n=== test summary ===")
	fmt.Printf("%-58s %6s %6s %6s  %s\n", "package", "run", "passed", "failed", "coverage")
	for _, n := range names {
		p := pkgs[n]
		run := p.pass + p.fail
		if run == 0 && !p.failedPkg {
			continue
		}
		cov := p.coverage
		if cov == "" {
			cov = "-"
		}
		fmt.Printf("%-58s %6d %6d %6d  %s\n", strings.TrimPrefix(n, "github.com/mcpgate/mcpgate/"), run, p.pass, p.fail, cov)
		total += p.pass
		bad += p.fail
		if p.failedPkg && p.fail == 0 {
			bad++ // a package that failed without a failing test: build error, panic, timeout
			fmt.Printf("  %s failed outside any test:\n%s", n, strings.Join(tail(p.output, 30), ""))
		}
		if p.skip > 0 {
			fmt.Printf("  %d skipped in %s\n", p.skip, n)
		}
	}
	if len(confs) > 0 {
		fmt.Println("\n=== conformance ===")
		cn := make([]string, 0, len(confs))
		for n := range confs {
			cn = append(cn, n)
		}
		sort.Strings(cn)
		for _, n := range cn {
			fmt.Printf("%-40s %d passed, %d failed\n", n, confs[n].pass, confs[n].fail)
			total += confs[n].pass
			bad += confs[n].fail
		}
	}
	fmt.Printf("\n%d passed, %d failed\n", total, bad)
	if bad > 0 || total == 0 {
		os.Exit(1)
	}
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
