package vuln

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LoadAdvisoryFiles reads OSV records from files, folders (every *.json
// below them) and zip archives (every *.json inside, as the OSV project
// publishes its per-ecosystem exports), for an offline import. Any bad
// record refuses everything, naming the file; nothing is imported then.
func LoadAdvisoryFiles(paths []string) ([]Parsed, error) {
	var out []Parsed
	seen := map[string]string{}
	add := func(name string, data []byte) error {
		ps, err := ParseAdvisories(data)
		if err != nil {
			return &InputError{Where: name, Err: err}
		}
		for _, p := range ps {
			if _, dup := seen[p.Advisory.ID]; dup {
				// Exports may carry one ID twice; keep the newer record.
				for i := range out {
					if out[i].Advisory.ID == p.Advisory.ID && p.Advisory.Modified.After(out[i].Advisory.Modified) {
						out[i] = p
					}
				}
				continue
			}
			seen[p.Advisory.ID] = name
			out = append(out, p)
		}
		return nil
	}
	for _, path := range paths {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		switch {
		case st.IsDir():
			var files []string
			err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if !d.IsDir() && strings.EqualFold(filepath.Ext(p), ".json") {
					files = append(files, p)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			sort.Strings(files)
			for _, f := range files {
				data, err := readLimited(f)
				if err != nil {
					return nil, err
				}
				if err := add(f, data); err != nil {
					return nil, err
				}
			}
		case strings.EqualFold(filepath.Ext(path), ".zip"):
			if err := loadZip(path, add); err != nil {
				return nil, err
			}
		default:
			data, err := readLimited(path)
			if err != nil {
				return nil, err
			}
			if err := add(path, data); err != nil {
				return nil, err
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no OSV records found (looked for *.json files and zip archives)")
	}
	return out, nil
}

// maxFileBytes bounds one file: a single record, or a JSON list of them.
const maxFileBytes = 256 << 20

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllLimited(f, path)
}

func readAllLimited(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d MiB", name, maxFileBytes>>20)
	}
	return data, nil
}

func loadZip(path string, add func(string, []byte) error) error {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return fmt.Errorf("%s: not a zip archive: %w", path, err)
	}
	defer zr.Close()
	files := append([]*zip.File(nil), zr.File...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	for _, f := range files {
		if f.FileInfo().IsDir() || !strings.EqualFold(filepath.Ext(f.Name), ".json") {
			continue
		}
		if f.UncompressedSize64 > MaxAdvisoryBytes*64 {
			return fmt.Errorf("%s!%s: too large (%d bytes)", path, f.Name, f.UncompressedSize64)
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("%s!%s: %w", path, f.Name, err)
		}
		data, err := readAllLimited(rc, path+"!"+f.Name)
		rc.Close()
		if err != nil {
			return err
		}
		if err := add(path+"!"+f.Name, bytes.TrimSpace(data)); err != nil {
			return err
		}
	}
	return nil
}
