// Package agent is the device side of Steward. This round holds its update
// path: fetch and verify the signed metadata (both roles, tufmeta), download
// the image with resume, check it, install it into the inactive slot,
// switch, restart, run the health check, then commit or roll back, and
// report every step. How the agent is told about an update (MQTT
// d/{id}/ota/…) and how it authenticates its downloads are behind Source.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/steward-iot/steward/internal/ota/tufmeta"
)

// Status is where an update stands on a device.
type Status string

const (
	StatusPending     Status = "pending"
	StatusNotified    Status = "notified"
	StatusDownloading Status = "downloading"
	StatusVerifying   Status = "verifying"
	StatusInstalling  Status = "installing"
	StatusRebooting   Status = "rebooting"
	StatusSucceeded   Status = "succeeded"
	StatusFailed      Status = "failed"
	StatusRolledBack  Status = "rolled_back"
)

// Report is one step of an update, as the device publishes it on
// d/{id}/ota/status.
type Report struct {
	Status     Status    `json:"status"`
	ArtifactID string    `json:"artifact_id,omitempty"`
	CampaignID string    `json:"campaign_id,omitempty"`
	Version    string    `json:"version,omitempty"`
	Running    string    `json:"running_version,omitempty"`
	Bytes      int64     `json:"bytes,omitempty"`
	Total      int64     `json:"total,omitempty"`
	Error      string    `json:"error,omitempty"`
	At         time.Time `json:"at"`
}

// Source is where the metadata and images come from.
type Source interface {
	// Metadata returns the device's current update metadata, with vendor
	// roots newer than haveVendorRoot.
	Metadata(ctx context.Context, haveVendorRoot int64) (*tufmeta.Bundle, error)
	// Fetch returns the image's content from offset on; etag is the
	// content's ETag, so that a changed image is not appended to.
	Fetch(ctx context.Context, artifactID string, offset int64, etag string) (io.ReadCloser, error)
}

// ErrRestarting is what Installer.Restart returns when the device really
// reboots (the agent process ends): Run then leaves the rest to Resume.
var ErrRestarting = errors.New("the device is restarting")

// ErrRangeIgnored: the source sent the whole image instead of the range.
var ErrRangeIgnored = errors.New("the server did not resume the download")

// Updater runs updates on one device.
type Updater struct {
	Device   tufmeta.Device // ID and HardwareID; Version comes from the installer
	StateDir string         // trusted metadata and partial downloads (kept 0600)
	Source   Source
	Install  Installer
	// Health checks the new version after the restart; nil = healthy.
	Health func(ctx context.Context, version string) error
	// Report receives every step (publish it); may be nil.
	Report func(Report)
	// Bootstrap roots, used when StateDir has no trusted state yet (they
	// come with the device's image or its provisioning).
	VendorRoot, DirectorRoot []byte
	// Retries of a broken download (each resumes where it stopped).
	Retries int
	// ProgressEvery bounds the time between download progress reports
	// (default 5 s; one is also sent every 10 % of the image).
	ProgressEvery time.Duration
	Now           func() time.Time
}

const trustedFile = "trusted.json"

func (u *Updater) now() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

func (u *Updater) loadTrusted() (*tufmeta.Trusted, error) {
	b, err := os.ReadFile(filepath.Join(u.StateDir, trustedFile))
	if errors.Is(err, os.ErrNotExist) {
		if u.VendorRoot == nil || u.DirectorRoot == nil {
			return nil, errors.New("no trusted roots: provision the vendor and director roots")
		}
		return &tufmeta.Trusted{VendorRoot: u.VendorRoot, DirectorRoot: u.DirectorRoot}, nil
	} else if err != nil {
		return nil, err
	}
	var tr tufmeta.Trusted
	return &tr, json.Unmarshal(b, &tr)
}

func (u *Updater) saveTrusted(tr *tufmeta.Trusted) error {
	b, err := json.Marshal(tr)
	if err != nil {
		return err
	}
	p := filepath.Join(u.StateDir, trustedFile)
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// Result is how an update ended.
type Result struct {
	Status  Status
	Version string // running after the update
	Err     error
}

// Run performs the update the director currently assigns. It never leaves
// the device on an unverified or unhealthy image: every refusal keeps the
// running version, a failed health check rolls back.
func (u *Updater) Run(ctx context.Context) *Result {
	if err := os.MkdirAll(u.StateDir, 0o700); err != nil {
		return &Result{Status: StatusFailed, Err: err}
	}
	running, err := u.Install.Current()
	if err != nil {
		return u.fail(Report{}, running, err)
	}
	rep := Report{Running: running}
	u.report(rep, StatusNotified)
	p, err := u.verify(ctx, running)
	if err != nil {
		return u.fail(rep, running, err)
	}
	return u.apply(ctx, p)
}

// ErrNoAssignment: the platform assigns this device no update now.
var ErrNoAssignment = errors.New("no update is assigned to this device")

// FetchError: the metadata could not be fetched (the server is away, or
// answered with an error); worth trying again later, unlike a refusal of
// the metadata itself.
type FetchError struct{ Err error }

func (e *FetchError) Error() string { return "fetching the update metadata: " + e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }

// ErrUpToDate: the assigned image is the version running now.
var ErrUpToDate = errors.New("the assigned version is already running")

// Pending is a verified assignment that is not installed yet.
type Pending struct {
	Image *tufmeta.Image
	// DirectorVersion is the version of the director metadata that
	// assigned it.
	DirectorVersion int64
	Running         string
}

// Next fetches and verifies the current assignment without reporting:
// ErrNoAssignment or ErrUpToDate when there is nothing to do (so a device
// can poll quietly), another error when the metadata is refused.
func (u *Updater) Next(ctx context.Context) (*Pending, error) {
	if err := os.MkdirAll(u.StateDir, 0o700); err != nil {
		return nil, err
	}
	running, err := u.Install.Current()
	if err != nil {
		return nil, fmt.Errorf("reading the running version: %w", err)
	}
	return u.verify(ctx, running)
}

// Apply installs a verified assignment (from Next): the steps from
// notified to succeeded, failed or rolled_back, each reported.
func (u *Updater) Apply(ctx context.Context, p *Pending) *Result {
	u.report(u.reportOf(p), StatusNotified)
	return u.apply(ctx, p)
}

func (u *Updater) reportOf(p *Pending) Report {
	img := p.Image
	return Report{Running: p.Running, ArtifactID: img.Assignment.ArtifactID, CampaignID: img.Assignment.CampaignID,
		Version: img.Info.Version, Total: img.Length}
}

func (u *Updater) verify(ctx context.Context, running string) (*Pending, error) {
	tr, err := u.loadTrusted()
	if err != nil {
		return nil, err
	}
	vr, err := tufmeta.RootVersion(tr.VendorRoot)
	if err != nil {
		return nil, err
	}
	b, err := u.Source.Metadata(ctx, vr)
	if errors.Is(err, ErrNoAssignment) {
		return nil, err
	} else if err != nil {
		return nil, &FetchError{err}
	}
	dev := u.Device
	dev.Version = running
	next := *tr
	img, err := tufmeta.Verify(&next, *b, dev, u.now())
	if errors.Is(err, tufmeta.ErrRollback) {
		// Signed for exactly the running version: installed already.
		check := *tr
		dev.Version = ""
		if same, err2 := tufmeta.Verify(&check, *b, dev, u.now()); err2 == nil && same.Info.Version == running {
			return nil, ErrUpToDate
		}
	}
	if err != nil {
		return nil, err
	}
	// The metadata is good: remember its versions (a replay of older
	// metadata is refused from now on).
	if err := u.saveTrusted(&next); err != nil {
		return nil, err
	}
	return &Pending{Image: img, DirectorVersion: next.DirectorTargetsVersion, Running: running}, nil
}

func (u *Updater) apply(ctx context.Context, p *Pending) *Result {
	img, running := p.Image, p.Running
	rep := u.reportOf(p)
	path, err := u.download(ctx, img, rep)
	if err != nil {
		return u.failOrStop(ctx, rep, running, err)
	}
	u.report(rep, StatusVerifying)
	if err := checkFile(img, path); err != nil {
		os.Remove(path)
		return u.fail(rep, running, err)
	}
	u.report(rep, StatusInstalling)
	if err := u.Install.Install(ctx, path, img.Info.Version); err != nil {
		return u.failOrStop(ctx, rep, running, fmt.Errorf("installing: %w", err))
	}
	if err := u.Install.Switch(ctx); err != nil {
		return u.failOrStop(ctx, rep, running, fmt.Errorf("switching slots: %w", err))
	}
	os.Remove(path)
	// A restart may really reboot: the journal lets Resume finish the
	// update (health check, commit or rollback) on the next start.
	if err := u.writeJournal(&journal{Report: rep, Previous: running}); err != nil {
		return u.rollback(ctx, rep, running, fmt.Errorf("writing the update journal: %w", err))
	}
	u.report(rep, StatusRebooting)
	if err := u.Install.Restart(ctx); errors.Is(err, ErrRestarting) {
		// The device reboots; Resume finishes on the next start.
		return &Result{Status: StatusRebooting, Version: running}
	} else if err != nil {
		return u.finished(u.rollback(ctx, rep, running, fmt.Errorf("restarting: %w", err)))
	}
	return u.finished(u.settle(ctx, rep, running))
}

// settle runs the health check of the version now running, then commits or
// rolls back.
func (u *Updater) settle(ctx context.Context, rep Report, previous string) *Result {
	now, err := u.Install.Current()
	if err != nil {
		return u.rollback(ctx, rep, previous, fmt.Errorf("reading the running version: %w", err))
	}
	if now != rep.Version {
		return u.rollback(ctx, rep, previous, fmt.Errorf("version %s did not start (running %s)", rep.Version, now))
	}
	if u.Health != nil {
		if err := u.Health(ctx, rep.Version); err != nil {
			return u.rollback(ctx, rep, previous, fmt.Errorf("health check of %s failed: %w", rep.Version, err))
		}
	}
	if err := u.Install.Commit(ctx); err != nil {
		return u.rollback(ctx, rep, previous, fmt.Errorf("committing: %w", err))
	}
	rep.Running = rep.Version
	u.report(rep, StatusSucceeded)
	return &Result{Status: StatusSucceeded, Version: rep.Version}
}

// journal is an update between restart and commit.
type journal struct {
	Report   Report `json:"report"`
	Previous string `json:"previous_version"`
}

const journalFile = "update-journal.json"

func (u *Updater) writeJournal(j *journal) error {
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	p := filepath.Join(u.StateDir, journalFile)
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

func (u *Updater) finished(r *Result) *Result {
	os.Remove(filepath.Join(u.StateDir, journalFile))
	return r
}

// Resume finishes an update that a restart interrupted (call it when the
// agent starts): health check and commit, or rollback. Nil when there was
// none.
func (u *Updater) Resume(ctx context.Context) *Result {
	b, err := os.ReadFile(filepath.Join(u.StateDir, journalFile))
	if err != nil {
		return nil
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return u.finished(u.rollback(ctx, Report{}, "", fmt.Errorf("unreadable update journal: %w", err)))
	}
	return u.finished(u.settle(ctx, j.Report, j.Previous))
}

func (u *Updater) report(r Report, s Status) {
	if u.Report != nil {
		r.Status, r.At = s, u.now().UTC()
		u.Report(r)
	}
}

// failOrStop reports a failure, unless the agent is stopping: then the
// update is only interrupted (StatusPending, nothing reported) and the next
// start takes it up again, resuming the download.
func (u *Updater) failOrStop(ctx context.Context, r Report, running string, err error) *Result {
	if ctx.Err() != nil {
		return &Result{Status: StatusPending, Version: running, Err: err}
	}
	return u.fail(r, running, err)
}

func (u *Updater) fail(r Report, running string, err error) *Result {
	r.Error = err.Error()
	u.report(r, StatusFailed)
	return &Result{Status: StatusFailed, Version: running, Err: err}
}

func (u *Updater) rollback(ctx context.Context, r Report, running string, cause error) *Result {
	if err := u.Install.Rollback(ctx, cause.Error()); err != nil {
		cause = fmt.Errorf("%w; and the rollback failed: %v", cause, err)
	}
	now, _ := u.Install.Current()
	r.Error, r.Running = cause.Error(), now
	u.report(r, StatusRolledBack)
	return &Result{Status: StatusRolledBack, Version: now, Err: cause}
}

// download fetches the image into StateDir/<sha256>.part, resuming what an
// earlier attempt left, and renames it when complete.
func (u *Updater) download(ctx context.Context, img *tufmeta.Image, rep Report) (string, error) {
	part := filepath.Join(u.StateDir, img.SHA256+".part")
	done := filepath.Join(u.StateDir, img.SHA256+".image")
	if st, err := os.Stat(done); err == nil && st.Size() == img.Length {
		return done, nil
	}
	etag := `"sha256:` + img.SHA256 + `"`
	var last error
	for attempt := 0; attempt <= u.Retries; attempt++ {
		f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return "", err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return "", err
		}
		off := st.Size()
		if off > img.Length {
			f.Close()
			os.Remove(part)
			continue
		}
		rep.Bytes = off
		u.report(rep, StatusDownloading)
		if off < img.Length {
			last = u.fetch(ctx, f, img, rep, off, etag)
		} else {
			last = nil
		}
		if cerr := f.Close(); last == nil {
			last = cerr
		}
		if last == nil {
			return done, os.Rename(part, done)
		}
		if errors.Is(last, ErrRangeIgnored) || errors.Is(last, tufmeta.ErrImage) {
			os.Remove(part)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return "", fmt.Errorf("downloading %s: %w", img.Name, last)
}

func (u *Updater) fetch(ctx context.Context, f *os.File, img *tufmeta.Image, rep Report, off int64, etag string) error {
	rc, err := u.Source.Fetch(ctx, img.Assignment.ArtifactID, off, etag)
	if err != nil {
		return err
	}
	defer rc.Close()
	// Never take more than was signed (endless data).
	pw := &progress{u: u, rep: rep, n: off, last: off, lastAt: u.now()}
	n, err := io.Copy(io.MultiWriter(f, pw), io.LimitReader(rc, img.Length-off+1))
	if err != nil {
		return err
	}
	if off+n > img.Length {
		return fmt.Errorf("%w: the server sent more than the signed %d bytes", tufmeta.ErrImage, img.Length)
	}
	if off+n < img.Length {
		return io.ErrUnexpectedEOF
	}
	return nil
}

func checkFile(img *tufmeta.Image, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return img.Check(f)
}

// Progress reports while downloading: every 10 % of the image or every
// ProgressEvery (default 5 s), whichever comes first.
const defaultProgressEvery = 5 * time.Second

type progress struct {
	u       *Updater
	rep     Report
	n, last int64
	lastAt  time.Time
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	every := p.u.ProgressEvery
	if every == 0 {
		every = defaultProgressEvery
	}
	now := p.u.now()
	if p.n < p.rep.Total && (p.n-p.last)*10 < p.rep.Total && now.Sub(p.lastAt) < every {
		return len(b), nil
	}
	if p.n < p.rep.Total {
		p.rep.Bytes = p.n
		p.u.report(p.rep, StatusDownloading)
	}
	p.last, p.lastAt = p.n, now
	return len(b), nil
}
