package vuln_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/vuln"
)

func read(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadAll reads the real OSV records and the hand-written edge cases.
func loadAll(t testing.TB) map[string]vuln.Parsed {
	t.Helper()
	ps, err := vuln.LoadAdvisoryFiles([]string{"testdata/osv", "testdata/handwritten/STEWARD-TEST-RANGES.json",
		"testdata/handwritten/STEWARD-TEST-WITHDRAWN.json"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]vuln.Parsed{}
	for _, p := range ps {
		out[p.Advisory.ID] = p
	}
	return out
}

func TestParseRealAdvisories(t *testing.T) {
	all := loadAll(t)
	tests := []struct {
		id        string
		severity  string
		aliases   []string
		packages  []string
		withdrawn bool
	}{
		{"GO-2022-1144", "unknown", []string{"CVE-2022-41717", "GHSA-xrjj-mj9h-534m"}, []string{"Go/stdlib", "Go/golang.org/x/net"}, false},
		{"GO-2021-0053", "unknown", nil, []string{"Go/github.com/gogo/protobuf"}, false},
		{"GHSA-qppj-fm5r-hxr3", "medium", nil, []string{"SwiftURL/github.com/apple/swift-nio-http2", "Go/golang.org/x/net",
			"Go/google.golang.org/grpc"}, false},
		{"GHSA-288c-cq4h-88gq", "high", []string{"CVE-2020-25649"}, []string{"Maven/com.fasterxml.jackson.core:jackson-databind"}, false},
		{"GHSA-mvr2-9pj6-7w5j", "medium", []string{"CVE-2018-10237"}, []string{"Maven/com.google.guava:guava"}, false},
		{"GHSA-rhrv-645h-fjfh", "high", []string{"CVE-2023-39410", "PYSEC-2023-188"}, []string{"Maven/org.apache.avro:avro", "PyPI/avro"}, false},
		{"CVE-2024-1013", "low", nil, []string{"Debian/unixodbc"}, false},
		{"STEWARD-TEST-RANGES", "critical", []string{"CVE-0000-0001"}, []string{"Debian/openssl", "npm/left-pad", "PyPI/foo-bar"}, false},
		{"STEWARD-TEST-WITHDRAWN", "unknown", nil, []string{"Go/golang.org/x/net"}, true},
	}
	if len(all) != 10 {
		t.Fatalf("loaded %d advisories, want 10", len(all))
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			p, ok := all[tc.id]
			if !ok {
				t.Fatalf("%s not loaded", tc.id)
			}
			a := p.Advisory
			if a.Severity != tc.severity {
				t.Errorf("severity %q, want %q", a.Severity, tc.severity)
			}
			for _, al := range tc.aliases {
				if !contains(a.Aliases, al) {
					t.Errorf("aliases %v lack %s", a.Aliases, al)
				}
			}
			for _, pk := range tc.packages {
				if !contains(a.Packages, pk) {
					t.Errorf("packages %v lack %s", a.Packages, pk)
				}
			}
			if (a.Withdrawn != nil) != tc.withdrawn {
				t.Errorf("withdrawn = %v", a.Withdrawn)
			}
			if !json.Valid(a.Record) || a.Modified.IsZero() {
				t.Errorf("record kept %q, modified %v", a.Record, a.Modified)
			}
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// affected finds an advisory's affected entries for one package.
func affected(t *testing.T, all map[string]vuln.Parsed, id, eco, pkg string) []model.AffectedPackage {
	t.Helper()
	var out []model.AffectedPackage
	for _, a := range all[id].Affected {
		if vuln.BaseEcosystem(a.Ecosystem) == eco && a.Package == pkg {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no affected entry for %s/%s", id, eco, pkg)
	}
	return out
}

// TestMatchVersionRanges evaluates real records (and two hand-written
// ones) at versions on both sides of every boundary.
func TestMatchVersionRanges(t *testing.T) {
	all := loadAll(t)
	tests := []struct {
		name, id, eco, pkg, version string
		want                        bool
		fixed, lastAffected         string
	}{
		// SEMVER, two introduced/fixed pairs in one range (Go stdlib).
		{"below first fix", "GO-2022-1144", "Go", "stdlib", "1.18.8", true, "1.18.9", ""},
		{"at first fix", "GO-2022-1144", "Go", "stdlib", "1.18.9", false, "", ""},
		{"between fix and second introduction", "GO-2022-1144", "Go", "stdlib", "1.18.10", false, "", ""},
		{"second introduction", "GO-2022-1144", "Go", "stdlib", "1.19.0", true, "1.19.4", ""},
		{"second range, pre-release", "GO-2022-1144", "Go", "stdlib", "1.19.0-rc1", true, "1.19.4", ""},
		{"at second fix", "GO-2022-1144", "Go", "stdlib", "1.19.4", false, "", ""},
		{"above both", "GO-2022-1144", "Go", "stdlib", "1.21.0", false, "", ""},
		{"module with v prefix", "GO-2022-1144", "Go", "golang.org/x/net", "v0.3.0", true, "0.4.0", ""},
		{"pseudo-version below fix", "GO-2022-1144", "Go", "golang.org/x/net", "v0.0.0-20220524220425-1d687d428aca", true, "0.4.0", ""},
		{"module at fix", "GO-2022-1144", "Go", "golang.org/x/net", "v0.4.0", false, "", ""},
		{"gogo protobuf", "GO-2021-0053", "Go", "github.com/gogo/protobuf", "v1.3.1", true, "1.3.2", ""},
		{"gogo protobuf fixed", "GO-2021-0053", "Go", "github.com/gogo/protobuf", "v1.3.2", false, "", ""},
		// Several ranges for one package (grpc), and last_affected.
		{"grpc oldest range", "GHSA-qppj-fm5r-hxr3", "Go", "google.golang.org/grpc", "1.56.2", true, "1.56.3", ""},
		{"grpc between ranges", "GHSA-qppj-fm5r-hxr3", "Go", "google.golang.org/grpc", "1.56.3", false, "", ""},
		{"grpc 1.57 range", "GHSA-qppj-fm5r-hxr3", "Go", "google.golang.org/grpc", "1.57.0", true, "1.57.1", ""},
		{"grpc 1.57 fixed", "GHSA-qppj-fm5r-hxr3", "Go", "google.golang.org/grpc", "1.57.1", false, "", ""},
		{"grpc 1.58 range", "GHSA-qppj-fm5r-hxr3", "Go", "google.golang.org/grpc", "1.58.2", true, "1.58.3", ""},
		{"last_affected itself", "GHSA-qppj-fm5r-hxr3", "Maven", "com.typesafe.akka:akka-http-core_2.11", "10.1.15", true, "", "10.1.15"},
		{"after last_affected", "GHSA-qppj-fm5r-hxr3", "Maven", "com.typesafe.akka:akka-http-core_2.11", "10.1.16", false, "", ""},
		// ECOSYSTEM ranges with Maven ordering.
		{"jackson range 2", "GHSA-288c-cq4h-88gq", "Maven", "com.fasterxml.jackson.core:jackson-databind", "2.9.10.6", true, "2.9.10.7", ""},
		{"jackson four-part fix", "GHSA-288c-cq4h-88gq", "Maven", "com.fasterxml.jackson.core:jackson-databind", "2.9.10.7", false, "", ""},
		{"jackson range 1", "GHSA-288c-cq4h-88gq", "Maven", "com.fasterxml.jackson.core:jackson-databind", "2.6.7.3", true, "2.6.7.4", ""},
		{"jackson range 3 fixed", "GHSA-288c-cq4h-88gq", "Maven", "com.fasterxml.jackson.core:jackson-databind", "2.10.5.1", false, "", ""},
		{"jackson below all", "GHSA-288c-cq4h-88gq", "Maven", "com.fasterxml.jackson.core:jackson-databind", "2.5.0", false, "", ""},
		{"guava in range", "GHSA-mvr2-9pj6-7w5j", "Maven", "com.google.guava:guava", "23.0", true, "24.1.1-android", ""},
		{"guava before introduction", "GHSA-mvr2-9pj6-7w5j", "Maven", "com.google.guava:guava", "10.0", false, "", ""},
		{"guava qualifier past the fix", "GHSA-mvr2-9pj6-7w5j", "Maven", "com.google.guava:guava", "24.1.1-jre", false, "", ""},
		{"guava-jdk5 last_affected", "GHSA-mvr2-9pj6-7w5j", "Maven", "com.google.guava:guava-jdk5", "17.0", true, "", "17.0"},
		{"versions list only: listed", "GHSA-mvr2-9pj6-7w5j", "Maven", "org.sonatype.sisu:sisu-guava", "0.11.1", true, "", ""},
		{"versions list only: not listed", "GHSA-mvr2-9pj6-7w5j", "Maven", "org.sonatype.sisu:sisu-guava", "0.11.2", false, "", ""},
		// PyPI ordering, names normalised.
		{"pypi below fix", "GHSA-rhrv-645h-fjfh", "PyPI", "avro", "1.11.2", true, "1.11.3", ""},
		{"pypi pre-release of the fix", "GHSA-rhrv-645h-fjfh", "PyPI", "avro", "1.11.3rc1", true, "1.11.3", ""},
		{"pypi fixed", "GHSA-rhrv-645h-fjfh", "PyPI", "avro", "1.11.3", false, "", ""},
		// Debian without a fix: every version.
		{"debian, no fix yet", "CVE-2024-1013", "Debian", "unixodbc", "2.3.6-0.1", true, "", ""},
		// Hand-written: Debian ordering with ~ and +, limit, GIT + versions.
		{"debian tilde before fix", "STEWARD-TEST-RANGES", "Debian", "openssl", "3.0.11-1~deb12u0", true, "3.0.11-1~deb12u1", ""},
		{"debian tilde fix", "STEWARD-TEST-RANGES", "Debian", "openssl", "3.0.11-1~deb12u1", false, "", ""},
		{"debian plus revision", "STEWARD-TEST-RANGES", "Debian", "openssl", "1.1.1n-0+deb11u4", true, "1.1.1n-0+deb11u5", ""},
		{"limit: below", "STEWARD-TEST-RANGES", "npm", "left-pad", "1.1.9", true, "", ""},
		{"limit: at", "STEWARD-TEST-RANGES", "npm", "left-pad", "1.2.0", false, "", ""},
		{"git range skipped, version listed", "STEWARD-TEST-RANGES", "PyPI", "foo-bar", "2.0.1", true, "", ""},
		{"git range skipped, version not listed", "STEWARD-TEST-RANGES", "PyPI", "foo-bar", "2.0.0", false, "", ""},
		{"withdrawn matches nothing", "STEWARD-TEST-WITHDRAWN", "Go", "golang.org/x/net", "v0.1.0", false, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got vuln.Verdict
			for _, a := range affected(t, all, tc.id, tc.eco, tc.pkg) {
				v, err := vuln.Match(a, tc.version)
				if err != nil {
					t.Fatal(err)
				}
				if v.Affected {
					got = v
					break
				}
			}
			if got.Affected != tc.want || got.Fixed != tc.fixed || got.LastAffected != tc.lastAffected {
				t.Fatalf("%s %s@%s: got %+v, want affected=%v fixed=%q last_affected=%q", tc.id, tc.pkg, tc.version, got,
					tc.want, tc.fixed, tc.lastAffected)
			}
		})
	}
}

func TestParsePURL(t *testing.T) {
	tests := []struct {
		purl, eco, pkg, release, version string
		ok                               bool
	}{
		{"pkg:golang/golang.org/x/net@v0.1.0", "Go", "golang.org/x/net", "", "v0.1.0", true},
		{"pkg:npm/%40scope/Name@1.0.0", "npm", "@scope/name", "", "1.0.0", true},
		{"pkg:pypi/Foo_Bar.baz@2.0", "PyPI", "foo-bar-baz", "", "2.0", true},
		{"pkg:maven/com.google.guava/guava@23.0", "Maven", "com.google.guava:guava", "", "23.0", true},
		{"pkg:deb/debian/libssl1.1@1.1.1n-0+deb11u4?upstream=openssl&distro=debian-11", "Debian", "openssl", "11", "1.1.1n-0+deb11u4", true},
		{"pkg:deb/debian/curl@7.88.1-10?distro=bookworm", "Debian", "curl", "12", "7.88.1-10", true},
		{"pkg:apk/alpine/zlib@1.2.12-r1?arch=x86_64&distro=3.22.0&origin=zlib", "Alpine", "zlib", "v3.22", "1.2.12-r1", true},
		{"pkg:apk/alpine/busybox-binsh@1.36.1-r27?arch=x86_64&upstream=busybox&distro=alpine-3.17.2", "Alpine", "busybox", "v3.17", "1.36.1-r27", true},
		{"pkg:cargo/rustls@0.23.13", "crates.io", "rustls", "", "0.23.13", true},
		{"pkg:generic/openssl@1.1.1", "", "", "", "1.1.1", false},
		{"pkg:github/asg017/sqlite-vec@v0.1.9", "", "", "", "v0.1.9", false},
	}
	for _, tc := range tests {
		c, v, ok, err := vuln.ParsePURL(tc.purl)
		if err != nil {
			t.Fatalf("%s: %v", tc.purl, err)
		}
		if ok != tc.ok || c.Ecosystem != tc.eco || c.Package != tc.pkg || c.Release != tc.release || v != tc.version {
			t.Errorf("%s: got %+v %q ok=%v", tc.purl, c, v, ok)
		}
	}
	if _, _, _, err := vuln.ParsePURL("not a purl"); err == nil {
		t.Error("a non-purl parsed")
	}
}

// TestParseRealSBOMs reads real SBOMs (and one hand-written firmware SBOM)
// in every supported format.
func TestParseRealSBOMs(t *testing.T) {
	tests := []struct {
		file          string
		format        model.SBOMFormat
		spec          string
		components    int
		withoutPURL   int
		wantName, eco string
		wantPackage   string
		wantVersion   string
	}{
		{"sbom/modernc-sqlite-v1.62.0.cdx.json", model.SBOMCycloneDX, "1.6", 34, 8, "modernc.org/sqlite", "Go", "golang.org/x/sys", "v0.49.0"},
		{"sbom/modernc-sqlite-v1.62.0.spdx.json", model.SBOMSPDX, "SPDX-2.3", 35, 8, "modernc.org/sqlite", "Go", "modernc.org/libc", "v1.80.1"},
		{"sbom/alpine.cdx.xml", model.SBOMCycloneDX, "1.4", 16, 2, "alpine:latest", "Alpine", "openssl", "3.0.8-r0"},
		{"sbom/alpine-zlib-16.cdx.json", model.SBOMCycloneDX, "1.6", 1, 0, "", "Alpine", "zlib", "1.2.12-r1"},
		{"sbom/SPDXJSONExample-v2.3.spdx.json", model.SBOMSPDX, "SPDX-2.3", 5, 4, "SPDX-Tools-v2.0", "Maven", "org.apache.jena:apache-jena", "3.12.0"},
		{"sbom/sbom-with-nested-comps.cdx.json", model.SBOMCycloneDX, "1.4", 3, 2, "", "crates.io", "rustls", "0.23.13"},
		{"handwritten/thermostat-fw-1.0.cdx.json", model.SBOMCycloneDX, "1.5", 7, 1, "thermostat-fw 1.0", "Debian", "openssl", "1.1.1n-0+deb11u4"},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			d, err := vuln.ParseSBOM(read(t, "testdata/"+tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if d.Format != tc.format || d.SpecVersion != tc.spec || len(d.Components) != tc.components || d.Unmatched != tc.withoutPURL {
				t.Fatalf("got %s %s with %d components (%d without purl), want %s %s %d (%d)", d.Format, d.SpecVersion,
					len(d.Components), d.Unmatched, tc.format, tc.spec, tc.components, tc.withoutPURL)
			}
			if !strings.HasPrefix(d.Name, tc.wantName) {
				t.Errorf("name %q, want %q", d.Name, tc.wantName)
			}
			found := false
			for _, c := range d.Components {
				if c.Ecosystem == tc.eco && c.Package == tc.wantPackage && c.Version == tc.wantVersion {
					found = true
				}
				if c.PURL == "" && c.Ecosystem != "" {
					t.Errorf("component %q without purl has ecosystem %q", c.Name, c.Ecosystem)
				}
			}
			if !found {
				t.Errorf("no component %s/%s@%s in %+v", tc.eco, tc.wantPackage, tc.wantVersion, d.Components)
			}
		})
	}
}

// TestMatchFirmware matches a firmware SBOM's components, release
// qualifiers included, against the loaded advisories.
func TestMatchFirmware(t *testing.T) {
	all := loadAll(t)
	var aff []model.AffectedPackage
	for _, p := range all {
		aff = append(aff, p.Affected...)
	}
	hitsOf := func(file string) map[string]vuln.Hit {
		d, err := vuln.ParseSBOM(read(t, "testdata/"+file))
		if err != nil {
			t.Fatal(err)
		}
		var comps []model.FirmwareComponent
		for _, c := range d.Components {
			comps = append(comps, model.FirmwareComponent{ProductID: "p", FirmwareVersion: "1", SBOMComponent: c})
		}
		hits, err := vuln.MatchComponents(comps, aff)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]vuln.Hit{}
		for _, h := range hits[model.FirmwareRef{ProductID: "p", FirmwareVersion: "1"}] {
			out[h.AdvisoryID+" "+h.Package] = h
		}
		return out
	}
	got := hitsOf("handwritten/thermostat-fw-1.0.cdx.json")
	want := map[string]string{ // advisory + package → fixed version
		"GO-2022-1144 golang.org/x/net":         "0.4.0",
		"GO-2022-1144 stdlib":                   "1.19.4",
		"GO-2024-2887 stdlib":                   "1.21.11",
		"GHSA-qppj-fm5r-hxr3 golang.org/x/net":  "0.17.0",
		"GO-2021-0053 github.com/gogo/protobuf": "1.3.2",
		"CVE-2024-1013 unixodbc":                "",
		"GHSA-rhrv-645h-fjfh avro":              "1.11.3",
		// openssl of Debian 11: the Debian 11 entry matches, the
		// Debian 12 one (same package) must not.
		"STEWARD-TEST-RANGES openssl": "1.1.1n-0+deb11u5",
	}
	for k, fixed := range want {
		h, ok := got[k]
		if !ok {
			t.Errorf("missing hit %s (got %v)", k, keys(got))
			continue
		}
		if h.Fixed != fixed {
			t.Errorf("%s: fixed %q, want %q", k, h.Fixed, fixed)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d hits %v, want %d", len(got), keys(got), len(want))
	}
	if fixedFW := hitsOf("handwritten/thermostat-fw-1.1.cdx.json"); len(fixedFW) != 1 || fixedFW["CVE-2024-1013 unixodbc"].AdvisoryID == "" {
		t.Errorf("firmware 1.1 should only keep the unfixed Debian issue: %v", keys(fixedFW))
	}
	// The real modernc SBOM's Go modules are newer than every fix here.
	if real := hitsOf("sbom/modernc-sqlite-v1.62.0.cdx.json"); len(real) != 0 {
		t.Errorf("modernc SBOM: unexpected hits %v", keys(real))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestBadInput: malformed, huge and wrong-schema input is refused with an
// error that says what is wrong.
func TestBadInput(t *testing.T) {
	huge := append([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","components":[`), bytes.Repeat([]byte(" "), vuln.MaxSBOMBytes)...)
	hugeOSV := append([]byte(`{"id":"X-1","modified":"2024-01-01T00:00:00Z","details":"`), bytes.Repeat([]byte("a"), vuln.MaxAdvisoryBytes)...)
	hugeOSV = append(hugeOSV, `"}`...)
	sbomCases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"not JSON", []byte("hello"), "not a CycloneDX or SPDX"},
		{"truncated", read(t, "testdata/bad/truncated.cdx.json"), "not valid JSON"},
		{"wrong types", read(t, "testdata/bad/wrong-types.cdx.json"), "components must be a list"},
		{"unknown CycloneDX version", read(t, "testdata/bad/unknown-spec.cdx.json"), "specification version"},
		{"unknown SPDX version", read(t, "testdata/bad/spdx-unknown-version.spdx.json"), "SDPX version"},
		{"an OSV record", read(t, "testdata/osv/GO-2022-1144.json"), "OSV advisory, not an SBOM"},
		{"a JSON array", []byte(`[1,2]`), "JSON object"},
		{"some other JSON", []byte(`{"name":"x"}`), "not a CycloneDX (bomFormat) or SPDX"},
		{"bomFormat lies", []byte(`{"bomFormat":"SPDX"}`), "bomFormat"},
		{"huge", huge, "larger than"},
		{"nameless component", []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"library"}]}`), "neither a name"},
	}
	for _, tc := range sbomCases {
		t.Run("sbom "+tc.name, func(t *testing.T) {
			_, err := vuln.ParseSBOM(tc.data)
			var ie *vuln.InputError
			if err == nil || !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an input error naming %q", err, tc.want)
			}
		})
	}
	osvCases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", []byte("  "), "empty input"},
		{"two keys in an event", read(t, "testdata/bad/osv-event-two-keys.json"), "exactly one of introduced"},
		{"no modified", read(t, "testdata/bad/osv-no-modified.json"), "modified: is required"},
		{"bad range type", read(t, "testdata/bad/osv-bad-range-type.json"), "not a range type"},
		{"no introduced", read(t, "testdata/bad/osv-no-introduced.json"), "at least one introduced"},
		{"wrong types", read(t, "testdata/bad/osv-wrong-types.json"), "aliases must be a list"},
		{"an SBOM", read(t, "testdata/sbom/alpine-zlib-16.cdx.json"), "CycloneDX SBOM, not an OSV"},
		{"an SPDX document", read(t, "testdata/sbom/modernc-sqlite-v1.62.0.spdx.json"), "SPDX document"},
		{"no id", []byte(`{"modified":"2024-01-01T00:00:00Z"}`), "id: is required"},
		{"bad id", []byte(`{"id":"../../etc","modified":"2024-01-01T00:00:00Z"}`), "not an OSV ID"},
		{"bad time", []byte(`{"id":"X-1","modified":"yesterday"}`), "RFC 3339"},
		{"huge record", hugeOSV, "larger than"},
		{"one bad record of a list", []byte(`[` + string(read(t, "testdata/osv/GO-2021-0053.json")) + `,{"id":"X"}]`), "record 2"},
		{"duplicate in a list", []byte(`[{"id":"X-1","modified":"2024-01-01T00:00:00Z"},{"id":"X-1","modified":"2024-01-01T00:00:00Z"}]`), "twice"},
		{"trailing data", []byte(`{"id":"X-1","modified":"2024-01-01T00:00:00Z"} {}`), "not valid JSON"},
		{"a string", []byte(`"GO-2022-1144"`), "JSON object"},
	}
	for _, tc := range osvCases {
		t.Run("osv "+tc.name, func(t *testing.T) {
			_, err := vuln.ParseAdvisories(tc.data)
			var ie *vuln.InputError
			if err == nil || !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an input error naming %q", err, tc.want)
			}
		})
	}
	// A folder with one bad file loads nothing, naming the file.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "good.json"), read(t, "testdata/osv/GO-2021-0053.json"), 0o600)
	os.WriteFile(filepath.Join(dir, "zz-bad.json"), read(t, "testdata/bad/osv-no-introduced.json"), 0o600)
	if ps, err := vuln.LoadAdvisoryFiles([]string{dir}); err == nil || !strings.Contains(err.Error(), "zz-bad.json") {
		t.Fatalf("got %d records, %v; want an error naming zz-bad.json", len(ps), err)
	}
}

func TestCVSS3(t *testing.T) {
	tests := []struct {
		vector string
		score  float64
	}{
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8},
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L", 5.3},
		{"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H", 5.9},
		{"CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9},
		{"CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:N", 0},
		{"CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6},
	}
	for _, tc := range tests {
		got, err := vuln.CVSS3BaseScore(tc.vector)
		if err != nil || got != tc.score {
			t.Errorf("%s: %v %v, want %v", tc.vector, got, err, tc.score)
		}
	}
	if _, err := vuln.CVSS3BaseScore("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"); err == nil {
		t.Error("a bad vector scored")
	}
}

// TestLoadExportZip reads an OSV export as the OSV project publishes it:
// a zip of one JSON file per record.
func TestLoadExportZip(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	files, _ := filepath.Glob("testdata/osv/*.json")
	for _, f := range files {
		w, err := zw.Create(filepath.Base(f))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(read(t, f))
	}
	w, _ := zw.Create("README.txt")
	w.Write([]byte("not a record"))
	zw.Close()
	path := filepath.Join(t.TempDir(), "all.zip")
	os.WriteFile(path, buf.Bytes(), 0o600)
	ps, err := vuln.LoadAdvisoryFiles([]string{path})
	if err != nil || len(ps) != len(files) {
		t.Fatalf("loaded %d of %d records: %v", len(ps), len(files), err)
	}
	os.WriteFile(path, []byte("PK not really"), 0o600)
	if _, err := vuln.LoadAdvisoryFiles([]string{path}); err == nil || !strings.Contains(err.Error(), "not a zip") {
		t.Fatalf("a broken zip: %v", err)
	}
}
