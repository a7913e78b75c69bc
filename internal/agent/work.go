package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward/internal/ota/tufmeta"
)

// ---- updates ----

func (a *Agent) onAssignment(payload []byte) {
	var as Assignment
	if err := json.Unmarshal(payload, &as); err != nil {
		a.log.Warn("unreadable update assignment", "err", err)
		return
	}
	if as.Cancelled || as.ArtifactID == "" {
		a.mu.Lock()
		stop := a.stopDownload
		if a.downloadArtifact != as.ArtifactID && as.ArtifactID != "" {
			stop = nil
		}
		a.mu.Unlock()
		if stop != nil {
			a.log.Info("update assignment withdrawn; stopping the download", "artifact", as.ArtifactID)
			stop()
		} else {
			a.log.Info("update assignment withdrawn", "artifact", as.ArtifactID)
		}
		return
	}
	a.log.Info("update assigned", "artifact", as.ArtifactID, "version", as.Version, "campaign", as.CampaignID)
	a.requestUpdate(trigger{reason: "assignment", hint: &as})
}

func (a *Agent) requestUpdate(t trigger) {
	select {
	case a.updates <- t:
	default: // one is pending already; it reads the current metadata
	}
}

// runUpdates finishes an update a reboot interrupted, then runs one
// whenever an assignment arrives, a command asks, or the poll interval
// passes (so a device that missed a message catches up).
func (a *Agent) runUpdates(ctx context.Context) {
	if res := a.updater.Resume(ctx); res != nil {
		a.log.Info("update finished after the restart", "status", res.Status, "version", res.Version, "err", errString(res.Err))
		a.reportTwin(ctx)
	}
	a.update(ctx, trigger{reason: "start-up"})
	t := time.NewTicker(a.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.update(ctx, trigger{reason: "poll"})
		case tr := <-a.updates:
			if ctx.Err() == nil {
				a.update(ctx, tr)
			}
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// rejected remembers an image that failed on this device, so that polls do
// not install it again and again; a new assignment (a higher director
// version in the hint) tries it again.
type rejected struct {
	ArtifactID      string `json:"artifact_id"`
	SHA256          string `json:"sha256"`
	DirectorVersion int64  `json:"director_version"`
	Reason          string `json:"reason"`
}

const rejectedFile = "rejected.json"

func (a *Agent) update(ctx context.Context, t trigger) {
	if err := a.ensureRoots(ctx); err != nil {
		if strings.Contains(err.Error(), `"no_vendor_root"`) {
			a.log.Debug("no updates yet: the vendor has stored no root")
		} else {
			a.log.Warn("no update roots yet", "err", err)
		}
		return
	}
	p, err := a.updater.Next(ctx)
	switch {
	case errors.Is(err, ErrNoAssignment) || errors.Is(err, ErrUpToDate):
		a.log.Debug("no update to install", "trigger", t.reason, "why", err)
		return
	case ctx.Err() != nil:
		return
	case errors.As(err, new(*FetchError)):
		// Not the metadata's fault: the next poll tries again.
		a.log.Warn("update metadata not fetched; trying again later", "trigger", t.reason, "err", err)
		return
	case err != nil:
		a.log.Warn("update metadata refused", "trigger", t.reason, "err", err)
		if t.hint != nil {
			a.publishReport(Report{Status: StatusFailed, ArtifactID: t.hint.ArtifactID, CampaignID: t.hint.CampaignID,
				Version: t.hint.Version, Error: err.Error(), At: a.cfg.Now().UTC()})
		}
		return
	}
	if rj := a.loadRejected(); rj != nil && rj.ArtifactID == p.Image.Assignment.ArtifactID && rj.SHA256 == p.Image.SHA256 &&
		(t.hint == nil || t.hint.DirectorVersion <= rj.DirectorVersion) {
		a.log.Debug("the assigned image failed here before; waiting for a new assignment", "artifact", rj.ArtifactID, "reason", rj.Reason)
		return
	}
	a.log.Info("installing update", "trigger", t.reason, "artifact", p.Image.Assignment.ArtifactID, "version", p.Image.Info.Version)
	// Until it installs, a withdrawn assignment stops the update.
	uctx, stop := context.WithCancel(ctx)
	defer stop()
	a.mu.Lock()
	a.stopDownload, a.downloadArtifact = stop, p.Image.Assignment.ArtifactID
	a.mu.Unlock()
	res := a.updater.Apply(uctx, p)
	a.mu.Lock()
	a.stopDownload = nil
	a.mu.Unlock()
	switch res.Status {
	case StatusRebooting:
		a.log.Info("rebooting into the new version")
		a.halt(ErrRebooting)
		return
	case StatusPending:
		a.log.Info("update interrupted; it goes on at the next start", "err", errString(res.Err))
		return
	case StatusRolledBack, StatusFailed:
		if res.Status == StatusRolledBack || errors.Is(res.Err, tufmeta.ErrImage) {
			a.saveRejected(&rejected{ArtifactID: p.Image.Assignment.ArtifactID, SHA256: p.Image.SHA256, DirectorVersion: p.DirectorVersion,
				Reason: errString(res.Err)})
		}
		a.log.Warn("update did not succeed", "status", res.Status, "running", res.Version, "err", errString(res.Err))
	default:
		a.log.Info("update done", "status", res.Status, "version", res.Version)
	}
	a.reportTwin(ctx)
}

func (a *Agent) loadRejected() *rejected {
	b, err := os.ReadFile(filepath.Join(a.updater.StateDir, rejectedFile))
	if err != nil {
		return nil
	}
	var r rejected
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	return &r
}

func (a *Agent) saveRejected(r *rejected) {
	b, _ := json.Marshal(r)
	if err := writeFileAtomic(filepath.Join(a.updater.StateDir, rejectedFile), b, 0o600); err != nil {
		a.log.Warn("remembering the failed image", "err", err)
	}
}

// rootsFile keeps the roots fetched at first use (trust on first use).
const rootsFile = "roots.json"

type pinnedRoots struct {
	VendorRoot   json.RawMessage `json:"vendor_root"`
	DirectorRoot json.RawMessage `json:"director_root"`
	HardwareID   string          `json:"hardware_id"`
}

// ensureRoots gives the updater its bootstrap roots and hardware ID: from
// the state folder, else fetched once from /device/v1/ota/roots over
// mutual TLS and kept.
func (a *Agent) ensureRoots(ctx context.Context) error {
	if a.updater.VendorRoot != nil && a.updater.Device.HardwareID != "" {
		return nil
	}
	if err := os.MkdirAll(a.updater.StateDir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(a.updater.StateDir, rootsFile)
	var pr pinnedRoots
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &pr)
	}
	if err != nil {
		src, ok := a.updater.Source.(*HTTPSource)
		if !ok {
			return errors.New("no update roots: provide them in the state folder")
		}
		got, err := src.Roots(ctx)
		if err != nil {
			return err
		}
		pr = pinnedRoots{VendorRoot: got.VendorRoot, DirectorRoot: got.DirectorRoot, HardwareID: got.HardwareID}
		b, _ := json.Marshal(pr)
		if err := writeFileAtomic(path, b, 0o600); err != nil {
			return err
		}
		a.log.Info("update roots pinned (trust on first use)", "hardware_id", pr.HardwareID)
	}
	a.updater.VendorRoot, a.updater.DirectorRoot = pr.VendorRoot, pr.DirectorRoot
	a.updater.Device.HardwareID = a.cfg.HardwareID
	if a.updater.Device.HardwareID == "" {
		a.updater.Device.HardwareID = pr.HardwareID
	}
	return nil
}

// publishReport sends an update step on d/{id}/ota/status.
func (a *Agent) publishReport(r Report) {
	a.mu.Lock()
	rr := r
	a.lastRep = &rr
	if r.Status == StatusInstalling {
		a.stopDownload = nil // from here the update runs to its end
	}
	a.mu.Unlock()
	a.log.Debug("update step", "status", r.Status, "artifact", r.ArtifactID, "bytes", r.Bytes, "err", r.Error)
	a.publish(context.Background(), a.topic("ota/status"), r)
}

// health runs the health command with the new version in
// STEWARD_NEW_VERSION; no command: healthy.
func (a *Agent) health(ctx context.Context, version string) error {
	if a.cfg.HealthCmd == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.HealthTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", a.cfg.HealthCmd)
	cmd.Env = append(os.Environ(), "STEWARD_NEW_VERSION="+version, "STEWARD_DEVICE_ID="+a.devID)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(truncate(out, 1024)))
		if msg == "" {
			return err
		}
		return fmt.Errorf("%w: %s", err, msg)
	}
	return nil
}

// ---- commands ----

// Command is what the platform sends on d/{id}/commands/{requestID}.
type Command struct {
	ID             string          `json:"id"`
	Name           string          `json:"name"`
	Params         json.RawMessage `json:"params,omitempty"`
	TimeoutSeconds int             `json:"timeout_seconds,omitempty"`
}

// CommandResult is the answer on d/{id}/commands/{requestID}/result.
type CommandResult struct {
	Status string `json:"status"`
	Result any    `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

// BuiltinCommands are the commands every agent knows.
var BuiltinCommands = []string{"ping", "reboot", "update_check", "wipe"}

func (a *Agent) onCommand(ctx context.Context, reqID string, payload []byte) {
	resultTopic := a.topic("commands/" + reqID + "/result")
	var c Command
	if err := json.Unmarshal(payload, &c); err != nil || c.Name == "" {
		a.publish(ctx, resultTopic, CommandResult{Status: "failed", Error: "unreadable command: want {\"id\", \"name\", \"params\"}"})
		return
	}
	key := c.ID
	if key == "" {
		key = reqID
	}
	a.mu.Lock()
	prev, repeat := a.answered[key]
	a.mu.Unlock()
	if repeat {
		a.publish(ctx, resultTopic, prev)
		return
	}
	a.log.Info("command", "name", c.Name, "id", key)
	var res CommandResult
	switch c.Name {
	case "ping":
		v, _ := a.cfg.Installer.Current()
		res = CommandResult{Status: "succeeded", Result: map[string]any{"pong": true, "version": v,
			"uptime_s": int64(a.uptime().Seconds())}}
	case "update_check":
		a.requestUpdate(trigger{reason: "command"})
		res = CommandResult{Status: "succeeded", Result: map[string]any{"checking": true}}
	case "reboot":
		a.answer(ctx, key, resultTopic, CommandResult{Status: "succeeded", Result: map[string]any{"rebooting": true}}, true)
		a.reboot(ctx)
		return
	case "wipe":
		a.answer(ctx, key, resultTopic, CommandResult{Status: "succeeded", Result: map[string]any{"wiped": true}}, true)
		a.wipe()
		return
	default:
		res = a.runHook(ctx, c)
	}
	a.answer(ctx, key, resultTopic, res, false)
}

func (a *Agent) answer(ctx context.Context, key, topic string, res CommandResult, wait bool) {
	b, _ := json.Marshal(res)
	a.mu.Lock()
	if len(a.answered) > 256 {
		clear(a.answered)
	}
	a.answered[key] = b
	a.mu.Unlock()
	if !wait {
		a.publish(ctx, topic, json.RawMessage(b))
		return
	}
	if err := a.publishNow(ctx, topic, json.RawMessage(b)); err != nil {
		a.log.Warn("the command result was not acknowledged", "err", err)
	}
}

func (a *Agent) reboot(ctx context.Context) {
	err := a.cfg.Installer.Restart(ctx)
	switch {
	case errors.Is(err, ErrRestarting):
		a.halt(ErrRebooting)
	case err != nil:
		a.log.Error("reboot failed", "err", err)
	default:
		// The installer restarted in place (simulation): start a new session.
		a.log.Info("restarted")
		a.mu.Lock()
		a.started = a.cfg.Now()
		a.mu.Unlock()
		select {
		case a.reconnect <- struct{}{}:
		default:
		}
	}
}

// wipe erases the identity, the CA and all state, then stops the agent.
func (a *Agent) wipe() {
	a.log.Warn("wiping the device: erasing its key, certificate and state")
	if err := os.RemoveAll(a.cfg.StateDir); err != nil {
		a.log.Error("wiping the state folder", "err", err)
	}
	a.halt(ErrWiped)
}

// runHook hands an unknown command to the command hook: argument 1 is the
// name, the params JSON is on standard input; JSON on standard output is
// the result (other output is returned as {"output": …}); a non-zero
// exit fails the command with its output as the error.
func (a *Agent) runHook(ctx context.Context, c Command) CommandResult {
	if a.cfg.CommandHook == "" {
		return CommandResult{Status: "failed", Error: fmt.Sprintf("unknown command %q: this agent knows %s and has no command hook",
			c.Name, strings.Join(BuiltinCommands, ", "))}
	}
	timeout := time.Minute
	if c.TimeoutSeconds > 0 {
		timeout = time.Duration(c.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.cfg.CommandHook, c.Name)
	params := c.Params
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	cmd.Stdin = bytes.NewReader(params)
	cmd.Env = append(os.Environ(), "STEWARD_DEVICE_ID="+a.devID, "STEWARD_COMMAND_ID="+c.ID, "STEWARD_COMMAND="+c.Name)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(string(truncate(append(stderr.Bytes(), stdout.Bytes()...), 4096)))
		if msg == "" {
			msg = err.Error()
		}
		return CommandResult{Status: "failed", Error: msg}
	}
	out := bytes.TrimSpace(stdout.Bytes())
	if json.Valid(out) && len(out) > 0 {
		return CommandResult{Status: "succeeded", Result: json.RawMessage(out)}
	}
	return CommandResult{Status: "succeeded", Result: map[string]string{"output": string(truncate(out, 8192))}}
}

// ---- telemetry ----

// Telemetry is the agent's own metrics: uptimes, load and memory (from
// /proc where the system has it).
func Telemetry(agentUptime time.Duration) map[string]any {
	m := map[string]any{"agent_uptime_s": int64(agentUptime.Seconds())}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				m["uptime_s"] = int64(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		for i, name := range []string{"load1", "load5", "load15"} {
			if i < len(f) {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					m[name] = v
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			name, rest, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			var key string
			switch name {
			case "MemTotal":
				key = "mem_total_kb"
			case "MemAvailable":
				key = "mem_available_kb"
			default:
				continue
			}
			if f := strings.Fields(rest); len(f) > 0 {
				if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					m[key] = v
				}
			}
		}
	}
	return m
}
