package ota

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
	"github.com/steward-iot/steward/internal/store/sqlstore"
)

func newService(t *testing.T) (*Service, string, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(t.Context(), "sqlite:"+filepath.Join(dir, "db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := OpenBlobs(filepath.Join(dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	err = st.Update(t.Context(), func(tx store.Tx) error {
		if err := tx.CreateTenant(t.Context(), &model.Tenant{ID: "ten-1", Name: "t", Kind: model.TenantEnterprise, CreatedAt: now}); err != nil {
			return err
		}
		return tx.CreateProduct(t.Context(), &model.Product{ID: "prd-1", TenantID: "ten-1", Vendor: "v", Model: "m", CreatedAt: now, UpdatedAt: now})
	})
	if err != nil {
		t.Fatal(err)
	}
	return New(st, blobs), "ten-1", "prd-1"
}

// TestConcurrentUploads: uploads of the same content race, some refused;
// every artifact that got content can be read, and nothing is left over.
func TestConcurrentUploads(t *testing.T) {
	s, tn, prod := newService(t)
	ctx := t.Context()
	content := bytes.Repeat([]byte("same image "), 5000)
	create := func() string {
		a, err := s.CreateArtifact(ctx, "test", tn, ArtifactInput{Name: "fw.bin", Version: "1.0", ProductIDs: []string{prod}, HardwareIDs: []string{"hw"}})
		if err != nil {
			t.Fatal(err)
		}
		return a.ID
	}
	contested := create()
	var ids []string
	for range 4 {
		ids = append(ids, create())
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 12 {
		wg.Go(func() {
			id := contested
			if i < len(ids) {
				id = ids[i]
			}
			_, err := s.Upload(ctx, "test", tn, id, bytes.NewReader(content), "")
			switch {
			case err == nil && id == contested:
				mu.Lock()
				wins++
				mu.Unlock()
			case errors.Is(err, ErrUploaded) && id == contested:
			case err != nil:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d uploads to one artifact succeeded", wins)
	}
	for _, id := range append(ids, contested) {
		_, f, err := s.Open(ctx, tn, id)
		if err != nil {
			t.Fatalf("artifact %s: %v", id, err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if !bytes.Equal(got, content) {
			t.Fatalf("artifact %s content differs", id)
		}
	}
	// Deleting all but one keeps the shared blob; deleting the last removes it.
	all := append(ids, contested)
	for _, id := range all[:len(all)-1] {
		if err := s.DeleteArtifact(ctx, "test", tn, id); err != nil {
			t.Fatal(err)
		}
	}
	a, f, err := s.Open(ctx, tn, all[len(all)-1])
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := s.DeleteArtifact(ctx, "test", tn, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.blobs.Open(ctx, a.SHA256); err == nil {
		t.Fatal("the blob of the last deleted artifact is still there")
	}
}
