package schema

import (
	"regexp"
	"strconv"
	"time"
)

// Alerts and rollback signals are what the alert engine derives from
// verdicts with the rules a team set beforehand. Like verdicts they are
// events on the signals stream: replayable, auditable, projected into
// ClickHouse. Silences and acknowledgements are what people add to them,
// events on the same stream.

const (
	// TypeAlert names alert events: one per change of an alert's status.
	TypeAlert Type = "alert"
	// TypeRollback names rollback signals: a rule asked for a deploy to be undone.
	TypeRollback Type = "rollback"
	// TypeSilence names silences: alerts of a service or rule are recorded but
	// neither delivered nor acted on for a time.
	TypeSilence Type = "silence"
	// TypeAck names acknowledgements: someone took an alert in hand.
	TypeAck Type = "ack"
)

// AlertStatus is where an alert stands.
type AlertStatus string

const (
	AlertFiring   AlertStatus = "firing"
	AlertResolved AlertStatus = "resolved"
)

// Rank orders the statuses of one alert: resolved comes after firing.
func (s AlertStatus) Rank() uint8 {
	switch s {
	case AlertFiring:
		return 1
	case AlertResolved:
		return 2
	}
	return 0
}

// Why an alert resolved.
const (
	// ResolvedCleared: a later verdict of the deploy no longer met the condition.
	ResolvedCleared = "condition_cleared"
	// ResolvedRolledBack: the deploy was rolled back.
	ResolvedRolledBack = "rolled_back"
	// ResolvedSuperseded: a newer deploy of the service to the same env succeeded.
	ResolvedSuperseded = "superseded"
)

// Alert actions.
const (
	ActionRollback = "rollback"
	ActionNotify   = "notify"
)

// Alert severities.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Alert is one status change of one alert: a rule matched a deploy's verdict
// (or a regression) and fired, or stopped matching and resolved.
type Alert struct {
	// ID is the event id: the alert's AlertID and its status.
	ID   string `json:"id"`
	Type Type   `json:"type"`
	// AlertID is the same for every status change of one alert: derived from
	// the rule and the deploy (or service and env, for a regression) and the
	// event time the condition began to hold (see NewAlertID).
	AlertID  string      `json:"alert_id"`
	Status   AlertStatus `json:"status"`
	Rule     string      `json:"rule"`
	Severity string      `json:"severity"`
	// Actions are what the rule does on firing: "rollback", "notify".
	Actions []string `json:"actions"`
	// DryRun alerts record what the rule would have done; nothing is sent.
	DryRun bool `json:"dry_run,omitempty"`
	// Silenced alerts are recorded but not delivered; SilenceID says by which silence.
	Silenced  bool   `json:"silenced,omitempty"`
	SilenceID string `json:"silence_id,omitempty"`

	Service         string `json:"service"`
	Env             string `json:"env"`
	DeployID        string `json:"deploy_id,omitempty"`
	Version         string `json:"version,omitempty"`
	PreviousVersion string `json:"previous_version,omitempty"`
	// Summary is the verdict's reason, for people.
	Summary string `json:"summary"`
	// VerdictID is the verdict event that made the alert change.
	VerdictID     string        `json:"verdict_id,omitempty"`
	VerdictStatus VerdictStatus `json:"verdict_status,omitempty"`
	VerdictScore  int           `json:"verdict_score"`
	// StartsAt is when the alert began firing; EndsAt when it resolved (event time).
	StartsAt Time              `json:"starts_at"`
	EndsAt   Time              `json:"ends_at,omitzero"`
	Labels   map[string]string `json:"labels,omitempty"`

	// Condition is the rule's expression when the alert changed: the rules
	// may be edited later, the record keeps what was decided with.
	Condition string `json:"condition,omitempty"`
	// For is the rule's `for` duration (Go syntax, "5m0s"); empty for none.
	For string `json:"for,omitempty"`
	// PendingSince is when the condition began to hold (event time); it
	// differs from StartsAt when the rule has a `for`.
	PendingSince Time `json:"pending_since,omitzero"`
	// RollbackID is the rollback signal the alert asked for, when it did.
	RollbackID string `json:"rollback_id,omitempty"`
	// Resolution says why a resolved alert resolved: condition_cleared,
	// rolled_back or superseded.
	Resolution string `json:"resolution,omitempty"`
}

func (a *Alert) EventType() Type      { return TypeAlert }
func (a *Alert) EventID() string      { return a.ID }
func (a *Alert) EventService() string { return a.Service }

// EventTime is when the alert started firing, or when it resolved.
func (a *Alert) EventTime() Time {
	if a.Status == AlertResolved && !a.EndsAt.IsZero() {
		return a.EndsAt
	}
	return a.StartsAt
}

// NewAlertID names one alert: one rule's episode on one deploy, or on a
// service and env for a regression without a deploy of its own. since is the
// event time the rule's condition began to hold, so that the same verdicts
// give the same id (redeliveries and replays deduplicate), and a deploy
// whose alert resolved and fired again later gets a second alert.
//
//	gha-checkout-812-1:alert:bad-deploy-in-production:1772461500
//	checkout@production:alert:bad-deploy-in-production:1772461500
func NewAlertID(rule, deployID, service, env string, since time.Time) string {
	subject := deployID
	if subject == "" {
		subject = service + "@" + env // '@' is in no deploy id
	}
	return subject + ":alert:" + rule + ":" + strconv.FormatInt(since.Unix(), 10)
}

// AlertEventID is the event id of one status change of an alert.
func AlertEventID(alertID string, status AlertStatus) string {
	return alertID + ":" + string(status)
}

// RollbackSignalID is the id of the rollback signal of a deploy: one per
// deploy whatever rule or verdict asked for it, so a deploy is undone once.
func RollbackSignalID(deployID string) string { return deployID + ":rollback" }

// RollbackSignal asks the rollback agents of a service to undo a deploy.
// Its ID is the signal id agents deduplicate by: one successful run per id.
type RollbackSignal struct {
	ID       string `json:"id"`
	Type     Type   `json:"type"`
	Service  string `json:"service"`
	Env      string `json:"env"`
	DeployID string `json:"deploy_id"`
	// Version is the deploy to undo; PreviousVersion the one to return to.
	Version         string `json:"version"`
	PreviousVersion string `json:"previous_version,omitempty"`
	Rule            string `json:"rule"`
	AlertID         string `json:"alert_id"`
	VerdictID       string `json:"verdict_id,omitempty"`
	Reason          string `json:"reason"`
	// At is the event time of the verdict that called for it.
	At Time `json:"at"`
	// Severity is the severity of the alert that asked for the rollback.
	Severity string `json:"severity,omitempty"`
	// Labels are the deploy's labels.
	Labels map[string]string `json:"labels,omitempty"`
}

func (r *RollbackSignal) EventType() Type      { return TypeRollback }
func (r *RollbackSignal) EventID() string      { return r.ID }
func (r *RollbackSignal) EventService() string { return r.Service }
func (r *RollbackSignal) EventTime() Time      { return r.At }

// Silence keeps the alerts of a service (in an env, or all of them) and/or
// of a rule from being delivered or acted on between StartsAt and EndsAt
// (event time of the verdicts): they are recorded with silenced true, and
// no rollback signal goes out for them.
type Silence struct {
	ID   string `json:"id"`
	Type Type   `json:"type"`
	// Service, Env and Rule select the alerts; empty selects all. At least
	// one of Service and Rule is set.
	Service   string `json:"service,omitempty"`
	Env       string `json:"env,omitempty"`
	Rule      string `json:"rule,omitempty"`
	StartsAt  Time   `json:"starts_at"`
	EndsAt    Time   `json:"ends_at"`
	CreatedBy string `json:"created_by"`
	Comment   string `json:"comment,omitempty"`
	CreatedAt Time   `json:"created_at"`
}

func (s *Silence) EventType() Type      { return TypeSilence }
func (s *Silence) EventID() string      { return s.ID }
func (s *Silence) EventService() string { return s.Service }
func (s *Silence) EventTime() Time      { return s.CreatedAt }

// Matches reports whether the silence covers an alert of rule for service in
// env at event time t.
func (s *Silence) Matches(rule, service, env string, t time.Time) bool {
	return (s.Service == "" || s.Service == service) && (s.Env == "" || s.Env == env) &&
		(s.Rule == "" || s.Rule == rule) && !t.Before(s.StartsAt.Time) && t.Before(s.EndsAt.Time)
}

// NewSilenceID derives a silence's id from what it says, so that a request
// sent again makes no second silence.
func NewSilenceID(s *Silence) string {
	return derivedID("silence", s.Service, s.Env, s.Rule, s.StartsAt.Time.UTC().Format(time.RFC3339),
		s.EndsAt.Time.UTC().Format(time.RFC3339), s.CreatedBy, s.Comment)
}

// Acknowledgement records that someone took an alert in hand.
type Acknowledgement struct {
	ID      string `json:"id"`
	Type    Type   `json:"type"`
	AlertID string `json:"alert_id"`
	// Service, Env and Rule are the alert's.
	Service string `json:"service"`
	Env     string `json:"env"`
	Rule    string `json:"rule,omitempty"`
	By      string `json:"by"`
	Comment string `json:"comment,omitempty"`
	At      Time   `json:"at"`
}

func (a *Acknowledgement) EventType() Type      { return TypeAck }
func (a *Acknowledgement) EventID() string      { return a.ID }
func (a *Acknowledgement) EventService() string { return a.Service }
func (a *Acknowledgement) EventTime() Time      { return a.At }

// NewAckID derives an acknowledgement's id from the alert, who and what they
// said: the same acknowledgement sent twice is one.
func NewAckID(alertID, by, comment string) string {
	return derivedID("ack", alertID, by, comment)
}

// RuleNamePattern is what a rule's name may look like: it is part of alert ids.
var RuleNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// maxAlertIDLen bounds alert ids: a deploy id (or service@env), the rule
// name and a Unix time, with the status for the event id.
const maxAlertIDLen = 400

// Validate reports every problem of the alert at once.
func (a *Alert) Validate() error {
	var p problems
	checkSignalID(&p, "id", a.ID)
	if a.Type != TypeAlert {
		p.addf("type", "must be %q; got %q", TypeAlert, a.Type)
	}
	checkSignalID(&p, "alert_id", a.AlertID)
	switch a.Status {
	case AlertFiring, AlertResolved:
		if a.AlertID != "" && a.ID != "" && a.ID != AlertEventID(a.AlertID, a.Status) {
			p.addf("id", "must be the alert_id and the status, %q; got %q", AlertEventID(a.AlertID, a.Status), a.ID)
		}
	case "":
		p.add("status", "is required: firing or resolved")
	default:
		p.addf("status", "must be firing or resolved; got %q", a.Status)
	}
	checkRuleName(&p, "rule", a.Rule, true)
	checkSeverity(&p, "severity", a.Severity)
	checkName(&p, "service", a.Service, true)
	checkName(&p, "env", a.Env, true)
	checkID(&p, "deploy_id", a.DeployID)
	if a.VerdictScore < 0 || a.VerdictScore > 100 {
		p.addf("verdict_score", "must be from 0 to 100; got %d", a.VerdictScore)
	}
	a.StartsAt.check(&p, "starts_at", true)
	a.EndsAt.check(&p, "ends_at", a.Status == AlertResolved)
	a.PendingSince.check(&p, "pending_since", false)
	return p.err()
}

// Validate reports every problem of the rollback signal at once.
func (r *RollbackSignal) Validate() error {
	var p problems
	checkSignalID(&p, "id", r.ID)
	if r.Type != TypeRollback {
		p.addf("type", "must be %q; got %q", TypeRollback, r.Type)
	}
	checkName(&p, "service", r.Service, true)
	checkName(&p, "env", r.Env, true)
	if r.DeployID == "" {
		p.add("deploy_id", "is required: the deploy to undo")
	}
	checkID(&p, "deploy_id", r.DeployID)
	checkRuleName(&p, "rule", r.Rule, true)
	checkSignalID(&p, "alert_id", r.AlertID)
	r.At.check(&p, "at", true)
	return p.err()
}

// Validate reports every problem of the silence at once.
func (s *Silence) Validate() error {
	var p problems
	s.validate(&p)
	return p.err()
}

func (s *Silence) validate(p *problems) {
	if s.ID == "" {
		p.add("id", "is required")
	}
	checkID(p, "id", s.ID)
	if s.Type != TypeSilence {
		p.addf("type", "must be %q; got %q", TypeSilence, s.Type)
	}
	if s.Service == "" && s.Rule == "" {
		p.add("service", "or rule is required: a silence of everything would hide every bad deploy")
	}
	checkName(p, "service", s.Service, false)
	checkName(p, "env", s.Env, false)
	checkRuleName(p, "rule", s.Rule, false)
	s.StartsAt.checkForm(p, "starts_at", true)
	s.EndsAt.checkForm(p, "ends_at", true)
	if !s.StartsAt.Time.IsZero() && !s.EndsAt.Time.IsZero() && !s.EndsAt.After(s.StartsAt.Time) {
		p.add("ends_at", "must be after starts_at")
	}
	if s.CreatedBy == "" {
		p.add("created_by", "is required: who silences, so that others can ask them")
	}
	checkText(p, "created_by", s.CreatedBy, 256)
	checkText(p, "comment", s.Comment, 4096)
	s.CreatedAt.check(p, "created_at", true)
}

// Validate reports every problem of the acknowledgement at once.
func (a *Acknowledgement) Validate() error {
	var p problems
	checkSignalID(&p, "id", a.ID)
	if a.Type != TypeAck {
		p.addf("type", "must be %q; got %q", TypeAck, a.Type)
	}
	checkSignalID(&p, "alert_id", a.AlertID)
	checkName(&p, "service", a.Service, true)
	checkName(&p, "env", a.Env, true)
	checkRuleName(&p, "rule", a.Rule, false)
	if a.By == "" {
		p.add("by", "is required: who acknowledges")
	}
	checkText(&p, "by", a.By, 256)
	checkText(&p, "comment", a.Comment, 4096)
	a.At.check(&p, "at", true)
	return p.err()
}

// checkSignalID checks an id that deploywatch derived: required, bounded.
func checkSignalID(p *problems, field, value string) {
	switch {
	case value == "":
		p.add(field, "is required")
	case len(value) > maxAlertIDLen:
		p.addf(field, "is %d bytes long; the limit is %d", len(value), maxAlertIDLen)
	}
}

func checkRuleName(p *problems, field, value string, required bool) {
	switch {
	case value == "" && required:
		p.add(field, "is required")
	case value != "" && !RuleNamePattern.MatchString(value):
		p.addf(field, "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit; got %q", value)
	}
}

func checkSeverity(p *problems, field, value string) {
	switch value {
	case SeverityCritical, SeverityWarning, SeverityInfo:
	case "":
		p.add(field, "is required: critical, warning or info")
	default:
		p.addf(field, "must be critical, warning or info; got %q", value)
	}
}

// checkForm checks only the form of a time that may lie in the future (the
// end of a silence).
func (t Time) checkForm(p *problems, field string, required bool) {
	switch {
	case t.invalid != "":
		p.add(field, "must be an RFC 3339 time such as 2026-11-22T10:04:05Z, got "+strconv.Quote(t.invalid))
	case t.Time.IsZero() && required:
		p.add(field, "is required: an RFC 3339 time such as 2026-11-22T10:04:05Z")
	case !t.Time.IsZero() && t.Time.Year() < 2000:
		p.add(field, "is before the year 2000: send the real time in RFC 3339")
	}
}

// AlertState is an alert as the API shows it: its latest status change,
// with the acknowledgements it got.
type AlertState struct {
	Alert
	// UpdatedAt is the event time of the latest change.
	UpdatedAt time.Time         `json:"updated_at"`
	Acks      []Acknowledgement `json:"acks"`
}

// AlertFilter selects alerts to list, newest first.
type AlertFilter struct {
	AlertID string
	Service string
	Env     string
	Status  AlertStatus
	Limit   int
}
