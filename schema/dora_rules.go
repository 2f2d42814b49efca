package schema

import "time"

// The boundaries of DORA's performance bands as deploywatch applies them to
// one week (README, "Delivery performance (DORA)"). They follow the clusters
// of the 2023 Accelerate State of DevOps report; where its low cluster
// overlaps the medium one, low is whatever is worse than medium. Dashboards
// draw the same lines.
const (
	// EliteDeploysPerWeek and more production deploys in a week is "on
	// demand": more than one a day on average.
	EliteDeploysPerWeek = 7
	// HighDeploysPerWeek and more is at least once a week. A week with none
	// is medium when one of the 3 weeks before it had one (monthly), else low.
	HighDeploysPerWeek = 1
	// MonthlyWeeks is how many weeks, the week itself included, a deploy
	// keeps the deploy frequency medium.
	MonthlyWeeks = 4

	// Lead time for changes (the week's median) below each is that band.
	EliteLeadTime  = 24 * time.Hour
	HighLeadTime   = 7 * 24 * time.Hour
	MediumLeadTime = 30 * 24 * time.Hour

	// Time to restore (the week's median) below each is that band.
	EliteTimeToRestore  = time.Hour
	HighTimeToRestore   = 24 * time.Hour
	MediumTimeToRestore = 7 * 24 * time.Hour
)

// Change failure rates at or below each are that band (DORA 2023: 5%, 10%,
// 15%; its low cluster sits at 64%).
const (
	EliteChangeFailureRate  = 0.05
	HighChangeFailureRate   = 0.10
	MediumChangeFailureRate = 0.15
)

// DeployFrequencyBand places a week with deploys production deploys, and
// recent production deploys in the MonthlyWeeks weeks ending with it.
func DeployFrequencyBand(deploys, recent int) string {
	switch {
	case deploys >= EliteDeploysPerWeek:
		return BandElite
	case deploys >= HighDeploysPerWeek:
		return BandHigh
	case recent > 0:
		return BandMedium
	}
	return BandLow
}

// LeadTimeBand places a week's median lead time in seconds; "" when null.
func LeadTimeBand(p50 *float64) string {
	return durationBand(p50, EliteLeadTime, HighLeadTime, MediumLeadTime)
}

// TimeToRestoreBand places a week's median time to restore in seconds; ""
// when null.
func TimeToRestoreBand(p50 *float64) string {
	return durationBand(p50, EliteTimeToRestore, HighTimeToRestore, MediumTimeToRestore)
}

// ChangeFailureRateBand places a week's change failure rate; "" when null.
func ChangeFailureRateBand(rate *float64) string {
	switch {
	case rate == nil:
		return ""
	case *rate <= EliteChangeFailureRate:
		return BandElite
	case *rate <= HighChangeFailureRate:
		return BandHigh
	case *rate <= MediumChangeFailureRate:
		return BandMedium
	}
	return BandLow
}

func durationBand(seconds *float64, elite, high, medium time.Duration) string {
	switch {
	case seconds == nil:
		return ""
	case *seconds < elite.Seconds():
		return BandElite
	case *seconds < high.Seconds():
		return BandHigh
	case *seconds < medium.Seconds():
		return BandMedium
	}
	return BandLow
}

// MaxDoraWeeks is the most weeks one DORA report covers: two years.
const MaxDoraWeeks = 104

// Validate names every field of f that cannot be used: weeks beyond 0 (the
// default) to MaxDoraWeeks, service and env that are not names, a team
// longer than a label value may be.
func (f DoraFilter) Validate() error {
	var p problems
	if f.Weeks < 0 || f.Weeks > MaxDoraWeeks {
		p.addf("weeks", "must be a whole number from 1 to %d; got %d", MaxDoraWeeks, f.Weeks)
	}
	checkName(&p, "service", f.Service, false)
	checkName(&p, "env", f.Env, false)
	checkText(&p, "team", f.Team, 1024)
	return p.err()
}
