// Command run is the benchmark harness: it builds every benchmark program
// in bench/, runs each with bounded settings and a time limit (the
// programs start the peers they compare against themselves, e.g.
// Mosquitto on an ephemeral port, and use loopback only), prints their
// result tables together with the machine they ran on, and rewrites the
// "latest run" section of bench/README.md between its markers. On top of
// the report, one table gathers every program's summary lines
// (bench/internal/summary): each figure with its peer's, the ratio, the
// target and PASS/MISS.
//
//	go run ./bench/run                 # quick: small fleets, a few minutes
//	go run ./bench/run -full           # the published sizes (1M devices …)
//	go run ./bench/run -only broker -readme ""
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/steward-iot/steward/bench/internal/summary"
	"github.com/steward-iot/steward/internal/testutil/s3test"
)

// Markers delimit the section of bench/README.md this program owns.
const (
	beginMarker = "<!-- bench/run:begin -->"
	endMarker   = "<!-- bench/run:end -->"
)

// bench is one run of a benchmark program and its arguments.
type bench struct {
	name        string
	prog        string // the program in bench/, when not name
	quick, full []string
	// needs, when set, says why the run cannot happen on this machine
	// (nil when it can): the run is then skipped, not failed.
	needs func() error
}

func (b bench) program() string {
	if b.prog != "" {
		return b.prog
	}
	return b.name
}

var benches = []bench{
	{name: "fleetquery",
		quick: []string{"-n", "20000", "-n2", "2000", "-r", "30", "-backend", "both", "-markdown", "-max-time", "20s"},
		full:  []string{"-n", "1000000", "-backend", "both", "-markdown"}},
	{name: "enroll",
		quick: []string{"-n", "300", "-rounds", "1", "-backend", "both", "-markdown"},
		full:  []string{"-n", "2000", "-rounds", "3", "-backend", "both", "-markdown"}},
	{name: "ingest",
		quick: []string{"-backend", "both", "-devices", "500", "-interval", "20ms", "-warmup", "3s", "-time", "10s", "-markdown"},
		full:  []string{"-backend", "both", "-devices", "2000", "-interval", "20ms", "-warmup", "5s", "-time", "30s", "-markdown"}},
	{name: "broker",
		quick: []string{"-publishers", "20", "-messages", "300", "-rounds", "3", "-conns", "2000", "-connrate-time", "2s", "-markdown"},
		full:  []string{"-markdown"}},
	// Downloads over HTTPS against a plain ServeContent, and campaign
	// creation (a 20,000-device fleet takes seconds; the published figure
	// is over 1,000,000).
	{name: "ota",
		quick: []string{"-size", "64", "-r", "3", "-campaign-devices", "20000", "-backend", "both", "-markdown"},
		full:  []string{"-size", "256", "-r", "5", "-campaign-devices", "1000000", "-backend", "both", "-markdown"}},
	// Downloads from an S3 bucket against a direct S3 GET, in a run of
	// their own: the published comparison has the platform on plain HTTP,
	// as SeaweedFS is, which -tls=false sets for the whole program.
	{name: "ota-s3", prog: "ota",
		quick: []string{"-size", "64", "-r", "3", "-s3", "-tls=false", "-markdown"},
		full:  []string{"-size", "256", "-r", "7", "-s3", "-tls=false", "-markdown"},
		needs: func() error {
			if s3test.Binary() == "" {
				return errors.New("SeaweedFS (weed) is not installed: run ./scripts/setup.sh")
			}
			return nil
		}},
}

type result struct {
	name     string
	args     []string
	took     time.Duration
	err      error
	skipped  string // why it did not run
	tables   string // the Markdown tables the program printed
	lastLine string
	rows     []summary.Row // its summary lines
	rowErrs  []error       // summary lines that could not be read
}

func main() {
	full := flag.Bool("full", false, "run the published sizes (1M-device fleet, 10k+ connections); takes much longer")
	only := flag.String("only", "", "comma separated benchmarks to run (default: all): "+names())
	limit := flag.Duration("timeout", 0, "time limit per benchmark (the program is killed after it); 0 = 10m, or 2h with -full")
	readme := flag.String("readme", "bench/README.md", `README to rewrite between the markers ("" = do not write)`)
	flag.Parse()
	if *limit <= 0 {
		*limit = 10 * time.Minute
		if *full {
			*limit = 2 * time.Hour
		}
	}
	if err := run(*full, *only, *limit, *readme, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/run:", err)
		os.Exit(1)
	}
}

func names() string {
	var n []string
	for _, b := range benches {
		n = append(n, b.name)
	}
	return strings.Join(n, ", ")
}

// known reports whether the list runs the program in bench/<prog>.
func known(prog string) bool {
	for _, b := range benches {
		if b.program() == prog {
			return true
		}
	}
	return false
}

func run(full bool, only string, limit time.Duration, readme string, out io.Writer) error {
	want := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	for n := range want {
		if !strings.Contains(", "+names()+",", ", "+n+",") {
			return fmt.Errorf("unknown benchmark %q (have %s)", n, names())
		}
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	bin, err := os.MkdirTemp("", "steward-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)

	// A program in bench/ that this list does not know is named, not run
	// blind (its default sizes may take hours).
	if ents, err := os.ReadDir(filepath.Join(root, "bench")); err == nil {
		for _, e := range ents {
			if _, err := os.Stat(filepath.Join(root, "bench", e.Name(), "main.go")); err != nil || e.Name() == "run" {
				continue
			}
			if !known(e.Name()) {
				fmt.Fprintf(out, "== %s: not run (add it to bench/run with bounded arguments)\n", e.Name())
			}
		}
	}
	var results []result
	for _, b := range benches {
		if len(want) > 0 && !want[b.name] {
			continue
		}
		args := b.quick
		if full {
			args = b.full
		}
		if b.needs != nil {
			if err := b.needs(); err != nil {
				fmt.Fprintf(out, "== %s: skipped: %v\n", b.name, err)
				results = append(results, result{name: b.name, args: args, skipped: err.Error()})
				continue
			}
		}
		fmt.Fprintf(out, "== %s: building\n", b.name)
		exe := filepath.Join(bin, b.program())
		build := exec.Command("go", "build", "-o", exe, "./bench/"+b.program())
		build.Dir, build.Stdout, build.Stderr = root, out, out
		if err := build.Run(); err != nil {
			results = append(results, result{name: b.name, args: args, err: fmt.Errorf("build: %w", err)})
			continue
		}
		fmt.Fprintf(out, "== %s %s\n", b.name, strings.Join(args, " "))
		results = append(results, runOne(b.name, exe, args, root, limit, out))
	}
	report := render(results, full, time.Now())
	fmt.Fprintln(out)
	fmt.Fprint(out, report)
	if readme != "" {
		if !filepath.IsAbs(readme) {
			readme = filepath.Join(root, readme)
		}
		if err := rewrite(readme, report); err != nil {
			return err
		}
		fmt.Fprintf(out, "\nwrote %s\n", readme)
	}
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s failed: %w", r.name, r.err)
		}
	}
	return nil
}

// runOne runs a benchmark in its own process group, killed at the limit.
func runOne(name, exe string, args []string, dir string, limit time.Duration, out io.Writer) result {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var buf bytes.Buffer
	var mu sync.Mutex
	stdout, doneOut := prefixed(out, &mu, name)
	stderr, doneErr := prefixed(out, &mu, name)
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&buf, stdout), stderr
	start := time.Now()
	err := cmd.Run()
	doneOut()
	doneErr()
	r := result{name: name, args: args, took: time.Since(start).Round(time.Second)}
	if ctx.Err() != nil {
		err = fmt.Errorf("stopped after the %s limit", limit)
	}
	r.err = err
	r.tables, r.lastLine = tables(buf.String())
	r.rows, r.rowErrs = summary.Collect(buf.String())
	return r
}

// tables keeps the Markdown tables (and the headings or notes right
// above them) of a program's output, and its last non-empty line.
func tables(s string) (string, string) {
	var b strings.Builder
	var last, prev string
	inTable := false
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " ")
		if summary.IsLine(line) { // collected apart, not part of any table
			continue
		}
		if strings.TrimSpace(line) != "" {
			last = line
		}
		isRow := strings.HasPrefix(strings.TrimSpace(line), "|")
		switch {
		case isRow && !inTable:
			if p := strings.TrimSpace(prev); p != "" && !strings.HasPrefix(p, "|") {
				b.WriteString(p + "\n\n")
			}
			b.WriteString(line + "\n")
			inTable = true
		case isRow:
			b.WriteString(line + "\n")
		case inTable:
			b.WriteString("\n")
			inTable = false
		}
		prev = line
	}
	return strings.TrimSpace(b.String()), last
}

// render is the section written to the README and printed.
func render(results []result, full bool, at time.Time) string {
	var b strings.Builder
	mode := "quick"
	cmd := "go run ./bench/run"
	if full {
		mode, cmd = "full", "go run ./bench/run -full"
	}
	fmt.Fprintf(&b, "Latest `%s` (%s sizes), %s, on %s.\n\n", cmd, mode, at.UTC().Format("2006-01-02 15:04 MST"), machine())
	b.WriteString(summaryTable(results))
	b.WriteString("\n| benchmark | arguments | time | result |\n| --- | --- | --- | --- |\n")
	for _, r := range results {
		status := "ok"
		switch {
		case r.skipped != "":
			status = "skipped: " + r.skipped
		case r.err != nil:
			status = "**failed**: " + r.err.Error()
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", r.name, strings.Join(r.args, " "), r.took, strings.ReplaceAll(status, "|", "/"))
	}
	for _, r := range results {
		if r.skipped != "" {
			continue
		}
		fmt.Fprintf(&b, "\n### %s\n\n", r.name)
		if r.tables != "" {
			b.WriteString(r.tables + "\n")
		} else {
			fmt.Fprintf(&b, "No table printed. Last line: `%s`\n", strings.ReplaceAll(r.lastLine, "`", "'"))
		}
	}
	return b.String()
}

// summaryTable gathers the summary rows of every run, in run order, and
// names the lines that could not be read.
func summaryTable(results []result) string {
	var rows []summary.Row
	var bad []string
	for _, r := range results {
		rows = append(rows, r.rows...)
		for _, err := range r.rowErrs {
			bad = append(bad, fmt.Sprintf("- %s: %s", r.name, strings.ReplaceAll(err.Error(), "`", "'")))
		}
	}
	var b strings.Builder
	b.WriteString("### Summary\n\n")
	if len(rows) == 0 {
		b.WriteString("No program printed a summary line.\n")
	} else {
		b.WriteString("Ratio: ours ÷ the peer's figure; result: the target met (PASS) or not (MISS).\n\n")
		b.WriteString(summary.Table(rows))
	}
	if len(bad) > 0 {
		b.WriteString("\nSummary lines that could not be read:\n\n" + strings.Join(bad, "\n") + "\n")
	}
	return b.String()
}

// machine describes the host: CPU model, cores, memory, OS.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.1f GiB memory", float64(kb)/(1<<20))
		}
	}
	if model != "" {
		model += ", "
	}
	return fmt.Sprintf("%s%d cores%s, %s/%s, %s", model, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// rewrite replaces what lies between the markers in the README, or
// appends a section with the markers when there are none.
func rewrite(path, report string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	block := beginMarker + "\n" + report + endMarker
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(endMarker):]
	case i >= 0 || j >= 0:
		return errors.New(path + ": only one of the bench/run markers is present")
	default:
		s = strings.TrimRight(s, "\n") + "\n\n## Latest run of all benchmarks\n\n" + block + "\n"
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// moduleRoot is the folder of go.mod, found upwards from the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the working directory")
		}
		dir = parent
	}
}

// prefixed tags every line a benchmark writes with its name; done closes
// the writer and waits until everything is out.
func prefixed(w io.Writer, mu *sync.Mutex, name string) (io.Writer, func()) {
	pr, pw := io.Pipe()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			mu.Lock()
			fmt.Fprintf(w, "[%s] %s\n", name, sc.Text())
			mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	return pw, func() { pw.Close(); <-finished }
}
