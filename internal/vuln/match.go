package vuln

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/vuln/semantic"
)

// Verdict is what matching one component version against one affected
// entry found.
type Verdict struct {
	Affected bool
	// Fixed is the first fixed version above the component's version in
	// the range that affects it ("" when none is known).
	Fixed string
	// LastAffected is the last affected version of that range, when the
	// advisory names one instead of a fix.
	LastAffected string
}

// versionParser parses versions of one range type and ecosystem.
type versionParser func(string) (semantic.Version, error)

func parserFor(rangeType, ecosystem string) (versionParser, error) {
	if rangeType == "SEMVER" {
		return func(s string) (semantic.Version, error) { return semantic.ParseSemverVersion(s), nil }, nil
	}
	if _, err := semantic.Parse("0", ecosystem); errors.Is(err, semantic.ErrUnsupportedEcosystem) {
		return nil, err
	}
	return func(s string) (semantic.Version, error) { return semantic.Parse(s, ecosystem) }, nil
}

// Match evaluates an affected entry for one version of its package, as
// the OSV schema's evaluation rules say: an explicitly listed version is
// affected; otherwise each SEMVER or ECOSYSTEM range is walked in version
// order, and the version is affected when the last event at or below it
// is an introduction (a fix at or below it, or a last_affected below it,
// ends the range; a limit caps it). GIT ranges need commit history and
// are not evaluated (their tagged versions are usually listed). A
// withdrawn advisory affects nothing.
func Match(a model.AffectedPackage, version string) (Verdict, error) {
	if a.Withdrawn || version == "" {
		return Verdict{}, nil
	}
	var listed []string
	if len(a.Versions) > 0 {
		if err := json.Unmarshal(a.Versions, &listed); err != nil {
			return Verdict{}, err
		}
	}
	var ranges []OSVRange
	if len(a.Ranges) > 0 {
		if err := json.Unmarshal(a.Ranges, &ranges); err != nil {
			return Verdict{}, err
		}
	}
	var v Verdict
	for _, r := range ranges {
		if r.Type == "GIT" {
			continue
		}
		got, err := matchRange(r, a.Ecosystem, version)
		if err != nil {
			if errors.Is(err, semantic.ErrUnsupportedEcosystem) {
				continue
			}
			return Verdict{}, err
		}
		if got.Affected {
			return got, nil
		}
	}
	if slices.Contains(listed, version) {
		v.Affected = true
	}
	return v, nil
}

type event struct {
	kind    string // introduced, fixed, last_affected, limit
	version semantic.Version
	raw     string
	zero    bool // introduced "0": below every version
}

func matchRange(r OSVRange, ecosystem, version string) (Verdict, error) {
	parse, err := parserFor(r.Type, ecosystem)
	if err != nil {
		return Verdict{}, err
	}
	v, err := parse(version)
	if err != nil {
		// A component version the ecosystem cannot read cannot be placed
		// in the range: it is not reported as affected by it.
		return Verdict{}, nil
	}
	events := make([]event, 0, len(r.Events))
	var limits []event
	for _, e := range r.Events {
		var ev event
		switch {
		case e.Introduced != "":
			ev = event{kind: "introduced", raw: e.Introduced, zero: e.Introduced == "0"}
		case e.Fixed != "":
			ev = event{kind: "fixed", raw: e.Fixed}
		case e.LastAffected != "":
			ev = event{kind: "last_affected", raw: e.LastAffected}
		case e.Limit != "":
			ev = event{kind: "limit", raw: e.Limit}
		default:
			continue
		}
		if !ev.zero && ev.raw != "*" {
			pv, err := parse(ev.raw)
			if err != nil {
				return Verdict{}, nil // an event the ecosystem cannot read: the range cannot be evaluated
			}
			ev.version = pv
		}
		if ev.kind == "limit" {
			if ev.raw != "*" {
				limits = append(limits, ev)
			}
			continue
		}
		events = append(events, ev)
	}
	cmp := func(a, b event) int {
		switch {
		case a.zero && b.zero:
			return 0
		case a.zero:
			return -1
		case b.zero:
			return 1
		}
		c, err := a.version.Compare(b.version)
		if err != nil {
			return 0
		}
		return c
	}
	slices.SortStableFunc(events, cmp)
	// vs compares the component version with an event's version.
	vs := func(e event) int {
		if e.zero {
			return 1
		}
		c, err := v.Compare(e.version)
		if err != nil {
			return -1
		}
		return c
	}
	affected := false
	at := -1
	for i, e := range events {
		switch e.kind {
		case "introduced":
			if vs(e) >= 0 {
				affected, at = true, i
			}
		case "fixed":
			if vs(e) >= 0 {
				affected = false
			}
		case "last_affected":
			if vs(e) > 0 {
				affected = false
			}
		}
	}
	for _, l := range limits {
		if vs(l) >= 0 {
			affected = false
		}
	}
	if !affected {
		return Verdict{}, nil
	}
	out := Verdict{Affected: true}
	for _, e := range events[at+1:] {
		if e.kind == "fixed" && vs(e) < 0 {
			out.Fixed = e.raw
			break
		}
		if e.kind == "last_affected" && vs(e) <= 0 {
			out.LastAffected = e.raw
			break
		}
	}
	return out, nil
}

// Hit is one advisory affecting one component of a firmware version.
type Hit struct {
	AdvisoryID   string `json:"advisory_id"`
	Severity     string `json:"severity"`
	Ecosystem    string `json:"ecosystem"`
	Package      string `json:"package"`
	Version      string `json:"installed_version"`
	PURL         string `json:"purl,omitempty"`
	Fixed        string `json:"fixed_version,omitempty" doc:"The package version that fixes it, when the advisory names one."`
	LastAffected string `json:"last_affected,omitempty"`
}

// MatchComponents matches firmware components against affected entries
// (as AffectedPackages returns them for the components' packages) and
// returns the hits per firmware, one per advisory and component.
func MatchComponents(comps []model.FirmwareComponent, affected []model.AffectedPackage) (map[model.FirmwareRef][]Hit, error) {
	byKey := map[string][]model.AffectedPackage{}
	for _, a := range affected {
		k := BaseEcosystem(a.Ecosystem) + "/" + a.Package
		byKey[k] = append(byKey[k], a)
	}
	out := map[model.FirmwareRef][]Hit{}
	type seenKey struct {
		fw       model.FirmwareRef
		advisory string
		comp     int
	}
	seen := map[seenKey]bool{}
	for _, c := range comps {
		if c.Ecosystem == "" || c.Package == "" {
			continue
		}
		release := ""
		if c.PURL != "" {
			if co, _, ok, err := ParsePURL(c.PURL); err == nil && ok {
				release = co.Release
			}
		}
		fw := model.FirmwareRef{ProductID: c.ProductID, FirmwareVersion: c.FirmwareVersion}
		for _, a := range byKey[c.Ecosystem+"/"+c.Package] {
			sk := seenKey{fw, a.AdvisoryID, c.Index}
			if seen[sk] || !releaseMatches(a.Ecosystem, release) {
				continue
			}
			v, err := Match(a, c.Version)
			if err != nil {
				return nil, err
			}
			if !v.Affected {
				continue
			}
			seen[sk] = true
			out[fw] = append(out[fw], Hit{AdvisoryID: a.AdvisoryID, Severity: a.Severity, Ecosystem: a.Ecosystem,
				Package: c.Package, Version: c.Version, PURL: c.PURL, Fixed: v.Fixed, LastAffected: v.LastAffected})
		}
	}
	return out, nil
}

// PackageKeys lists the distinct package keys of components.
func PackageKeys(comps []model.FirmwareComponent) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range comps {
		if c.Ecosystem == "" || c.Package == "" {
			continue
		}
		k := c.Ecosystem + "/" + c.Package
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
