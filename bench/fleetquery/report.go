package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/steward-iot/steward/bench/internal/fleet"
	"github.com/steward-iot/steward/bench/internal/summary"
)

func hostInfo() string {
	cpu := ""
	mem := ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if rest, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				mem = fmt.Sprintf("%.1f GiB RAM", kb/1024/1024)
				break
			}
		}
		f.Close()
	}
	parts := []string{fmt.Sprintf("%d CPUs", runtime.NumCPU())}
	if cpu != "" {
		parts[0] += " (" + cpu + ")"
	}
	if mem != "" {
		parts = append(parts, mem)
	}
	parts = append(parts, runtime.GOOS+"/"+runtime.GOARCH, runtime.Version())
	return strings.Join(parts, ", ")
}

// loadAvg is the 1, 5 and 15 minute load average, to show whether other
// work shared the machine during a run.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

func verdict(r *result, target time.Duration) string {
	if len(r.Samples) == 0 {
		return "–"
	}
	if r.pct(0.95) < target {
		return "PASS"
	}
	return "MISS"
}

func f2(d time.Duration) string { return strconv.FormatFloat(ms(d), 'f', 2, 64) }

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n/1024)
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s" }

func rowsPerSec(s fleet.LoadStats, d time.Duration) string {
	return strconv.FormatFloat(float64(s.Rows())/max(d.Seconds(), 1e-9), 'f', 0, 64)
}

func nCell(r *result) string {
	n := strconv.Itoa(len(r.Samples))
	if r.Truncated {
		n += "*"
	}
	return n
}

func printText(w io.Writer, rep *report) {
	c := rep.Config
	fmt.Fprintf(w, "fleetquery: %d devices (+%d in a second tenant), %d repetitions per query, page size %d, seed %d\n",
		c.N, c.N2, c.Reps, pageSize, c.Seed)
	fmt.Fprintf(w, "host: %s\n", rep.Host)
	fmt.Fprintf(w, "load average at start: %s", rep.LoadStart)
	for _, br := range rep.Runs {
		fmt.Fprintf(w, "; after %s: %s", br.Backend, br.LoadAfter)
	}
	fmt.Fprint(w, "\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend\tdevices\ttag rows\tattr rows\trows load\tindex build\tanalyze\ttotal\trows/s (total)\tdb size\t")
	for _, br := range rep.Runs {
		l := br.Load
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", br.Backend, l.Devices, l.Tags, l.Attrs,
			secs(l.Load), secs(l.Index), secs(l.Analyze), secs(l.Total()), rowsPerSec(l, l.Total()), humanBytes(l.Bytes))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "backend\tquery\tn\tavg rows\tp50 ms\tp95 ms\tp99 ms\tmax ms\ttarget p95\tresult")
	for _, br := range rep.Runs {
		for _, r := range br.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t< %s ms\t%s\n", br.Backend, r.Name, nCell(r), r.avgRows(),
				f2(r.pct(0.5)), f2(r.pct(0.95)), f2(r.pct(0.99)), f2(r.pct(1)), strconv.Itoa(int(ms(r.target(br)))), verdict(r, r.target(br)))
		}
	}
	tw.Flush()
	for _, br := range rep.Runs {
		if br.Kept != "" {
			fmt.Fprintf(w, "%s data kept: %s\n", br.Backend, br.Kept)
		}
	}
	if anyTruncated(rep) {
		fmt.Fprintf(w, "* stopped at the -max-time limit (%v) before %d repetitions\n", rep.Config.MaxTime, rep.Config.Reps)
	}
}

func anyTruncated(rep *report) bool {
	for _, br := range rep.Runs {
		for _, r := range br.Results {
			if r.Truncated {
				return true
			}
		}
	}
	return false
}

func printMarkdown(w io.Writer, rep *report) {
	c := rep.Config
	fmt.Fprintf(w, "Fleet: %d devices in the measured tenant + %d in a second tenant; %d timed repetitions per query "+
		"(parameters drawn at random, seed %d), page size %d, %d cursor(s) followed per repetition.\n\n",
		c.N, c.N2, c.Reps, c.Seed, pageSize, c.Pages)
	fmt.Fprintf(w, "Host: %s. Run started %s, load average (1/5/15 min) %s.\n\n", rep.Host,
		rep.Started.UTC().Format("2006-01-02 15:04 MST"), rep.LoadStart)
	for _, br := range rep.Runs {
		fmt.Fprintf(w, "- %s: %s; load average after its queries %s\n", br.Backend, br.Version, br.LoadAfter)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| backend | devices | tag rows | attr rows | rows load | index build | analyze | total | rows/s (total) | db size |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, br := range rep.Runs {
		l := br.Load
		fmt.Fprintf(w, "| %s | %d | %d | %d | %s | %s | %s | %s | %s | %s |\n", br.Backend, l.Devices, l.Tags, l.Attrs,
			secs(l.Load), secs(l.Index), secs(l.Analyze), secs(l.Total()), rowsPerSec(l, l.Total()), humanBytes(l.Bytes))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| backend | query | n | avg rows | p50 ms | p95 ms | p99 ms | max ms | target p95 | result |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, br := range rep.Runs {
		for _, r := range br.Results {
			fmt.Fprintf(w, "| %s | %s | %s | %.1f | %s | %s | %s | %s | < %d ms | %s |\n", br.Backend,
				strings.ReplaceAll(r.Name, "|", `\|`), nCell(r), r.avgRows(), f2(r.pct(0.5)), f2(r.pct(0.95)), f2(r.pct(0.99)),
				f2(r.pct(1)), int(ms(r.target(br))), verdict(r, r.target(br)))
		}
	}
	if anyTruncated(rep) {
		fmt.Fprintf(w, "\n\\* stopped at the -max-time limit (%v) before %d repetitions.\n", rep.Config.MaxTime, rep.Config.Reps)
	}
}

// summaryRows holds, per backend, the worst p95 of the store queries and
// of the rendered device lists against their targets.
func summaryRows(rep *report) []summary.Row {
	var rows []summary.Row
	for _, br := range rep.Runs {
		for _, group := range []struct {
			name     string
			rendered bool
		}{{"store queries", false}, {"rendered device lists", true}} {
			var worst *result
			n := 0
			for _, r := range br.Results {
				if len(r.Samples) == 0 || (r.Target > 0) != group.rendered {
					continue
				}
				n++
				if worst == nil || r.pct(0.95) > worst.pct(0.95) {
					worst = r
				}
			}
			if worst == nil {
				continue
			}
			rows = append(rows, summary.Row{Benchmark: "fleetquery",
				Measurement: fmt.Sprintf("%s, worst p95 of %d, %s, %d devices: %s", group.name, n, br.Backend, rep.Config.N, worst.Name),
				Value:       ms(worst.pct(0.95)), Unit: "ms",
				Target: &summary.Target{Op: "<", Bound: ms(worst.target(br))}})
		}
	}
	return rows
}
