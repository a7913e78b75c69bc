package model

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ---- update campaigns ----

// CampaignState is where a campaign stands.
type CampaignState string

const (
	CampaignRunning   CampaignState = "running"
	CampaignPaused    CampaignState = "paused"
	CampaignCompleted CampaignState = "completed"
	CampaignAborted   CampaignState = "aborted"
	CampaignCancelled CampaignState = "cancelled"
)

// Open reports whether the campaign may still start waves or take devices.
func (s CampaignState) Open() bool { return s == CampaignRunning || s == CampaignPaused }

// UpdateStatus is where an update stands on one device. The device reports
// the steps from notified on; the platform sets pending, cancelled and
// refused.
type UpdateStatus string

const (
	UpdatePending     UpdateStatus = "pending"
	UpdateNotified    UpdateStatus = "notified"
	UpdateDownloading UpdateStatus = "downloading"
	UpdateVerifying   UpdateStatus = "verifying"
	UpdateInstalling  UpdateStatus = "installing"
	UpdateRebooting   UpdateStatus = "rebooting"
	UpdateSucceeded   UpdateStatus = "succeeded"
	UpdateFailed      UpdateStatus = "failed"
	UpdateRolledBack  UpdateStatus = "rolled_back"
	// UpdateCancelled: the campaign ended, or the release was invalidated,
	// before the device finished.
	UpdateCancelled UpdateStatus = "cancelled"
	// UpdateRefused: the owner did not consent.
	UpdateRefused UpdateStatus = "refused"
)

// UpdateStatuses are all statuses, in lifecycle order.
var UpdateStatuses = []UpdateStatus{UpdatePending, UpdateNotified, UpdateDownloading, UpdateVerifying, UpdateInstalling,
	UpdateRebooting, UpdateSucceeded, UpdateFailed, UpdateRolledBack, UpdateCancelled, UpdateRefused}

// Valid reports whether s is a known status.
func (s UpdateStatus) Valid() bool {
	for _, v := range UpdateStatuses {
		if v == s {
			return true
		}
	}
	return false
}

// Final reports whether nothing follows s.
func (s UpdateStatus) Final() bool {
	switch s {
	case UpdateSucceeded, UpdateFailed, UpdateRolledBack, UpdateCancelled, UpdateRefused:
		return true
	}
	return false
}

// Failure reports whether s counts against a campaign's failure threshold.
func (s UpdateStatus) Failure() bool { return s == UpdateFailed || s == UpdateRolledBack }

// DeviceReported reports whether a device may report s.
func (s UpdateStatus) DeviceReported() bool {
	return s.Valid() && s != UpdatePending && s != UpdateCancelled && s != UpdateRefused
}

// Consent is an owner's answer to an update that asks for it.
type Consent string

const (
	ConsentNone    Consent = ""        // the campaign does not ask
	ConsentAsked   Consent = "asked"   // waiting for the owner
	ConsentGranted Consent = "granted" // the owner said yes
	ConsentRefused Consent = "refused" // the owner said no
)

// MaintenanceWindow is when a campaign may notify devices: every listed
// day (all days when empty) from Start to End, local time in TimeZone. An
// End before Start runs past midnight.
type MaintenanceWindow struct {
	Days     []string `json:"days,omitempty" doc:"Days of the week (mon … sun); empty = every day."`
	Start    string   `json:"start" doc:"Local start time, HH:MM." example:"02:00"`
	End      string   `json:"end" doc:"Local end time, HH:MM (before start = past midnight)." example:"05:00"`
	TimeZone string   `json:"time_zone,omitempty" doc:"IANA time zone, e.g. Europe/Berlin (UTC when empty)." example:"Europe/Berlin"`
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM)", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Validate checks the window.
func (w *MaintenanceWindow) Validate() error {
	for _, d := range w.Days {
		if _, ok := weekdays[strings.ToLower(d)]; !ok {
			return fmt.Errorf("day %q: want one of mon, tue, wed, thu, fri, sat, sun", d)
		}
	}
	s, err := clock(w.Start)
	if err != nil {
		return fmt.Errorf("start: %v", err)
	}
	e, err := clock(w.End)
	if err != nil {
		return fmt.Errorf("end: %v", err)
	}
	if s == e {
		return errors.New("start and end are the same time: the window would be empty")
	}
	if _, err := time.LoadLocation(w.TimeZone); err != nil {
		return fmt.Errorf("time_zone %q is not a known IANA time zone", w.TimeZone)
	}
	return nil
}

// Contains reports whether t falls in the window. A window past midnight
// belongs to the day it starts on.
func (w *MaintenanceWindow) Contains(t time.Time) bool {
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return false
	}
	s, err1 := clock(w.Start)
	e, err2 := clock(w.End)
	if err1 != nil || err2 != nil {
		return false
	}
	lt := t.In(loc)
	m := lt.Hour()*60 + lt.Minute()
	day := lt.Weekday()
	switch {
	case s < e:
		if m < s || m >= e {
			return false
		}
	case m >= s: // evening part, starts today
	case m < e: // morning part, started yesterday
		day = (day + 6) % 7
	default:
		return false
	}
	if len(w.Days) == 0 {
		return true
	}
	for _, d := range w.Days {
		if weekdays[strings.ToLower(d)] == day {
			return true
		}
	}
	return false
}

// Campaign rolls one artifact out to the devices a query (or group)
// selects: a canary step, then waves at a rate, with gates that pause or
// abort it. A dynamic campaign stays open: devices that come to match
// later join the wave in progress.
type Campaign struct {
	ID         string        `json:"id"`
	TenantID   string        `json:"tenant_id"`
	Name       string        `json:"name"`
	ArtifactID string        `json:"artifact_id"`
	Version    string        `json:"version" doc:"The artifact's firmware version."`
	Query      DeviceQuery   `json:"query" doc:"The devices it targets (a group_id in the query targets a group)."`
	Dynamic    bool          `json:"dynamic" doc:"Devices that match later join (the campaign stays open until cancelled)."`
	State      CampaignState `json:"state"`
	Reason     string        `json:"reason,omitempty" doc:"Why it paused, aborted, or was cancelled."`

	Canary       int           `json:"canary" doc:"Devices in the canary step (wave 1); 0 = none."`
	WaveSize     int           `json:"wave_size" doc:"Devices per wave after the canary."`
	WaveInterval time.Duration `json:"wave_interval" doc:"Least time between the starts of two waves (nanoseconds)."`
	// Gates: the next wave starts when at least SuccessRatio of the wave in
	// progress succeeded; the campaign aborts (or pauses, with
	// PauseOnFailure) when more than MaxFailureRatio of the devices
	// notified so far (since the gate baseline below) failed or rolled back.
	SuccessRatio    float64            `json:"success_ratio" doc:"Share of a wave that must succeed before the next starts (0–1)."`
	MaxFailureRatio float64            `json:"max_failure_ratio" doc:"Share of failures (so far, less the gate baseline) above which the campaign stops (0–1)."`
	PauseOnFailure  bool               `json:"pause_on_failure,omitempty" doc:"Pause instead of aborting when the failure gate trips."`
	Window          *MaintenanceWindow `json:"maintenance_window,omitempty"`
	RequireConsent  bool               `json:"require_consent" doc:"The owner confirms before a device is told to install."`
	// The failure gate's baseline: resuming a campaign the gate paused
	// accepts what happened so far (the failures and devices told up to
	// then no longer count, the wave in progress is taken as passed).
	GateFailed int64 `json:"gate_failed" doc:"Failures accepted when the campaign was last resumed after its failure gate tripped; the gate counts only those since."`
	GateTold   int64 `json:"gate_told" doc:"Devices told when the campaign was last resumed after its failure gate tripped; the gate counts only those since."`
	GateWave   int   `json:"gate_wave" doc:"The last wave taken as passed on such a resume (0 = none): it needs no success_ratio."`

	Wave          int                    `json:"wave" doc:"The wave in progress (0 = not started)."`
	WaveStartedAt *time.Time             `json:"wave_started_at,omitempty"`
	Total         int64                  `json:"total" doc:"Devices targeted so far."`
	Counts        map[UpdateStatus]int64 `json:"counts,omitempty" doc:"Devices per status (filled on reads of one campaign)."`
	// Version counts changes; the scheduler's steps are conditional on it
	// so that two nodes never start the same wave.
	Rev        int64      `json:"rev"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  string     `json:"created_by"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// CampaignDevice is one device's part in a campaign.
type CampaignDevice struct {
	CampaignID string       `json:"campaign_id"`
	TenantID   string       `json:"tenant_id"`
	DeviceID   string       `json:"device_id"`
	Wave       int          `json:"wave" doc:"The wave it was notified in (0 = not yet)."`
	Status     UpdateStatus `json:"status"`
	Consent    Consent      `json:"consent,omitempty"`
	Detail     string       `json:"detail,omitempty" doc:"The device's reason for a failure or rollback, or the platform's for a cancellation."`
	Bytes      int64        `json:"bytes,omitempty"`
	Total      int64        `json:"total,omitempty"`
	UpdatedAt  time.Time    `json:"updated_at"`
}
