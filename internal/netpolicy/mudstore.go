package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// MaxMUDFileBytes bounds a MUD file read from the local store.
const MaxMUDFileBytes = 1 << 20

// MUDStoreActor names the local MUD file store in audit records.
const MUDStoreActor = "system:mud-store"

// MUDResolver follows MUD URLs (RFC 8520 §10: the URL a device presents
// in its certificate) to files in a local directory instead of the
// network, so the platform works offline: https://host/a/b.json is read
// from <Dir>/host/a/b.json (or <Dir>/host/a/b.json.json, for URLs without
// an extension, <Dir>/host/a/b.json too). A product without a profile
// gets the file imported as its profile.
type MUDResolver struct {
	Policy *Service
	Store  store.Reader
	Dir    string
}

// FilePath maps a MUD URL onto the store: only https URLs, and never a
// path outside Dir.
func (r *MUDResolver) FilePath(mudURL string) ([]string, error) {
	u, err := url.Parse(mudURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("MUD URL %q: must be an https URL (RFC 8520)", mudURL)
	}
	host := strings.ToLower(u.Hostname())
	if strings.ContainsAny(host, `/\`) || host == "." || host == ".." {
		return nil, fmt.Errorf("MUD URL %q: bad host", mudURL)
	}
	p := path.Clean("/" + u.Path)
	if p == "/" {
		return nil, fmt.Errorf("MUD URL %q: names no file", mudURL)
	}
	base := filepath.Join(r.Dir, host, filepath.FromSlash(p))
	if rel, err := filepath.Rel(r.Dir, base); err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("MUD URL %q: path leaves the MUD store", mudURL)
	}
	out := []string{base}
	if filepath.Ext(base) == "" {
		out = append(out, base+".json")
	}
	return out, nil
}

// Resolve imports the MUD file of mudURL as the profile of the product
// (of productTenant) unless the product already has one. It reports
// whether it imported; a URL with no file in the store is an error that
// says where the file was looked for.
func (r *MUDResolver) Resolve(ctx context.Context, productTenant, productID, mudURL string) (*model.MUDProfile, bool, error) {
	if p, err := r.Store.GetMUDProfile(ctx, productTenant, productID); err == nil {
		return p, false, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	paths, err := r.FilePath(mudURL)
	if err != nil {
		return nil, false, err
	}
	var data []byte
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		data, err = io.ReadAll(io.LimitReader(f, MaxMUDFileBytes+1))
		f.Close()
		if err != nil {
			return nil, false, err
		}
		break
	}
	if data == nil {
		return nil, false, fmt.Errorf("no MUD file for %s in the MUD store: put it at %s", mudURL, paths[0])
	}
	if len(data) > MaxMUDFileBytes {
		return nil, false, fmt.Errorf("MUD file for %s is larger than %d bytes", mudURL, MaxMUDFileBytes)
	}
	parsed, err := ParseMUD(data)
	if err != nil {
		return nil, false, fmt.Errorf("MUD file for %s: %w", mudURL, err)
	}
	if parsed.MUDURL != mudURL {
		return nil, false, fmt.Errorf("the MUD file stored for %s names itself %s", mudURL, parsed.MUDURL)
	}
	p, err := r.Policy.ImportMUD(ctx, MUDStoreActor, productTenant, productID, data)
	if err != nil {
		return nil, false, err
	}
	return p, true, nil
}
