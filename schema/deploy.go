package schema

import (
	"maps"
	"net/url"
	"slices"
	"strings"
)

// DeployStatus is a step of a deploy's lifecycle.
type DeployStatus string

const (
	DeployStarted    DeployStatus = "started"
	DeploySucceeded  DeployStatus = "succeeded"
	DeployFailed     DeployStatus = "failed"
	DeployRolledBack DeployStatus = "rolled_back"
)

// Rank orders the statuses of one deploy when two changes carry the same time:
// a later step of the lifecycle wins.
func (s DeployStatus) Rank() uint8 {
	switch s {
	case DeployStarted:
		return 1
	case DeploySucceeded, DeployFailed:
		return 2
	case DeployRolledBack:
		return 3
	}
	return 0
}

// Strategy is how a deploy reached its users.
type Strategy string

const (
	StrategyRolling   Strategy = "rolling"
	StrategyCanary    Strategy = "canary"
	StrategyBlueGreen Strategy = "blue_green"
	// StrategyFlag is a feature switch flipped: a deploy without new code.
	StrategyFlag Strategy = "flag"
)

// Commit is one change that a deploy shipped; its time feeds lead time.
type Commit struct {
	SHA     string `json:"sha"`
	Time    Time   `json:"time,omitzero"`
	Author  string `json:"author,omitempty"`
	Message string `json:"message,omitempty"`
}

// Deploy is one status change of a deploy. All changes of one deploy share its
// ID; the projection folds them into the deploy's latest state.
type Deploy struct {
	ID              string            `json:"id"`
	Type            Type              `json:"type"`
	Service         string            `json:"service"`
	Env             string            `json:"env"`
	Version         string            `json:"version"`
	PreviousVersion string            `json:"previous_version,omitempty"`
	Status          DeployStatus      `json:"status"`
	StartedAt       Time              `json:"started_at,omitzero"`
	FinishedAt      Time              `json:"finished_at,omitzero"`
	Commits         []Commit          `json:"commits,omitempty"`
	Author          string            `json:"author,omitempty"`
	Strategy        Strategy          `json:"strategy,omitempty"`
	URL             string            `json:"url,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
}

func (d *Deploy) EventType() Type { return TypeDeploy }

// EventID is the id of this status change: one deploy has one event per status.
func (d *Deploy) EventID() string { return d.ID + ":" + string(d.Status) }

// EventTime is the time the status implies: started_at for started, else finished_at.
func (d *Deploy) EventTime() Time {
	if d.Status == DeployStarted || d.FinishedAt.IsZero() {
		return d.StartedAt
	}
	return d.FinishedAt
}

func (d *Deploy) EventService() string { return d.Service }

// Normalize fills in the type and, when the sender gave none, an id derived from
// the deploy's identity (service, env, version and its start or finish time), so
// that a re-sent request gets the same id.
func (d *Deploy) Normalize() {
	d.Type = TypeDeploy
	d.Service = strings.TrimSpace(d.Service)
	d.Env = strings.TrimSpace(d.Env)
	d.Version = strings.TrimSpace(d.Version)
	if d.ID == "" && d.Service != "" && d.Version != "" {
		anchor := d.StartedAt
		if anchor.IsZero() {
			anchor = d.FinishedAt
		}
		if !anchor.Time.IsZero() {
			d.ID = derivedID("deploy", d.Service, d.Env, d.Version, anchor.Time.UTC().Format("2006-01-02T15:04:05.999999999Z"))
		}
	}
}

// Validate reports every problem of the deploy at once.
func (d *Deploy) Validate() error {
	var p problems
	d.validate(&p, "")
	return p.err()
}

func (d *Deploy) validate(p *problems, prefix string) {
	checkID(p, join(prefix, "id"), d.ID)
	checkName(p, join(prefix, "service"), d.Service, true)
	checkName(p, join(prefix, "env"), d.Env, true)
	if d.Version == "" {
		p.add(join(prefix, "version"), "is required: the version now deployed (tag, image digest or commit)")
	}
	checkText(p, join(prefix, "version"), d.Version, 256)
	checkText(p, join(prefix, "previous_version"), d.PreviousVersion, 256)
	switch d.Status {
	case DeployStarted:
		d.StartedAt.check(p, join(prefix, "started_at"), true)
		d.FinishedAt.check(p, join(prefix, "finished_at"), false)
	case DeploySucceeded, DeployFailed, DeployRolledBack:
		d.StartedAt.check(p, join(prefix, "started_at"), false)
		d.FinishedAt.check(p, join(prefix, "finished_at"), true)
	case "":
		p.add(join(prefix, "status"), "is required: one of started, succeeded, failed, rolled_back")
	default:
		p.addf(join(prefix, "status"), "must be one of started, succeeded, failed, rolled_back; got %q", d.Status)
	}
	if !d.StartedAt.Time.IsZero() && !d.FinishedAt.Time.IsZero() && d.FinishedAt.Time.Before(d.StartedAt.Time) {
		p.add(join(prefix, "finished_at"), "is before started_at")
	}
	switch d.Strategy {
	case "", StrategyRolling, StrategyCanary, StrategyBlueGreen, StrategyFlag:
	default:
		p.addf(join(prefix, "strategy"), "must be one of rolling, canary, blue_green, flag; got %q", d.Strategy)
	}
	if d.URL != "" {
		if u, err := url.Parse(d.URL); err != nil || u.Scheme == "" || u.Host == "" {
			p.add(join(prefix, "url"), "must be an absolute URL such as https://ci.example.com/runs/42")
		}
	}
	checkText(p, join(prefix, "url"), d.URL, 2048)
	checkText(p, join(prefix, "author"), d.Author, 256)
	if len(d.Commits) > maxCommits {
		p.addf(join(prefix, "commits"), "has %d commits; the limit is %d", len(d.Commits), maxCommits)
	}
	for i, c := range d.Commits {
		cp := join(prefix, "commits") + "[" + itoa(i) + "]"
		if c.SHA == "" {
			p.add(join(cp, "sha"), "is required")
		}
		checkText(p, join(cp, "sha"), c.SHA, 128)
		c.Time.check(p, join(cp, "time"), false)
		checkText(p, join(cp, "author"), c.Author, 256)
		checkText(p, join(cp, "message"), c.Message, 4096)
	}
	if len(d.Labels) > maxLabels {
		p.addf(join(prefix, "labels"), "has %d labels; the limit is %d", len(d.Labels), maxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(d.Labels)) { // the same input, the same answer
		v := d.Labels[k]
		if k == "" || len(k) > 128 {
			p.addf(join(prefix, "labels"), "label name %q must be 1-128 bytes", k)
		}
		checkText(p, join(prefix, "labels."+k), v, 1024)
	}
}

const (
	maxCommits = 1000
	maxLabels  = 64
)
