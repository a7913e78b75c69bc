// Package summary is how the benchmark programs hand their headline figures
// to bench/run: each figure that has a peer or a target is one line on
// standard output, Prefix followed by a JSON object, printed after the
// program's own tables (and after a blank line, so a Markdown table above
// stays a table). bench/run collects the lines of every program and renders
// them as one table.
package summary

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Prefix starts every summary line.
const Prefix = "bench-summary: "

// Row is one figure of one benchmark: ours, optionally the figure of the
// peer we compare with (in the same unit), and optionally a target.
type Row struct {
	Benchmark   string  `json:"benchmark"`
	Measurement string  `json:"measurement"`
	Value       float64 `json:"value"`
	Unit        string  `json:"unit"`
	// Peer names what we compare with: "Mosquitto", "bare loop" …
	Peer      string  `json:"peer,omitempty"`
	PeerValue float64 `json:"peer_value,omitempty"`
	Target    *Target `json:"target,omitempty"`
}

// Target is the bound Value (or, with Ratio, Value ÷ PeerValue) must meet.
type Target struct {
	Op    string  `json:"op"` // <, <=, >= or >
	Bound float64 `json:"bound"`
	Ratio bool    `json:"ratio,omitempty"`
}

// Ratio is ours ÷ the peer's, and false when there is no peer figure.
func (r Row) Ratio() (float64, bool) {
	if r.Peer == "" || r.PeerValue == 0 {
		return 0, false
	}
	return r.Value / r.PeerValue, true
}

// Result is PASS or MISS against the target, or "–" without a target (or
// without the peer figure a ratio target needs).
func (r Row) Result() string {
	t := r.Target
	if t == nil {
		return "–"
	}
	v := r.Value
	if t.Ratio {
		var ok bool
		if v, ok = r.Ratio(); !ok {
			return "–"
		}
	}
	var pass bool
	switch t.Op {
	case "<":
		pass = v < t.Bound
	case "<=":
		pass = v <= t.Bound
	case ">=":
		pass = v >= t.Bound
	case ">":
		pass = v > t.Bound
	default:
		return "–"
	}
	if pass {
		return "PASS"
	}
	return "MISS"
}

// Check reports what makes a row unusable.
func (r Row) Check() error {
	switch {
	case r.Benchmark == "" || r.Measurement == "":
		return errors.New("benchmark and measurement are required")
	case math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || math.IsNaN(r.PeerValue) || math.IsInf(r.PeerValue, 0):
		return errors.New("figures must be finite")
	case r.Target != nil && !strings.Contains(" < <= >= > ", " "+r.Target.Op+" "):
		return fmt.Errorf("target operator %q: want <, <=, >= or >", r.Target.Op)
	case r.Target != nil && r.Target.Ratio && r.Peer == "":
		return errors.New("a ratio target needs a peer")
	}
	return nil
}

// Line is the row as one summary line, without the newline.
func (r Row) Line() string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	// Targets read "<" and ">=", not \u003c.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		// Only non-finite figures fail, which Check rejects and Print
		// leaves out.
		panic(err)
	}
	return Prefix + strings.TrimSuffix(b.String(), "\n")
}

// Print writes a blank line, then one line per row. A row that fails
// Check (a figure of a run too short to measure, say) is named in a plain
// line instead: the program's own tables are already out.
func Print(w io.Writer, rows ...Row) {
	if len(rows) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("\n")
	for _, r := range rows {
		if err := r.Check(); err != nil {
			fmt.Fprintf(&b, "summary row %q left out: %v\n", r.Measurement, err)
			continue
		}
		b.WriteString(r.Line() + "\n")
	}
	io.WriteString(w, b.String())
}

// IsLine reports whether a line of output is a summary line.
func IsLine(line string) bool { return strings.HasPrefix(line, Prefix) }

// Parse reads one summary line.
func Parse(line string) (Row, error) {
	var r Row
	body, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), Prefix)
	if !ok {
		return r, errors.New("not a summary line")
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Row{}, fmt.Errorf("summary line %q: %w", line, err)
	}
	if err := r.Check(); err != nil {
		return Row{}, fmt.Errorf("summary line %q: %w", line, err)
	}
	return r, nil
}

// Collect returns the rows of every summary line in a program's output, in
// order, and an error for each line that starts with Prefix but cannot be
// read.
func Collect(output string) ([]Row, []error) {
	var rows []Row
	var errs []error
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if !IsLine(sc.Text()) {
			continue
		}
		r, err := Parse(sc.Text())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rows = append(rows, r)
	}
	return rows, errs
}

// Table renders rows as one Markdown table.
func Table(rows []Row) string {
	var b strings.Builder
	b.WriteString("| benchmark | measurement | ours | peer | ratio | target | result |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | --- | --- |\n")
	for _, r := range rows {
		peer, ratio, target := "–", "–", "–"
		if r.Peer != "" {
			peer = Figure(r.PeerValue, r.Unit) + " (" + r.Peer + ")"
		}
		if q, ok := r.Ratio(); ok {
			ratio = fmt.Sprintf("%.2f×", q)
		}
		if t := r.Target; t != nil {
			bound := strconv.FormatFloat(t.Bound, 'f', -1, 64)
			target = opSign(t.Op) + " " + bound
			if t.Ratio {
				if !strings.Contains(bound, ".") {
					target += ".0"
				}
				target += "× " + r.Peer
			} else if r.Unit != "" {
				target += " " + r.Unit
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(r.Benchmark), cell(r.Measurement),
			Figure(r.Value, r.Unit), cell(peer), ratio, cell(target), r.Result())
	}
	return b.String()
}

// Figure formats a value with about three significant digits (whole numbers
// from 100 up) and its unit.
func Figure(v float64, unit string) string {
	var s string
	switch a := math.Abs(v); {
	case a >= 100:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.01 || a == 0:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(v, 'g', 2, 64)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

func opSign(op string) string {
	switch op {
	case "<=":
		return "≤"
	case ">=":
		return "≥"
	}
	return op
}

// cell keeps a value from breaking the Markdown table.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
