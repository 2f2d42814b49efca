package schema

import (
	"encoding/json"
	"errors"
	"time"
)

// ErrNotFound is returned by readers when the asked-for thing does not exist.
var ErrNotFound = errors.New("not found")

// DeployState is a deploy's latest state: all its status changes folded into one.
type DeployState struct {
	ID              string            `json:"id"`
	Service         string            `json:"service"`
	Env             string            `json:"env"`
	Version         string            `json:"version"`
	PreviousVersion string            `json:"previous_version,omitempty"`
	Status          DeployStatus      `json:"status"`
	StartedAt       *time.Time        `json:"started_at"`
	FinishedAt      *time.Time        `json:"finished_at"`
	RolledBackAt    *time.Time        `json:"rolled_back_at"`
	DurationS       *float64          `json:"duration_s"`
	UpdatedAt       time.Time         `json:"updated_at"`
	Commits         []Commit          `json:"commits"`
	Author          string            `json:"author,omitempty"`
	Strategy        Strategy          `json:"strategy,omitempty"`
	URL             string            `json:"url,omitempty"`
	Labels          map[string]string `json:"labels"`
	// Verdict is the deploy impact analysis' verdict; null until one exists.
	Verdict json.RawMessage `json:"verdict"`
}

// DeployFilter selects deploys to list, newest first.
type DeployFilter struct {
	Service string
	Env     string
	Limit   int
}

// Where an incident stands, as the read side reports it.
const (
	IncidentStateOpen     = "open"
	IncidentStateResolved = "resolved"
)

// IncidentState is an incident's changes folded into one, with the durations
// that measure the response to it. A duration is null when it cannot be
// known (yet): mttr_s while the incident is open, the deploy durations when
// no deploy is linked.
type IncidentState struct {
	ID       string `json:"id"`
	Service  string `json:"service"`
	Env      string `json:"env"`
	Status   string `json:"status"` // IncidentStateOpen or IncidentStateResolved
	Title    string `json:"title"`
	Source   string `json:"source"`
	DeployID string `json:"deploy_id"`
	// OpenedAt is null only when the opened change never arrived.
	OpenedAt   *time.Time `json:"opened_at"`
	ResolvedAt *time.Time `json:"resolved_at"`
	// MTTRS is resolved_at − opened_at, in seconds.
	MTTRS *float64 `json:"mttr_s"`
	// TimeToDetectS is opened_at − the linked deploy's finished_at (its
	// started_at when the incident opened before the deploy finished).
	TimeToDetectS *float64 `json:"time_to_detect_s"`
	// TimeToRollbackS is the linked deploy's rolled_back_at − opened_at.
	TimeToRollbackS *float64 `json:"time_to_rollback_s"`
	// TimeToRecoverS equals MTTRS.
	TimeToRecoverS *float64 `json:"time_to_recover_s"`
}

// IncidentFilter selects incidents to list, newest opened first.
type IncidentFilter struct {
	Service string
	Env     string
	// Since keeps incidents opened at or after it; zero keeps all.
	Since time.Time
	// Status is IncidentStateOpen, IncidentStateResolved or "" for both.
	Status string
	Limit  int
}
