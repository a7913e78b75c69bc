package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRun runs the whole benchmark on a small image; it never looks at timings.
func TestRun(t *testing.T) {
	o := options{SizeMiB: 2, Rounds: 1, Markdown: true, TLS: true}
	res, err := run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res.print(&out, o)
	if !strings.Contains(out.String(), "| 2 MiB |") {
		t.Fatalf("output:\n%s", out.String())
	}
}
