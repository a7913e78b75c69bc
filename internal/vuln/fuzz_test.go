package vuln_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/steward-iot/steward/internal/vuln"
)

// seeds adds every file matching the patterns to the fuzz corpus (beside
// the checked-in corpus under testdata/fuzz).
func seeds(f *testing.F, patterns ...string) {
	for _, p := range patterns {
		files, _ := filepath.Glob(p)
		for _, file := range files {
			f.Add(read(f, file))
		}
	}
}

// FuzzParseSBOM: any input is parsed or refused with an InputError,
// never a panic, and a parsed SBOM holds together.
func FuzzParseSBOM(f *testing.F) {
	seeds(f, "testdata/sbom/*", "testdata/handwritten/*.cdx.json", "testdata/bad/*")
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := vuln.ParseSBOM(data)
		if err != nil {
			return
		}
		unmatched := 0
		for i, c := range d.Components {
			if c.Index != i {
				t.Fatalf("component %d has index %d", i, c.Index)
			}
			if c.Ecosystem != "" && c.PURL == "" {
				t.Fatalf("component %q has an ecosystem without a purl", c.Name)
			}
			if c.Ecosystem == "" {
				unmatched++
			}
		}
		if unmatched != d.Unmatched {
			t.Fatalf("unmatched %d, counted %d", d.Unmatched, unmatched)
		}
	})
}

// FuzzParseAdvisories: any input is parsed or refused; a parsed record
// keeps valid JSON and its affected entries can be matched.
func FuzzParseAdvisories(f *testing.F) {
	seeds(f, "testdata/osv/*", "testdata/handwritten/STEWARD-*.json", "testdata/bad/osv-*")
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := vuln.ParseAdvisories(data)
		if err != nil {
			return
		}
		for _, p := range ps {
			if p.Advisory.ID == "" || !json.Valid(p.Advisory.Record) {
				t.Fatalf("parsed record without ID or JSON: %+v", p.Advisory)
			}
			for _, a := range p.Affected {
				for _, v := range []string{"0", "1.0.0", "v1.2.3-rc1", "2:1.0-1~deb12u1", ""} {
					if _, err := vuln.Match(a, v); err != nil {
						t.Fatalf("matching %s@%s: %v", a.Package, v, err)
					}
				}
			}
		}
	})
}
