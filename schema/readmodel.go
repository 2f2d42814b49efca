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
