package schema

// Alerts and rollback signals are what the alert engine derives from
// verdicts with the rules a team set beforehand. Like verdicts they are
// events on the signals stream: replayable, auditable, projected into
// ClickHouse.

const (
	// TypeAlert names alert events: one per change of an alert's status.
	TypeAlert Type = "alert"
	// TypeRollback names rollback signals: a rule asked for a deploy to be undone.
	TypeRollback Type = "rollback"
)

// AlertStatus is where an alert stands.
type AlertStatus string

const (
	AlertFiring   AlertStatus = "firing"
	AlertResolved AlertStatus = "resolved"
)

// Alert is one status change of one alert: a rule matched a deploy's verdict
// (or a regression) and fired, or stopped matching and resolved.
type Alert struct {
	// ID is the event id: the alert's AlertID and its status.
	ID   string `json:"id"`
	Type Type   `json:"type"`
	// AlertID is the same for every status change of one alert: derived from
	// the rule and the deploy (or service and env, for a regression).
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
}

func (r *RollbackSignal) EventType() Type      { return TypeRollback }
func (r *RollbackSignal) EventID() string      { return r.ID }
func (r *RollbackSignal) EventService() string { return r.Service }
func (r *RollbackSignal) EventTime() Time      { return r.At }
