// Package oui names the vendor of a MAC address from its IEEE MA-L
// prefix, using the embedded registry (see README.md for its source).
package oui

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"strconv"
	"strings"
	"sync"
)

//go:embed ma-l.tsv.gz
var registry []byte

var (
	once    sync.Once
	vendors map[uint32]string
)

func load() {
	vendors = make(map[uint32]string, 33000)
	zr, err := gzip.NewReader(bytes.NewReader(registry))
	if err != nil {
		return // an empty table: vendors stay unknown
	}
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		prefix, name, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(prefix, 16, 32)
		if err != nil {
			continue
		}
		vendors[uint32(v)] = name
	}
}

// Vendor returns the organisation the MAC's prefix is assigned to, or ""
// (unknown prefix, or a locally administered address). mac is lower case
// with colons, as discovery.NormalizeMAC returns it.
func Vendor(mac string) string {
	if len(mac) < 8 {
		return ""
	}
	v, err := strconv.ParseUint(strings.ReplaceAll(mac[:8], ":", ""), 16, 32)
	if err != nil || v&0x020000 != 0 { // locally administered
		return ""
	}
	once.Do(load)
	return vendors[uint32(v)]
}

// Size is how many prefixes the table holds.
func Size() int {
	once.Do(load)
	return len(vendors)
}
