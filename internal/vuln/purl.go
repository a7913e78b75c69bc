package vuln

import (
	"regexp"
	"strings"

	"github.com/package-url/packageurl-go"
)

// Coordinates are where a component sits in the OSV world: an ecosystem
// (without release), a package name as the ecosystem spells it, and the
// distribution release when the package URL names one ("12" for Debian 12,
// "v3.22" for Alpine 3.22).
type Coordinates struct {
	Ecosystem string
	Package   string
	Release   string
}

// Key is the lookup key shared by components and advisories: "ecosystem/package".
func (c Coordinates) Key() string { return c.Ecosystem + "/" + c.Package }

// purlEcosystems maps a package URL type (and, for distributions, its
// namespace) to the OSV ecosystem.
var purlEcosystems = map[string]string{
	"golang": "Go", "npm": "npm", "pypi": "PyPI", "maven": "Maven", "cargo": "crates.io", "gem": "RubyGems",
	"nuget": "NuGet", "composer": "Packagist", "hex": "Hex", "pub": "Pub", "cran": "CRAN", "hackage": "Hackage",
	"conan": "ConanCenter", "swift": "SwiftURL", "bitnami": "Bitnami",
	"deb/debian": "Debian", "deb/ubuntu": "Ubuntu",
	"apk/alpine": "Alpine", "apk/wolfi": "Wolfi", "apk/chainguard": "Chainguard",
	"rpm/redhat": "Red Hat", "rpm/almalinux": "AlmaLinux", "rpm/rocky-linux": "Rocky Linux", "rpm/rocky": "Rocky Linux",
	"rpm/opensuse": "openSUSE", "rpm/suse": "SUSE",
}

// ParsePURL reads a package URL (with or without a version) and returns
// the package's OSV coordinates and the version it names. ok is false for
// a package URL that names no ecosystem advisories are published for
// (pkg:generic, pkg:github …); err is set for text that is not a package URL.
func ParsePURL(s string) (c Coordinates, version string, ok bool, err error) {
	p, err := packageurl.FromString(s)
	if err != nil {
		return Coordinates{}, "", false, err
	}
	version = p.Version
	q := p.Qualifiers.Map()
	eco := purlEcosystems[p.Type]
	if eco == "" {
		eco = purlEcosystems[p.Type+"/"+strings.ToLower(p.Namespace)]
	}
	if eco == "" {
		return Coordinates{}, version, false, nil
	}
	name := p.Name
	switch p.Type {
	case "golang":
		if p.Namespace != "" {
			name = p.Namespace + "/" + p.Name
		}
	case "npm":
		if p.Namespace != "" {
			name = p.Namespace + "/" + p.Name
		}
	case "maven":
		if p.Namespace != "" {
			name = p.Namespace + ":" + p.Name
		}
	case "composer":
		if p.Namespace != "" {
			name = p.Namespace + "/" + p.Name
		}
	case "swift":
		if p.Namespace != "" {
			name = p.Namespace + "/" + p.Name
		}
	case "deb":
		// Debian advisories name source packages; syft-style SBOMs give
		// the source as "upstream" (maybe "name@version").
		if up := q["upstream"]; up != "" {
			name, _, _ = strings.Cut(up, "@")
			name, _, _ = strings.Cut(name, " ")
		}
	case "apk":
		// Alpine advisories name origin (source) packages: SCALIBR says
		// "origin", syft says "upstream".
		if origin := q["origin"]; origin != "" {
			name = origin
		} else if up := q["upstream"]; up != "" {
			name, _, _ = strings.Cut(up, "@")
		}
	case "rpm":
		if up := q["upstream"]; up != "" {
			name = strings.TrimSuffix(up, ".src.rpm")
		}
	}
	c = Coordinates{Ecosystem: eco, Package: NormalizeName(eco, name), Release: releaseOf(eco, q["distro"])}
	return c, version, true, nil
}

var debianCodenames = map[string]string{"jessie": "8", "stretch": "9", "buster": "10", "bullseye": "11",
	"bookworm": "12", "trixie": "13", "forky": "14"}

var releaseNumber = regexp.MustCompile(`(\d+(?:\.\d+)?)`)

// releaseOf turns a package URL's distro qualifier into the release suffix
// OSV uses in the ecosystem ("Debian:12", "Alpine:v3.22").
func releaseOf(eco, distro string) string {
	d := strings.ToLower(distro)
	if d == "" {
		return ""
	}
	switch eco {
	case "Debian":
		for name, n := range debianCodenames {
			if strings.Contains(d, name) {
				return n
			}
		}
		if m := releaseNumber.FindString(d); m != "" {
			major, _, _ := strings.Cut(m, ".")
			return major
		}
	case "Ubuntu":
		if m := releaseNumber.FindString(d); m != "" {
			return m
		}
	case "Alpine":
		if m := releaseNumber.FindString(d); m != "" {
			return "v" + m
		}
	}
	return ""
}

// releaseMatches reports whether an advisory ecosystem ("Debian:12",
// "Alpine:v3.22", "Ubuntu:22.04:LTS" or plain "Debian") applies to a
// component of release rel. A component or advisory without a release
// matches every release: it may be affected, so it is reported.
func releaseMatches(advisoryEcosystem, rel string) bool {
	_, suffix, ok := strings.Cut(advisoryEcosystem, ":")
	if !ok || rel == "" || suffix == "" {
		return true
	}
	suffix, _, _ = strings.Cut(suffix, ":")
	return strings.EqualFold(suffix, rel)
}

var pypiSep = regexp.MustCompile(`[-_.]+`)

// NormalizeName spells a package name the way its ecosystem compares names,
// so a component and an advisory that name one package agree.
func NormalizeName(ecosystem, name string) string {
	switch BaseEcosystem(ecosystem) {
	case "PyPI":
		return pypiSep.ReplaceAllString(strings.ToLower(name), "-")
	case "npm", "NuGet", "Packagist", "Debian", "Ubuntu", "Alpine", "crates.io", "Hex", "Pub":
		return strings.ToLower(name)
	}
	return name
}

// BaseEcosystem drops the release suffix ("Debian:12" → "Debian").
func BaseEcosystem(e string) string {
	b, _, _ := strings.Cut(e, ":")
	return b
}
