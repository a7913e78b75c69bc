package tufmeta

import (
	"encoding/json"
	"testing"
)

// FuzzVerify feeds arbitrary bytes as each metadata document of an update:
// Verify must refuse them with an error, never panic, and never change the
// trusted state on a refusal.
func FuzzVerify(f *testing.F) {
	r := newRepo(f)
	honest := r.bundle(spec{})
	f.Add(0, []byte(honest.VendorTargets))
	f.Add(1, []byte(honest.DirectorTargets))
	f.Add(2, r.vendorRoot)
	f.Add(0, []byte(`{"signed":{"_type":"targets","version":9,"targets":{}},"signatures":[]}`))
	f.Add(2, []byte(`{"signed":{"_type":"root"},"signatures":[{"keyid":"","sig":""}]}`))
	f.Fuzz(func(t *testing.T, which int, data []byte) {
		b := Bundle{VendorTargets: honest.VendorTargets, DirectorTargets: honest.DirectorTargets}
		switch uint(which) % 3 {
		case 0:
			b.VendorTargets = json.RawMessage(data)
		case 1:
			b.DirectorTargets = json.RawMessage(data)
		case 2:
			b.VendorRoots = []json.RawMessage{data}
		}
		tr := r.trusted()
		before := *tr
		img, err := Verify(tr, b, dev, now)
		if err == nil {
			// Only the honest documents themselves may pass.
			if img.SHA256 != digest(image) {
				t.Fatalf("accepted %q", data)
			}
			return
		}
		if !equalTrusted(*tr, before) {
			t.Fatal("a refusal changed the trusted state")
		}
	})
}
