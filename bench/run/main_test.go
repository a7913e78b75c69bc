package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTables(t *testing.T) {
	out := "starting\nsome log\n\nResults:\n| a | b |\n| --- | --- |\n| 1 | 2 |\nafter\n| c |\n| --- |\n| 3 |\ndone\n"
	got, last := tables(out)
	want := "Results:\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\nafter\n\n| c |\n| --- |\n| 3 |"
	if got != want {
		t.Fatalf("tables:\n%s\nwant:\n%s", got, want)
	}
	if last != "done" {
		t.Fatalf("last line %q", last)
	}
}

func TestRewrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "README.md")
	os.WriteFile(p, []byte("# Benchmarks\n\ntext\n"), 0o644)
	report := render([]result{{name: "x", args: []string{"-n", "1"}, took: time.Second, tables: "| a |\n| --- |\n| 1 |"}}, false,
		time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	if err := rewrite(p, report); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	first := string(b)
	if !strings.HasPrefix(first, "# Benchmarks\n\ntext\n\n## Latest run of all benchmarks\n\n"+beginMarker) ||
		!strings.Contains(first, "2026-11-26 10:00 UTC") || !strings.Contains(first, "| x | `-n 1` | 1s | ok |") {
		t.Fatalf("first write:\n%s", first)
	}
	// A second run replaces the section and keeps what is around it.
	os.WriteFile(p, []byte(first+"\n## after\n"), 0o644)
	report2 := render([]result{{name: "y", took: 2 * time.Second}}, true, time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	if err := rewrite(p, report2); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(p)
	s := string(b)
	if strings.Contains(s, "| x |") || !strings.Contains(s, "| y |") || !strings.HasSuffix(s, endMarker+"\n\n## after\n") ||
		strings.Count(s, beginMarker) != 1 || !strings.Contains(s, "go run ./bench/run -full") {
		t.Fatalf("second write:\n%s", s)
	}
	// One marker alone is an error, not a silent append.
	os.WriteFile(p, []byte("x\n"+beginMarker+"\n"), 0o644)
	if err := rewrite(p, report); err == nil {
		t.Fatal("a README with one marker was rewritten")
	}
}
