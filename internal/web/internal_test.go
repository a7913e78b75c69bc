package web

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(LoginLimits{AccountFailures: 3, IPFailures: 5, Window: 15 * time.Minute})
	l.now = func() time.Time { return now }
	for i := range 3 {
		if w := l.wait("a@x", "1.1.1.1"); w != 0 {
			t.Fatalf("failure %d: told to wait %v already", i, w)
		}
		l.failed("a@x", "1.1.1.1")
	}
	w := l.wait("a@x", "1.1.1.1")
	if w <= 0 || w > 5*time.Minute {
		t.Fatalf("after 3 failures: wait %v, want up to one refill (5 min)", w)
	}
	if w := l.wait("a@x", "2.2.2.2"); w == 0 {
		t.Fatal("the account limit does not hold from another address")
	}
	if w := l.wait("b@x", "1.1.1.1"); w != 0 {
		t.Fatalf("another account from the same address waits %v", w)
	}
	// Time refills the bucket.
	now = now.Add(5 * time.Minute)
	if w := l.wait("a@x", "1.1.1.1"); w != 0 {
		t.Fatalf("after one refill interval: wait %v", w)
	}
	// The address limit counts failures over all accounts.
	for i := range 5 {
		l.failed("spray"+string(rune('a'+i))+"@x", "3.3.3.3")
	}
	if w := l.wait("fresh@x", "3.3.3.3"); w == 0 {
		t.Fatal("an address that failed 5 times over many accounts may go on")
	}
	// Success forgets the account's failures, not the address's.
	l.failed("c@x", "4.4.4.4")
	l.failed("c@x", "4.4.4.4")
	l.failed("c@x", "4.4.4.4")
	l.succeeded("c@x")
	if w := l.wait("c@x", "5.5.5.5"); w != 0 {
		t.Fatalf("after a success the account still waits %v", w)
	}
	// Idle entries are pruned once full again.
	now = now.Add(time.Hour)
	l.prune(now)
	if n := len(l.accounts.m) + len(l.ips.m); n != 0 {
		t.Fatalf("%d entries left after everything refilled", n)
	}
}

func TestLimiterBoundsItsMemory(t *testing.T) {
	bs := newBuckets(3, time.Minute)
	now := time.Now()
	for i := range maxTracked + 10 {
		b := bs.get(string(rune(i)), now.Add(time.Duration(i)))
		b.tokens = 0
	}
	if len(bs.m) > maxTracked {
		t.Fatalf("%d entries, bound is %d", len(bs.m), maxTracked)
	}
}

func TestBarChartEscapesAndDescribes(t *testing.T) {
	svg := string(barChart("c1", "Versions <&>", []bar{{Label: `<script>alert(1)</script>`, Value: 1200, Color: "#000", Href: `/devices?x="y"`},
		{Label: "zero", Value: 0, Color: "#111"}}))
	for _, bad := range []string{"<script>", `"y"`, "Versions <&>"} {
		if strings.Contains(svg, bad) {
			t.Errorf("chart holds unescaped %q", bad)
		}
	}
	for _, want := range []string{`role="img"`, `<title id="c1-t">Versions &lt;&amp;&gt;</title>`, "1\u202f200", `aria-labelledby="c1-t c1-d"`, "zero: 0"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q:\n%s", want, svg)
		}
	}
	if !strings.Contains(string(barChart("c2", "Empty", nil)), "No data yet.") {
		t.Error("an empty chart says nothing")
	}
	ring := string(ringChart("r", "Seen", "seen", []share{{"a", 3, "#0f0"}, {"b", 1, "#f00"}}))
	if !strings.Contains(ring, ">75%<") {
		t.Errorf("ring chart: %s", ring)
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{"/devices?x=1": "/devices?x=1", "": "/", "//evil.example": "/",
		"https://evil.example": "/", `/\evil.example`: "/", "devices": "/", "/a\r\nSet-Cookie: x": "/"} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	cases := []struct {
		hdr  map[string]string
		want bool
	}{
		{nil, true},
		{map[string]string{"Origin": "http://steward.test"}, true},
		{map[string]string{"Origin": "http://evil.example"}, false},
		{map[string]string{"Origin": "null"}, false},
		{map[string]string{"Referer": "http://steward.test/devices"}, true},
		{map[string]string{"Referer": "http://evil.example/"}, false},
		{map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://steward.test"}, false},
		{map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://steward.test"}, true},
	}
	for _, c := range cases {
		r := httptest.NewRequest("POST", "http://steward.test/x", nil)
		for k, v := range c.hdr {
			r.Header.Set(k, v)
		}
		if got := sameOrigin(r); got != c.want {
			t.Errorf("sameOrigin with %v = %v, want %v", c.hdr, got, c.want)
		}
	}
}

func TestLineChartScalesAndDescribes(t *testing.T) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(time.Hour)
	pts := []point{{from.Add(15 * time.Minute), 10}, {from.Add(30 * time.Minute), 30}, {from.Add(45 * time.Minute), 20}}
	svg := string(lineChart("l1", "temp <&>", from, to, pts))
	for _, want := range []string{`role="img"`, `<title id="l1-t">temp &lt;&amp;&gt;</title>`, `data-points="3"`,
		"lowest 10, highest 30, last 20.", `aria-labelledby="l1-t l1-d"`} {
		if !strings.Contains(svg, want) {
			t.Errorf("line chart lacks %q:\n%s", want, svg)
		}
	}
	if n := strings.Count(svg, `<circle class="pt"`); n != 3 {
		t.Errorf("line chart draws %d dots, want 3", n)
	}
	// The highest value touches the top of the plot, the lowest its bottom.
	if !strings.Contains(svg, `cx="342.0" cy="12.0"`) || !strings.Contains(svg, `cy="212.0"`) {
		t.Errorf("line chart is not scaled to its values:\n%s", svg)
	}
	if !strings.Contains(string(lineChart("l2", "none", from, to, nil)), "No values in this range.") {
		t.Error("an empty line chart says nothing")
	}
	// One value (or all equal) still draws, without dividing by zero.
	if one := string(lineChart("l3", "one", from, to, pts[:1])); strings.Contains(one, "NaN") || strings.Contains(one, "Inf") {
		t.Errorf("a single value: %s", one)
	}
}
