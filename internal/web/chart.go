package web

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// Charts are drawn on the server as inline SVG: no script, no external
// library, readable without JavaScript. Every chart carries a <title> and
// a <desc> listing its numbers for screen readers, prints its values as
// text, and uses presentation attributes only (the page's content security
// policy allows no inline styles).

// bar is one row of a bar chart.
type bar struct {
	Label string
	Value int64
	Color string
	Href  string // optional link (e.g. the device list filtered to this row)
}

// barChart draws labelled horizontal bars scaled to the largest value.
func barChart(id, title string, bars []bar) template.HTML {
	const (
		width  = 520
		labelW = 150
		valueW = 70
		rowH   = 30
		barH   = 18
	)
	var maxV int64
	var total int64
	for _, b := range bars {
		maxV = max(maxV, b.Value)
		total += b.Value
	}
	h := max(1, len(bars))*rowH + 8
	var s strings.Builder
	fmt.Fprintf(&s, `<svg class="chart" id="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s-t %s-d" xmlns="http://www.w3.org/2000/svg">`,
		id, width, h, width, h, id, id)
	fmt.Fprintf(&s, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, id, esc(title), id, esc(describe(bars, total)))
	if len(bars) == 0 {
		fmt.Fprintf(&s, `<text x="0" y="20" font-size="14" fill="#4b5563">No data yet.</text></svg>`)
		return template.HTML(s.String())
	}
	span := float64(width - labelW - valueW)
	for i, b := range bars {
		y := 4 + i*rowH
		w := 0.0
		if maxV > 0 {
			w = float64(b.Value) / float64(maxV) * span
		}
		if b.Value > 0 {
			w = math.Max(w, 2)
		}
		if b.Href != "" {
			fmt.Fprintf(&s, `<a href="%s" aria-label="%s: %d">`, esc(b.Href), esc(b.Label), b.Value)
		}
		fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="14" text-anchor="end" fill="#1f2937">%s</text>`,
			labelW-10, y+barH-4, esc(truncate(b.Label, 20)))
		fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%.1f" height="%d" rx="3" fill="%s"/>`, labelW, y, w, barH, esc(b.Color))
		fmt.Fprintf(&s, `<text x="%.1f" y="%d" font-size="14" fill="#1f2937">%s</text>`,
			float64(labelW)+w+8, y+barH-4, number(b.Value))
		if b.Href != "" {
			s.WriteString(`</a>`)
		}
	}
	s.WriteString(`</svg>`)
	return template.HTML(s.String())
}

// share is one part of a ring chart.
type share struct {
	Label string
	Value int64
	Color string
}

// ringChart draws parts of a whole as a ring with the first part's share
// in the middle.
func ringChart(id, title, caption string, parts []share) template.HTML {
	const (
		size = 200
		r    = 70.0
		sw   = 26.0
	)
	var total int64
	for _, p := range parts {
		total += p.Value
	}
	circ := 2 * math.Pi * r
	var s strings.Builder
	fmt.Fprintf(&s, `<svg class="chart ring" id="%s" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-labelledby="%s-t %s-d" xmlns="http://www.w3.org/2000/svg">`,
		id, size, size, size, size, id, id)
	bars := make([]bar, len(parts))
	for i, p := range parts {
		bars[i] = bar{Label: p.Label, Value: p.Value}
	}
	fmt.Fprintf(&s, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, id, esc(title), id, esc(describe(bars, total)))
	c := float64(size) / 2
	fmt.Fprintf(&s, `<circle cx="%.0f" cy="%.0f" r="%.0f" fill="none" stroke="#e5e7eb" stroke-width="%.0f"/>`, c, c, r, sw)
	offset := 0.0
	for _, p := range parts {
		if total == 0 || p.Value == 0 {
			continue
		}
		l := float64(p.Value) / float64(total) * circ
		// Each part is a dash of the circle's outline, rotated to start at
		// the top and placed after the parts before it.
		fmt.Fprintf(&s, `<circle cx="%.0f" cy="%.0f" r="%.0f" fill="none" stroke="%s" stroke-width="%.0f" stroke-dasharray="%.2f %.2f" stroke-dashoffset="%.2f" transform="rotate(-90 %.0f %.0f)"/>`,
			c, c, r, esc(p.Color), sw, l, circ-l, -offset, c, c)
		offset += l
	}
	pct := "–"
	if total > 0 && len(parts) > 0 {
		pct = fmt.Sprintf("%.0f%%", float64(parts[0].Value)/float64(total)*100)
	}
	fmt.Fprintf(&s, `<text x="%.0f" y="%.0f" font-size="30" font-weight="700" text-anchor="middle" fill="#111827">%s</text>`, c, c+6, pct)
	fmt.Fprintf(&s, `<text x="%.0f" y="%.0f" font-size="13" text-anchor="middle" fill="#374151">%s</text>`, c, c+26, esc(caption))
	s.WriteString(`</svg>`)
	return template.HTML(s.String())
}

func describe(bars []bar, total int64) string {
	parts := make([]string, 0, len(bars))
	for _, b := range bars {
		parts = append(parts, fmt.Sprintf("%s: %s", b.Label, number(b.Value)))
	}
	return strings.Join(parts, "; ") + fmt.Sprintf(" (total %s)", number(total))
}

// number writes n with thin-space thousands separators: 1 000 000.
func number(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + number(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	return b.String()
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func esc(s string) string { return template.HTMLEscapeString(s) }

// point is one value of a line chart.
type point struct {
	T time.Time
	V float64
}

// lineChart draws values over time from..to as a line with a dot per
// value, with the value axis from the smallest to the largest value.
func lineChart(id, title string, from, to time.Time, pts []point) template.HTML {
	const (
		width, height = 640, 240
		left, right   = 56, 12
		top, bottom   = 12, 28
	)
	var s strings.Builder
	desc := describeLine(pts)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
	}
	fmt.Fprintf(&s, `<svg class="chart line" id="%s" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d" data-points="%d" xmlns="http://www.w3.org/2000/svg">`,
		id, width, height, id, id, len(pts))
	fmt.Fprintf(&s, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, id, esc(title), id, esc(desc))
	plotW, plotH := float64(width-left-right), float64(height-top-bottom)
	fmt.Fprintf(&s, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#d1d5db"/>`, left, top, plotW, plotH)
	if len(pts) == 0 {
		fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="14" fill="#4b5563">No values in this range.</text></svg>`, left+12, top+28)
		return template.HTML(s.String())
	}
	if hi == lo {
		lo, hi = lo-1, hi+1
	}
	span := float64(to.Sub(from))
	x := func(t time.Time) float64 {
		f := float64(t.Sub(from)) / span
		return float64(left) + math.Max(0, math.Min(1, f))*plotW
	}
	y := func(v float64) float64 { return float64(top) + (hi-v)/(hi-lo)*plotH }
	fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="12" fill="#4b5563" text-anchor="end">%s</text>`, left-6, top+10, esc(num(hi)))
	fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="12" fill="#4b5563" text-anchor="end">%s</text>`, left-6, height-bottom, esc(num(lo)))
	fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="12" fill="#4b5563">%s</text>`, left, height-8, esc(from.UTC().Format("01-02 15:04")))
	fmt.Fprintf(&s, `<text x="%d" y="%d" font-size="12" fill="#4b5563" text-anchor="end">%s UTC</text>`, width-right, height-8, esc(to.UTC().Format("01-02 15:04")))
	s.WriteString(`<polyline fill="none" stroke="#1d4ed8" stroke-width="2" points="`)
	for i, p := range pts {
		if i > 0 {
			s.WriteByte(' ')
		}
		fmt.Fprintf(&s, "%.1f,%.1f", x(p.T), y(p.V))
	}
	s.WriteString(`"/>`)
	for _, p := range pts {
		fmt.Fprintf(&s, `<circle class="pt" cx="%.1f" cy="%.1f" r="3" fill="#1d4ed8"><title>%s: %s</title></circle>`,
			x(p.T), y(p.V), p.T.UTC().Format("2006-01-02 15:04:05"), esc(num(p.V)))
	}
	s.WriteString(`</svg>`)
	return template.HTML(s.String())
}

// describeLine says in words what a line chart shows.
func describeLine(pts []point) string {
	if len(pts) == 0 {
		return "No values in this range."
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
	}
	return fmt.Sprintf("%d values from %s to %s; lowest %s, highest %s, last %s.", len(pts),
		pts[0].T.UTC().Format("2006-01-02 15:04"), pts[len(pts)-1].T.UTC().Format("2006-01-02 15:04 UTC"),
		num(lo), num(hi), num(pts[len(pts)-1].V))
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
