package vuln

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	spdxjson "github.com/spdx/tools-golang/json"

	"github.com/steward-iot/steward/internal/model"
)

// Limits on SBOM input.
const (
	MaxSBOMBytes      = 16 << 20
	MaxSBOMComponents = 100000
	maxNesting        = 32
)

// SBOMDoc is a parsed SBOM: what it is and the components it lists.
type SBOMDoc struct {
	Format      model.SBOMFormat
	SpecVersion string
	Name        string
	Components  []model.SBOMComponent
	// Unmatched counts components without a usable package URL.
	Unmatched int
	// Warnings name components that were kept but cannot be matched
	// (a package URL that does not parse); at most 20 are listed.
	Warnings []string
}

// ParseSBOM reads a CycloneDX (JSON, or XML) or SPDX 2.x JSON document.
// Anything else, or a document that does not hold together, is an error
// that says what is wrong.
func ParseSBOM(data []byte) (*SBOMDoc, error) {
	if len(data) > MaxSBOMBytes {
		return nil, inputErr("", "SBOM of %d bytes is larger than %d MiB", len(data), MaxSBOMBytes>>20)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, inputErr("", "empty document: want a CycloneDX or SPDX JSON SBOM")
	}
	if data[0] == '<' {
		return parseCycloneDX(data, cdx.BOMFileFormatXML)
	}
	if data[0] != '{' {
		return nil, inputErr("", "not a CycloneDX or SPDX JSON document (a JSON object)")
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, inputErr("", "not valid JSON: %v", err)
	}
	switch {
	case probe["bomFormat"] != nil:
		var f string
		if err := json.Unmarshal(probe["bomFormat"], &f); err != nil || f != "CycloneDX" {
			return nil, inputErr("bomFormat", "must be \"CycloneDX\"")
		}
		return parseCycloneDX(data, cdx.BOMFileFormatJSON)
	case probe["spdxVersion"] != nil:
		return parseSPDX(data)
	case probe["@context"] != nil:
		return nil, inputErr("", "this looks like an SPDX 3 (JSON-LD) document; import SPDX 2.x JSON or CycloneDX")
	case probe["affected"] != nil || (probe["id"] != nil && probe["modified"] != nil):
		return nil, inputErr("", "this is an OSV advisory, not an SBOM; import it as an advisory")
	case probe["ietf-mud:mud"] != nil:
		return nil, inputErr("", "this is a MUD file, not an SBOM; import it as the product's network policy")
	}
	return nil, inputErr("", "not a CycloneDX (bomFormat) or SPDX (spdxVersion) document")
}

func parseCycloneDX(data []byte, format cdx.BOMFileFormat) (*SBOMDoc, error) {
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(data), format).Decode(&bom); err != nil {
		return nil, inputErr("", "not a valid CycloneDX document: %s", jsonErr(err))
	}
	if format == cdx.BOMFileFormatXML && bom.XMLNS == "" && bom.Components == nil {
		return nil, inputErr("", "not a CycloneDX XML document (no <bom> with components)")
	}
	doc := &SBOMDoc{Format: model.SBOMCycloneDX, SpecVersion: bom.SpecVersion.String()}
	if bom.Metadata != nil && bom.Metadata.Component != nil {
		m := bom.Metadata.Component
		doc.Name = strings.TrimSpace(strings.TrimSpace(m.Group+" "+m.Name) + " " + m.Version)
		if m.Components != nil {
			if err := doc.addCDX(*m.Components, 1); err != nil {
				return nil, err
			}
		}
	}
	if bom.Components != nil {
		if err := doc.addCDX(*bom.Components, 0); err != nil {
			return nil, err
		}
	}
	return doc.finish()
}

func (d *SBOMDoc) addCDX(cs []cdx.Component, depth int) error {
	if depth > maxNesting {
		return inputErr("components", "nested more than %d levels deep", maxNesting)
	}
	for _, c := range cs {
		name := c.Name
		if c.Group != "" && c.PackageURL == "" {
			name = c.Group + "/" + c.Name
		}
		if err := d.add(name, c.Version, c.PackageURL); err != nil {
			return err
		}
		if c.Components != nil {
			if err := d.addCDX(*c.Components, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseSPDX(data []byte) (*SBOMDoc, error) {
	sd, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		return nil, inputErr("", "not a valid SPDX JSON document: %s", jsonErr(err))
	}
	doc := &SBOMDoc{Format: model.SBOMSPDX, SpecVersion: sd.SPDXVersion, Name: sd.DocumentName}
	for _, p := range sd.Packages {
		if p == nil {
			continue
		}
		purl := ""
		for _, r := range p.PackageExternalReferences {
			if r != nil && strings.EqualFold(r.RefType, "purl") {
				purl = r.Locator
				break
			}
		}
		version := p.PackageVersion
		if version == "NOASSERTION" {
			version = ""
		}
		if err := doc.add(p.PackageName, version, purl); err != nil {
			return nil, err
		}
	}
	return doc.finish()
}

type compKey struct{ name, version, purl string }

func (d *SBOMDoc) add(name, version, purl string) error {
	name, version, purl = strings.TrimSpace(name), strings.TrimSpace(version), strings.TrimSpace(purl)
	if name == "" && purl == "" {
		return inputErr(fmt.Sprintf("component %d", len(d.Components)+1), "has neither a name nor a package URL")
	}
	if len(name) > 512 || len(version) > 256 || len(purl) > 2048 {
		return inputErr(fmt.Sprintf("component %d", len(d.Components)+1), "name, version or package URL too long")
	}
	if len(d.Components) >= MaxSBOMComponents {
		return inputErr("components", "more than %d components", MaxSBOMComponents)
	}
	c := model.SBOMComponent{Index: len(d.Components), Name: name, Version: version, PURL: purl}
	if purl != "" {
		co, pv, ok, err := ParsePURL(purl)
		switch {
		case err != nil:
			if len(d.Warnings) < 20 {
				d.Warnings = append(d.Warnings, fmt.Sprintf("component %q: package URL %q does not parse: %v", trunc(name), trunc(purl), err))
			}
		case ok:
			c.Ecosystem, c.Package = co.Ecosystem, co.Package
			if c.Version == "" {
				c.Version = pv
			}
			if pv != "" {
				c.Version = pv // the package URL's version is the ecosystem's spelling
			}
		}
		if name == "" {
			c.Name = co.Package
		}
	}
	if c.Ecosystem == "" {
		d.Unmatched++
	}
	d.Components = append(d.Components, c)
	return nil
}

func (d *SBOMDoc) finish() (*SBOMDoc, error) {
	// The same package listed twice (nested and flat) is one component.
	seen := map[compKey]bool{}
	out := d.Components[:0]
	d.Unmatched = 0
	for _, c := range d.Components {
		k := compKey{c.Name, c.Version, c.PURL}
		if seen[k] {
			continue
		}
		seen[k] = true
		c.Index = len(out)
		if c.Ecosystem == "" {
			d.Unmatched++
		}
		out = append(out, c)
	}
	d.Components = out
	if len(d.Name) > 256 {
		d.Name = d.Name[:256]
	}
	return d, nil
}
