// Package vuln is the vulnerability side of the security engine: it reads
// SBOMs (CycloneDX and SPDX JSON) per product firmware version and OSV
// advisories, matches components to advisories by package URL and version
// range, and answers which devices are exposed to an advisory and which
// advisories affect a device.
package vuln

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/model"
)

// The OSV record is read with our own small struct that follows the OSV
// schema (https://ossf.github.io/osv-schema/, 1.6) field for field. It is
// the smallest well-kept option: the schema is a few plain JSON objects,
// the official Go binding (github.com/ossf/osv-schema/bindings/go) is
// generated from protobuf and would need protojson and its own copy of
// every type, and osv-scanner's models come with a module of a hundred
// dependencies. Unknown fields are ignored (the schema grows by adding
// fields); wrong types and missing required fields are refused.

// OSV is one OSV record.
type OSV struct {
	SchemaVersion    string          `json:"schema_version,omitempty"`
	ID               string          `json:"id"`
	Modified         string          `json:"modified"`
	Published        string          `json:"published,omitempty"`
	Withdrawn        string          `json:"withdrawn,omitempty"`
	Aliases          []string        `json:"aliases,omitempty"`
	Related          []string        `json:"related,omitempty"`
	Upstream         []string        `json:"upstream,omitempty"`
	Summary          string          `json:"summary,omitempty"`
	Details          string          `json:"details,omitempty"`
	Severity         []OSVSeverity   `json:"severity,omitempty"`
	Affected         []OSVAffected   `json:"affected,omitempty"`
	References       []OSVReference  `json:"references,omitempty"`
	DatabaseSpecific json.RawMessage `json:"database_specific,omitempty"`
}

// OSVSeverity is a severity score (a CVSS vector or a source's rating).
type OSVSeverity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

// OSVReference is a link.
type OSVReference struct {
	Type string `json:"type"`
	URL  string `json:"url"`
}

// OSVPackage names the affected package.
type OSVPackage struct {
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
	PURL      string `json:"purl,omitempty"`
}

// OSVAffected is one affected package with its version ranges.
type OSVAffected struct {
	Package           *OSVPackage     `json:"package,omitempty"`
	Severity          []OSVSeverity   `json:"severity,omitempty"`
	Ranges            []OSVRange      `json:"ranges,omitempty"`
	Versions          []string        `json:"versions,omitempty"`
	EcosystemSpecific json.RawMessage `json:"ecosystem_specific,omitempty"`
	DatabaseSpecific  json.RawMessage `json:"database_specific,omitempty"`
}

// OSVRange is a SEMVER, ECOSYSTEM or GIT range of versions.
type OSVRange struct {
	Type   string     `json:"type"`
	Repo   string     `json:"repo,omitempty"`
	Events []OSVEvent `json:"events"`
}

// OSVEvent is one event of a range; exactly one field is set.
type OSVEvent struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

// UnmarshalJSON refuses events that do not have exactly one known key.
func (e *OSVEvent) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("an event must be an object with one string field: %w", err)
	}
	if len(m) != 1 {
		return fmt.Errorf("an event must have exactly one of introduced, fixed, last_affected or limit, not %d fields", len(m))
	}
	for k, v := range m {
		if v == "" {
			return fmt.Errorf("event %s has an empty version", k)
		}
		switch k {
		case "introduced":
			e.Introduced = v
		case "fixed":
			e.Fixed = v
		case "last_affected":
			e.LastAffected = v
		case "limit":
			e.Limit = v
		default:
			return fmt.Errorf("unknown event %q (want introduced, fixed, last_affected or limit)", k)
		}
	}
	return nil
}

// Limits on advisory input: a record larger than this is not an advisory.
const (
	MaxAdvisoryBytes = 1 << 20
	maxAffected      = 10000
	maxRanges        = 1000
	maxEvents        = 10000
	maxVersions      = 100000
	maxAliases       = 1000
)

var osvID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$`)

// InputError is bad input: it says where (file, record, field) and what.
type InputError struct {
	Where string
	Err   error
}

func (e *InputError) Error() string {
	if e.Where == "" {
		return e.Err.Error()
	}
	return e.Where + ": " + e.Err.Error()
}
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(where, format string, a ...any) error {
	return &InputError{Where: where, Err: fmt.Errorf(format, a...)}
}

// ParseAdvisories reads one OSV record (a JSON object) or a list of them
// (a JSON array). Any bad record refuses the whole input: nothing of it
// may be imported.
func ParseAdvisories(data []byte) ([]Parsed, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, inputErr("", "empty input: want an OSV record (JSON object) or a list of them")
	}
	switch data[0] {
	case '{':
		p, err := ParseAdvisory(data)
		if err != nil {
			return nil, err
		}
		return []Parsed{*p}, nil
	case '[':
		var raws []json.RawMessage
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, inputErr("", "not valid JSON: %v", err)
		}
		if len(raws) == 0 {
			return nil, inputErr("", "the list holds no OSV records")
		}
		out := make([]Parsed, 0, len(raws))
		seen := map[string]int{}
		for i, raw := range raws {
			p, err := ParseAdvisory(raw)
			if err != nil {
				return nil, &InputError{Where: fmt.Sprintf("record %d", i+1), Err: err}
			}
			if j, dup := seen[p.Advisory.ID]; dup {
				return nil, inputErr(fmt.Sprintf("record %d", i+1), "%s appears twice (also record %d)", p.Advisory.ID, j+1)
			}
			seen[p.Advisory.ID] = i
			out = append(out, *p)
		}
		return out, nil
	}
	return nil, inputErr("", "not an OSV record: want a JSON object or a list of them")
}

// Parsed is an advisory ready to store: the record, its stored form and
// its affected entries.
type Parsed struct {
	Record   OSV
	Advisory model.Advisory
	Affected []model.AffectedPackage
}

// ParseAdvisory reads and checks one OSV record.
func ParseAdvisory(data []byte) (*Parsed, error) {
	if len(data) > MaxAdvisoryBytes {
		return nil, inputErr("", "record of %d bytes is larger than %d bytes", len(data), MaxAdvisoryBytes)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, inputErr("", "not valid JSON: %v", err)
	}
	if _, ok := probe["bomFormat"]; ok {
		return nil, inputErr("", "this is a CycloneDX SBOM, not an OSV advisory; import it as an SBOM of a firmware version")
	}
	if _, ok := probe["spdxVersion"]; ok {
		return nil, inputErr("", "this is an SPDX document, not an OSV advisory; import it as an SBOM of a firmware version")
	}
	if _, ok := probe["ietf-mud:mud"]; ok {
		return nil, inputErr("", "this is a MUD file, not an OSV advisory")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var r OSV
	if err := dec.Decode(&r); err != nil {
		return nil, inputErr("", "not an OSV record: %s", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, inputErr("", "unexpected data after the record")
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return nil, inputErr("", "not valid JSON: %v", err)
	}
	p := &Parsed{Record: r}
	mod, _ := parseTime(r.Modified)
	a := model.Advisory{ID: r.ID, Aliases: slices.Clone(r.Aliases), Summary: summaryOf(r), Severity: severityOf(r),
		Modified: mod, Record: compact.Bytes()}
	if a.Aliases == nil {
		a.Aliases = []string{}
	}
	if r.Published != "" {
		t, _ := parseTime(r.Published)
		a.Published = &t
	}
	if r.Withdrawn != "" {
		t, _ := parseTime(r.Withdrawn)
		a.Withdrawn = &t
	}
	seen := map[string]bool{}
	a.Packages = []string{}
	for _, af := range r.Affected {
		if af.Package == nil || af.Package.Ecosystem == "" || af.Package.Name == "" {
			continue // a GIT-only entry: nothing an SBOM component can match
		}
		eco, name := af.Package.Ecosystem, NormalizeName(af.Package.Ecosystem, af.Package.Name)
		ranges, _ := json.Marshal(af.Ranges)
		versions, _ := json.Marshal(af.Versions)
		if af.Ranges == nil {
			ranges = []byte("[]")
		}
		if af.Versions == nil {
			versions = []byte("[]")
		}
		p.Affected = append(p.Affected, model.AffectedPackage{AdvisoryID: r.ID, Index: len(p.Affected), Ecosystem: eco,
			Package: name, Ranges: ranges, Versions: versions, Severity: a.Severity, Withdrawn: a.Withdrawn != nil})
		key := BaseEcosystem(eco) + "/" + name
		if !seen[key] {
			seen[key] = true
			a.Packages = append(a.Packages, key)
		}
	}
	p.Advisory = a
	return p, nil
}

func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	return err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "a list"
	case "struct", "map", "ptr":
		return "an object"
	}
	return "a " + k
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

func (r *OSV) validate() error {
	if r.ID == "" {
		return inputErr("id", "is required (is this an OSV record?)")
	}
	if !osvID.MatchString(r.ID) {
		return inputErr("id", "%q is not an OSV ID (letters, digits and .-_:+, at most 128 characters)", trunc(r.ID))
	}
	if r.Modified == "" {
		return inputErr(r.ID+": modified", "is required (RFC 3339 time)")
	}
	for field, v := range map[string]string{"modified": r.Modified, "published": r.Published, "withdrawn": r.Withdrawn} {
		if v == "" {
			continue
		}
		if _, err := parseTime(v); err != nil {
			return inputErr(r.ID+": "+field, "%q is not an RFC 3339 time", trunc(v))
		}
	}
	if len(r.Aliases) > maxAliases {
		return inputErr(r.ID+": aliases", "more than %d aliases", maxAliases)
	}
	for _, al := range r.Aliases {
		if !osvID.MatchString(al) {
			return inputErr(r.ID+": aliases", "%q is not an advisory ID", trunc(al))
		}
	}
	if len(r.Affected) > maxAffected {
		return inputErr(r.ID+": affected", "more than %d entries", maxAffected)
	}
	versions := 0
	for i, af := range r.Affected {
		where := fmt.Sprintf("%s: affected[%d]", r.ID, i)
		if af.Package != nil {
			if (af.Package.Ecosystem == "") != (af.Package.Name == "") {
				return inputErr(where+".package", "needs both ecosystem and name")
			}
			if len(af.Package.Name) > 512 || len(af.Package.Ecosystem) > 128 {
				return inputErr(where+".package", "name or ecosystem too long")
			}
		}
		if len(af.Ranges) > maxRanges {
			return inputErr(where+".ranges", "more than %d ranges", maxRanges)
		}
		versions += len(af.Versions)
		if versions > maxVersions {
			return inputErr(where+".versions", "more than %d versions listed", maxVersions)
		}
		for j, rg := range af.Ranges {
			w := fmt.Sprintf("%s.ranges[%d]", where, j)
			switch rg.Type {
			case "SEMVER", "ECOSYSTEM", "GIT":
			default:
				return inputErr(w+".type", "%q is not a range type (SEMVER, ECOSYSTEM or GIT)", trunc(rg.Type))
			}
			if rg.Type == "GIT" && rg.Repo == "" {
				return inputErr(w+".repo", "a GIT range needs its repo")
			}
			if len(rg.Events) == 0 {
				return inputErr(w+".events", "a range needs events")
			}
			if len(rg.Events) > maxEvents {
				return inputErr(w+".events", "more than %d events", maxEvents)
			}
			intro := false
			for _, e := range rg.Events {
				intro = intro || e.Introduced != ""
			}
			if !intro {
				return inputErr(w+".events", "a range needs at least one introduced event")
			}
			if rg.Type == "ECOSYSTEM" && (af.Package == nil || af.Package.Ecosystem == "") {
				return inputErr(w, "an ECOSYSTEM range needs the package's ecosystem")
			}
		}
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func summaryOf(r OSV) string {
	s := r.Summary
	if s == "" {
		s = r.Details
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// severityOf rates an advisory critical, high, medium, low or unknown: a
// CVSS v3 vector's base score when there is one, else the source's own
// rating (GitHub's database_specific.severity, Debian's urgency, Ubuntu's
// priority).
func severityOf(r OSV) string {
	all := slices.Clone(r.Severity)
	for _, a := range r.Affected {
		all = append(all, a.Severity...)
	}
	best := -1.0
	for _, s := range all {
		if strings.HasPrefix(s.Type, "CVSS_V3") || strings.HasPrefix(s.Score, "CVSS:3") {
			if v, err := CVSS3BaseScore(s.Score); err == nil && v > best {
				best = v
			}
		}
	}
	if best >= 0 {
		return ratingOf(best)
	}
	for _, s := range all {
		if s.Type == "Ubuntu" {
			if r := rating(s.Score); r != "" {
				return r
			}
		}
	}
	var ds struct {
		Severity string `json:"severity"`
	}
	if len(r.DatabaseSpecific) > 0 && json.Unmarshal(r.DatabaseSpecific, &ds) == nil {
		if r := rating(ds.Severity); r != "" {
			return r
		}
	}
	for _, a := range r.Affected {
		var es struct {
			Severity string `json:"severity"`
			Urgency  string `json:"urgency"`
		}
		if len(a.EcosystemSpecific) > 0 && json.Unmarshal(a.EcosystemSpecific, &es) == nil {
			if r := rating(es.Severity); r != "" {
				return r
			}
			if r := rating(es.Urgency); r != "" {
				return r
			}
		}
	}
	return "unknown"
}

func rating(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "critical":
		return "critical"
	case "high", "important":
		return "high"
	case "moderate", "medium":
		return "medium"
	case "low", "negligible", "unimportant":
		return "low"
	}
	return ""
}

func ratingOf(score float64) string {
	switch {
	case score >= 9:
		return "critical"
	case score >= 7:
		return "high"
	case score >= 4:
		return "medium"
	case score > 0:
		return "low"
	}
	return "unknown"
}

// CVSS3BaseScore computes the base score of a CVSS v3.0/v3.1 vector, as
// the specification's formulas do.
func CVSS3BaseScore(vector string) (float64, error) {
	parts := strings.Split(vector, "/")
	if len(parts) < 9 || !strings.HasPrefix(parts[0], "CVSS:3") {
		return 0, fmt.Errorf("not a CVSS v3 vector: %q", trunc(vector))
	}
	m := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, ":")
		if !ok {
			return 0, fmt.Errorf("bad CVSS metric %q", p)
		}
		m[k] = v
	}
	weights := map[string]map[string]float64{
		"AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
		"AC": {"L": 0.77, "H": 0.44},
		"UI": {"N": 0.85, "R": 0.62},
		"C":  {"H": 0.56, "L": 0.22, "N": 0},
		"I":  {"H": 0.56, "L": 0.22, "N": 0},
		"A":  {"H": 0.56, "L": 0.22, "N": 0},
	}
	val := map[string]float64{}
	for k, w := range weights {
		x, ok := w[m[k]]
		if !ok {
			return 0, fmt.Errorf("CVSS metric %s has no valid value", k)
		}
		val[k] = x
	}
	changed := m["S"] == "C"
	if m["S"] != "C" && m["S"] != "U" {
		return 0, errors.New("CVSS metric S has no valid value")
	}
	pr := map[string]float64{"N": 0.85, "L": 0.62, "H": 0.27}
	if changed {
		pr = map[string]float64{"N": 0.85, "L": 0.68, "H": 0.5}
	}
	prv, ok := pr[m["PR"]]
	if !ok {
		return 0, errors.New("CVSS metric PR has no valid value")
	}
	iss := 1 - (1-val["C"])*(1-val["I"])*(1-val["A"])
	var impact float64
	if changed {
		impact = 7.52*(iss-0.029) - 3.25*math.Pow(iss-0.02, 15)
	} else {
		impact = 6.42 * iss
	}
	expl := 8.22 * val["AV"] * val["AC"] * prv * val["UI"]
	if impact <= 0 {
		return 0, nil
	}
	if changed {
		return roundUp(math.Min(1.08*(impact+expl), 10)), nil
	}
	return roundUp(math.Min(impact+expl, 10)), nil
}

// roundUp is CVSS v3.1's Roundup: the smallest one-decimal number >= x.
func roundUp(x float64) float64 {
	i := int64(math.Round(x * 100000))
	if i%10000 == 0 {
		return float64(i) / 100000
	}
	v, _ := strconv.ParseFloat(strconv.FormatFloat(math.Floor(float64(i)/10000+1)/10, 'f', 1, 64), 64)
	return v
}
