package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Installer puts a verified image on the device. The update path calls,
// in order: Install (into the slot not running), Switch (boot it next, on
// trial), Restart (run it); then Commit after a good health check, or
// Rollback (back to the previous slot) after a bad one.
type Installer interface {
	// Current is the version running now.
	Current() (string, error)
	Install(ctx context.Context, imagePath, version string) error
	Switch(ctx context.Context) error
	Restart(ctx context.Context) error
	Commit(ctx context.Context) error
	Rollback(ctx context.Context, reason string) error
}

// DirInstaller is an A/B installer over a directory, for tests and
// simulation: slots a and b hold an image and its version; state.json says
// which one runs and which is on trial.
type DirInstaller struct {
	Dir string
}

type slotState struct {
	Active   string            `json:"active"`
	Trial    string            `json:"trial,omitempty"`    // slot switched to, not yet committed
	Previous string            `json:"previous,omitempty"` // slot to roll back to
	Versions map[string]string `json:"versions"`
	// LastRollback says why the last trial was abandoned.
	LastRollback string `json:"last_rollback,omitempty"`
}

// NewDirInstaller prepares dir with slot a running version.
func NewDirInstaller(dir, version string) (*DirInstaller, error) {
	d := &DirInstaller{Dir: dir}
	if _, err := os.Stat(d.statePath()); err == nil {
		return d, nil
	}
	for _, s := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, s), 0o700); err != nil {
			return nil, err
		}
	}
	return d, d.save(&slotState{Active: "a", Versions: map[string]string{"a": version, "b": ""}})
}

func (d *DirInstaller) statePath() string { return filepath.Join(d.Dir, "state.json") }

func (d *DirInstaller) load() (*slotState, error) {
	b, err := os.ReadFile(d.statePath())
	if err != nil {
		return nil, err
	}
	var s slotState
	return &s, json.Unmarshal(b, &s)
}

func (d *DirInstaller) save(s *slotState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := d.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, d.statePath())
}

func other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

// State returns the slots as they are (for tests and status).
func (d *DirInstaller) State() (active, version, lastRollback string, err error) {
	s, err := d.load()
	if err != nil {
		return "", "", "", err
	}
	return s.Active, s.Versions[s.Active], s.LastRollback, nil
}

func (d *DirInstaller) Current() (string, error) {
	s, err := d.load()
	if err != nil {
		return "", err
	}
	return s.Versions[s.Active], nil
}

func (d *DirInstaller) Install(_ context.Context, imagePath, version string) error {
	s, err := d.load()
	if err != nil {
		return err
	}
	if s.Trial != "" {
		return errors.New("a trial is in progress; commit or roll it back first")
	}
	slot := other(s.Active)
	src, err := os.Open(imagePath)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(d.Dir, slot, "image"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	s.Versions[slot] = version
	return d.save(s)
}

func (d *DirInstaller) Switch(context.Context) error {
	s, err := d.load()
	if err != nil {
		return err
	}
	s.Trial = other(s.Active)
	return d.save(s)
}

// Restart boots the trial slot (here: makes it the active one).
func (d *DirInstaller) Restart(context.Context) error {
	s, err := d.load()
	if err != nil {
		return err
	}
	if s.Trial == "" {
		return nil
	}
	s.Previous, s.Active = s.Active, s.Trial
	return d.save(s)
}

func (d *DirInstaller) Commit(context.Context) error {
	s, err := d.load()
	if err != nil {
		return err
	}
	s.Trial, s.Previous = "", ""
	return d.save(s)
}

func (d *DirInstaller) Rollback(_ context.Context, reason string) error {
	s, err := d.load()
	if err != nil {
		return err
	}
	if s.Previous != "" {
		s.Active = s.Previous
	}
	s.Trial, s.Previous, s.LastRollback = "", "", reason
	return d.save(s)
}

// ScriptInstaller hands each step to a program, for real devices:
//
//	<hook> current                     prints the running version
//	<hook> install <image> <version>   writes the image into the inactive slot
//	<hook> switch                      boots the inactive slot next, on trial
//	<hook> restart                     reboots (may not return)
//	<hook> commit                      keeps the running slot
//	<hook> rollback <reason>           goes back to the previous slot
//
// A non-zero exit fails the step; its output is the reason. A restart
// that really reboots exits with RestartingExitCode (or does not return):
// the agent then stops, and finishes the update (health check, commit or
// rollback) when it starts again. Env is added to the hook's environment
// (the agent sets STEWARD_DEVICE_ID and STEWARD_STATE_DIR).
type ScriptInstaller struct {
	Hook string
	Env  []string
}

// RestartingExitCode is the exit status of "<hook> restart" that means
// "the device is rebooting now".
const RestartingExitCode = 10

func (s *ScriptInstaller) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.Hook, args...)
	cmd.Env = append(os.Environ(), s.Env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if args[0] == "restart" && errors.As(err, &ee) && ee.ExitCode() == RestartingExitCode {
		return "", ErrRestarting
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", s.Hook, args[0], err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func (s *ScriptInstaller) Current() (string, error) { return s.run(context.Background(), "current") }
func (s *ScriptInstaller) Install(ctx context.Context, image, version string) error {
	_, err := s.run(ctx, "install", image, version)
	return err
}
func (s *ScriptInstaller) Switch(ctx context.Context) error {
	_, err := s.run(ctx, "switch")
	return err
}
func (s *ScriptInstaller) Restart(ctx context.Context) error {
	_, err := s.run(ctx, "restart")
	return err
}
func (s *ScriptInstaller) Commit(ctx context.Context) error {
	_, err := s.run(ctx, "commit")
	return err
}
func (s *ScriptInstaller) Rollback(ctx context.Context, reason string) error {
	_, err := s.run(ctx, "rollback", reason)
	return err
}
