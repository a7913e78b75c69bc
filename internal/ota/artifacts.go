package ota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward/internal/ids"
	"github.com/steward-iot/steward/internal/model"
	"github.com/steward-iot/steward/internal/store"
)

// DefaultMaxArtifactBytes is the upload limit when none is configured.
const DefaultMaxArtifactBytes int64 = 4 << 30

// Errors the edges map to answers.
var (
	// ErrUploaded: the artifact already has its content (it never changes).
	ErrUploaded = errors.New("the artifact's content was already uploaded; create a new artifact for new content")
	// ErrNoContent: the artifact has no content yet.
	ErrNoContent = errors.New("the artifact has no content yet")
	// ErrInUse: an open campaign or assignment still hands the artifact out.
	ErrInUse = errors.New("the artifact is in use")
	// ErrDigestMismatch: the uploaded content does not hash to what the uploader said.
	ErrDigestMismatch = errors.New("the uploaded content does not match the announced SHA-256")
)

// InvalidError is input that names a bad value.
type InvalidError struct{ Field, Message string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Message }

// Service keeps artifacts: metadata in the store, content in a BlobStore.
type Service struct {
	st    store.Store
	blobs BlobStore
	// MaxArtifactBytes caps one upload.
	MaxArtifactBytes int64
	// DirectorTTL is how long director metadata is valid.
	DirectorTTL time.Duration
	director    *Director
	now         func() time.Time
	digestLocks [16]sync.Mutex
	kick        chan struct{}
}

// New builds the service over a store and a blob storage.
func New(st store.Store, blobs BlobStore) *Service {
	return &Service{st: st, blobs: blobs, MaxArtifactBytes: DefaultMaxArtifactBytes, DirectorTTL: DefaultDirectorTTL,
		now: func() time.Time { return time.Now().UTC() }, kick: make(chan struct{}, 1)}
}

// ArtifactInput describes a new artifact.
type ArtifactInput struct {
	Name         string
	Version      string
	ProductIDs   []string
	HardwareIDs  []string
	SBOMRef      string
	ReleaseNotes string
}

func auditEmit(ctx context.Context, tx store.Tx, tenantID, actor, action, target, evType string, summary any, now time.Time) error {
	return auditEmitData(ctx, tx, tenantID, actor, action, target, evType, summary, summary, now)
}

// auditEmitData audits summary and raises an event carrying data.
func auditEmitData(ctx context.Context, tx store.Tx, tenantID, actor, action, target, evType string, summary, evData any, now time.Time) error {
	if _, err := tx.Audit(ctx, tenantID, model.AuditEntry{Actor: actor, Action: action, Target: target, Summary: summary}); err != nil {
		return fmt.Errorf("writing the audit record: %w", err)
	}
	return emit(ctx, tx, tenantID, target, evType, evData, now)
}

// emit raises an event (through the outbox) carrying data.
func emit(ctx context.Context, tx store.Tx, tenantID, subject, evType string, data any, now time.Time) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return tx.Emit(ctx, &model.Event{ID: ids.New("evt"), TenantID: tenantID, Type: evType, Subject: subject, Time: now, Data: b})
}

func clean(list []string) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, v := range list {
		v = strings.TrimSpace(v)
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// CreateArtifact records a new artifact, without content yet.
func (s *Service) CreateArtifact(ctx context.Context, actor, tenantID string, in ArtifactInput) (*model.Artifact, error) {
	a := &model.Artifact{ID: ids.New("art"), TenantID: tenantID, Name: strings.TrimSpace(in.Name),
		Version: strings.TrimSpace(in.Version), ProductIDs: clean(in.ProductIDs), HardwareIDs: clean(in.HardwareIDs),
		SBOMRef: in.SBOMRef, ReleaseNotes: in.ReleaseNotes, CreatedAt: s.now(), CreatedBy: actor}
	switch {
	case a.Name == "" || strings.ContainsAny(a.Name, "/\\\x00"):
		return nil, &InvalidError{"name", "a file name without slashes is required"}
	case a.Version == "":
		return nil, &InvalidError{"version", "required"}
	case len(a.ProductIDs) == 0:
		return nil, &InvalidError{"product_ids", "name at least one product"}
	case len(a.HardwareIDs) == 0:
		return nil, &InvalidError{"hardware_ids", "name at least one hardware ID"}
	}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		for _, p := range a.ProductIDs {
			if _, err := tx.GetProduct(ctx, tenantID, p); errors.Is(err, store.ErrNotFound) {
				return &InvalidError{"product_ids", "product " + p + " does not exist in this tenant"}
			} else if err != nil {
				return err
			}
		}
		if err := tx.CreateArtifact(ctx, a); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "artifact.create", a.ID, "artifact.created",
			map[string]any{"name": a.Name, "version": a.Version, "product_ids": a.ProductIDs, "hardware_ids": a.HardwareIDs}, a.CreatedAt)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Upload streams an artifact's content into storage. wantSHA256 (hex,
// optional) is checked against what arrived; the content is refused (and
// nothing changes) when it differs, is larger than the limit or the
// artifact already has content.
func (s *Service) Upload(ctx context.Context, actor, tenantID, id string, r io.Reader, wantSHA256 string) (*model.Artifact, error) {
	a, err := s.st.GetArtifact(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	if a.Uploaded() {
		return nil, ErrUploaded
	}
	wantSHA256 = strings.ToLower(strings.TrimSpace(wantSHA256))
	if wantSHA256 != "" && !digestRe.MatchString(wantSHA256) {
		return nil, &InvalidError{"sha256", "64 hex digits"}
	}
	staged, err := s.blobs.Stage(ctx, r, s.MaxArtifactBytes, wantSHA256)
	if err != nil {
		return nil, err
	}
	defer staged.Discard() // a no-op once committed
	digest, n := staged.Digest(), staged.Length()
	if wantSHA256 != "" && wantSHA256 != digest {
		return nil, fmt.Errorf("%w: got %s, announced %s", ErrDigestMismatch, digest, wantSHA256)
	}
	// Putting the blob in place and recording it happen under the digest's
	// lock, as does removing an unused blob: a refused upload cannot remove
	// a blob another upload of the same content is about to record.
	unlock := s.lockDigest(digest)
	defer unlock()
	if err := staged.Commit(ctx); err != nil {
		return nil, err
	}
	at := s.now()
	a.SHA256, a.Length, a.UploadedAt = digest, n, &at
	err = s.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.SetArtifactContent(ctx, a); err != nil {
			if errors.Is(err, store.ErrStale) {
				return ErrUploaded
			}
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "artifact.upload", a.ID, "artifact.uploaded",
			map[string]any{"sha256": digest, "length": n, "version": a.Version}, at)
	})
	if err != nil {
		s.dropIfUnusedLocked(ctx, digest)
		return nil, err
	}
	return a, nil
}

// lockDigest serialises blob placement and removal per digest (striped).
func (s *Service) lockDigest(digest string) func() {
	var i byte
	if len(digest) > 0 {
		i = digest[0]
	}
	m := &s.digestLocks[int(i)%len(s.digestLocks)]
	m.Lock()
	return m.Unlock
}

func (s *Service) dropIfUnused(ctx context.Context, digest string) {
	unlock := s.lockDigest(digest)
	defer unlock()
	s.dropIfUnusedLocked(ctx, digest)
}

func (s *Service) dropIfUnusedLocked(ctx context.Context, digest string) {
	if used, err := s.st.ArtifactDigestInUse(context.WithoutCancel(ctx), digest); err == nil && !used {
		s.blobs.Remove(context.WithoutCancel(ctx), digest)
	}
}

// Open returns an artifact and its content, to be closed by the caller.
func (s *Service) Open(ctx context.Context, tenantID, id string) (*model.Artifact, io.ReadSeekCloser, error) {
	a, err := s.st.GetArtifact(ctx, tenantID, id)
	if err != nil {
		return nil, nil, err
	}
	if !a.Uploaded() {
		return nil, nil, ErrNoContent
	}
	f, err := s.blobs.Open(ctx, a.SHA256)
	if err != nil {
		return nil, nil, fmt.Errorf("artifact %s content %s: %w", id, a.SHA256, err)
	}
	return a, f, nil
}

// DeleteArtifact removes an artifact and, when no other artifact holds the
// same content, its blob.
func (s *Service) DeleteArtifact(ctx context.Context, actor, tenantID, id string) error {
	var digest string
	err := s.st.Update(ctx, func(tx store.Tx) error {
		a, err := tx.GetArtifact(ctx, tenantID, id)
		if err != nil {
			return err
		}
		digest = a.SHA256
		// Devices still being told to install it would find nothing.
		cs, err := tx.CampaignsOfArtifact(ctx, tenantID, id)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.State.Open() {
				return fmt.Errorf("%w: campaign %s (%s) rolls it out; cancel it first", ErrInUse, c.ID, c.State)
			}
		}
		if open, err := tx.OpenAssignmentsOf(ctx, tenantID, id); err != nil {
			return err
		} else if len(open) > 0 {
			return fmt.Errorf("%w: %d device(s) are told to install it (e.g. %s); invalidate the release to withdraw them", ErrInUse,
				len(open), open[0].DeviceID)
		}
		if err := tx.DeleteArtifact(ctx, tenantID, id); err != nil {
			return err
		}
		return auditEmit(ctx, tx, tenantID, actor, "artifact.delete", id, "artifact.deleted",
			map[string]any{"name": a.Name, "version": a.Version, "sha256": a.SHA256}, s.now())
	})
	if err != nil {
		return err
	}
	if digest != "" {
		s.dropIfUnused(ctx, digest)
	}
	return nil
}

// SetClock replaces the service's clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }
