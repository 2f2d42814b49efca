package schema

import "time"

// DORA performance bands, best first, as the DORA reports name them.
const (
	BandElite  = "elite"
	BandHigh   = "high"
	BandMedium = "medium"
	BandLow    = "low"
)

// DoraFilter selects what GET /api/v1/dora summarizes.
type DoraFilter struct {
	// Weeks is how many weeks (Monday to Sunday, UTC) to return, the current
	// one included; 0 means 12.
	Weeks   int
	Service string
	// Env is the environment that counts as production; "" means "production".
	Env  string
	Team string
	// Now is the end of the newest week's data; zero means time.Now().
	Now time.Time
}

// Quantiles are the median and 90th percentile of durations in seconds;
// both are null when the week has nothing to measure.
type Quantiles struct {
	P50 *float64 `json:"p50"`
	P90 *float64 `json:"p90"`
}

// DoraWeek is the four keys of one week. Every definition is in the README's
// "Delivery performance (DORA)" section.
type DoraWeek struct {
	// WeekStart is the week's Monday, 00:00 UTC.
	WeekStart time.Time `json:"week_start"`
	// DeployFrequency is the number of deploys that reached production this week.
	DeployFrequency int `json:"deploy_frequency"`
	// DeployDays is the number of days of the week with at least one of them.
	DeployDays int `json:"deploy_days"`
	// LeadTimeS is commit time → first production deploy, per commit.
	LeadTimeS Quantiles `json:"lead_time_s"`
	// ChangeFailureRate is Failures ÷ DeployFrequency; null without deploys.
	ChangeFailureRate *float64 `json:"change_failure_rate"`
	// MTTRS is incident opened → resolved, over the incidents resolved this week.
	MTTRS Quantiles `json:"mttr_s"`
	// Deploys counts every production deploy that finished this week,
	// failed ones included.
	Deploys int `json:"deploys"`
	// Failures counts the deploys of DeployFrequency that had a bad verdict,
	// were rolled back, or have a linked incident.
	Failures int `json:"failures"`
	// Incidents counts the incidents opened this week.
	Incidents int `json:"incidents"`
	// Commits counts the commits whose lead time ends this week.
	Commits int `json:"commits"`
	// Bands places each key in DORA's performance bands ("" when unmeasured).
	Bands DoraBands `json:"bands"`
}

// DoraBands is where one week's keys fall among DORA's performance bands.
type DoraBands struct {
	DeployFrequency   string `json:"deploy_frequency"`
	LeadTime          string `json:"lead_time"`
	ChangeFailureRate string `json:"change_failure_rate"`
	MTTR              string `json:"mttr"`
}

// NotableDeploy is a deploy a weekly report calls out: a rollback, a bad
// verdict, a linked incident, or one of the slowest lead times.
type NotableDeploy struct {
	DeployID   string    `json:"deploy_id"`
	Service    string    `json:"service"`
	Env        string    `json:"env"`
	Team       string    `json:"team,omitempty"`
	Version    string    `json:"version"`
	Status     string    `json:"status"`
	FinishedAt time.Time `json:"finished_at"`
	// Reasons are "rolled_back", "bad_verdict", "incident", "slow_lead_time".
	Reasons []string `json:"reasons"`
	// LeadTimeS is the deploy's longest commit lead time; null without commits.
	LeadTimeS     *float64 `json:"lead_time_s"`
	IncidentID    string   `json:"incident_id,omitempty"`
	VerdictStatus string   `json:"verdict_status,omitempty"`
	VerdictReason string   `json:"verdict_reason,omitempty"`
	URL           string   `json:"url,omitempty"`
}

// DoraReport is GET /api/v1/dora's answer: the weeks oldest first, and the
// notable deploys of the newest Weeks, newest first.
type DoraReport struct {
	Service string          `json:"service,omitempty"`
	Env     string          `json:"env"`
	Team    string          `json:"team,omitempty"`
	Weeks   []DoraWeek      `json:"weeks"`
	Notable []NotableDeploy `json:"notable"`
	// NotableFrom is where the span of Notable starts: the Monday of the
	// week before the newest (of the newest when Weeks is 1), so a report
	// read early in a week still lists the week that just ended.
	NotableFrom time.Time `json:"notable_from"`
}
