package registry

import (
	"net/url"
	"unicode"
	"unicode/utf8"

	"github.com/steward-iot/steward/internal/model"
)

// checkName accepts printable text of min..max characters.
func checkName(field, v string, minLen, maxLen int) error {
	n := utf8.RuneCountInString(v)
	if n < minLen || n > maxLen {
		if minLen > 0 && n == 0 {
			return invalid(field, "is required")
		}
		return invalid(field, "must be %d to %d characters (got %d)", minLen, maxLen, n)
	}
	if !utf8.ValidString(v) {
		return invalid(field, "is not valid UTF-8")
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return invalid(field, "holds a control character")
		}
	}
	return nil
}

// checkSerial accepts 1-128 characters of letters, digits and -_.:/
func checkSerial(v string) error {
	if v == "" || len(v) > 128 {
		return invalid("serial", "must be 1 to 128 characters")
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':' || r == '/') {
			return invalid("serial", "may only hold letters, digits and -_.:/ (found %q)", r)
		}
	}
	return nil
}

func checkTags(tags []string) error {
	if len(tags) > 32 {
		return invalid("tags", "at most 32 tags (got %d)", len(tags))
	}
	seen := map[string]bool{}
	for _, t := range tags {
		if err := model.ValidTag(t); err != nil {
			return invalid("tags", "%s", err.Error())
		}
		if seen[t] {
			return invalid("tags", "tag %q is listed twice", t)
		}
		seen[t] = true
	}
	return nil
}

func checkAttrs(attrs map[string]string) error {
	if len(attrs) > 64 {
		return invalid("attributes", "at most 64 attributes (got %d)", len(attrs))
	}
	for k, v := range attrs {
		if k == "" || len(k) > 64 {
			return invalid("attributes", "key %q must be 1 to 64 characters", k)
		}
		for _, r := range k {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
				return invalid("attributes", "key %q may only hold letters, digits and -_.", k)
			}
		}
		if err := checkName("attributes."+k, v, 0, 256); err != nil {
			return err
		}
	}
	return nil
}

func checkVersion(field, v string) error {
	if v == "" {
		return nil
	}
	if _, err := model.VersionKey(v); err != nil {
		return invalid(field, "%s", err.Error())
	}
	return nil
}

// checkURL accepts absolute http(s) URLs; https only when httpsOnly.
func checkURL(field, v string, httpsOnly bool) error {
	if len(v) > 2048 {
		return invalid(field, "is longer than 2048 characters")
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return invalid(field, "%q is not an absolute URL", v)
	}
	if u.Scheme != "https" && (httpsOnly || u.Scheme != "http") {
		if httpsOnly {
			return invalid(field, "must be an https:// URL")
		}
		return invalid(field, "must be an http:// or https:// URL")
	}
	return nil
}
