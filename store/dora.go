package store

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/schema"
)

// Dora computes DORA's four keys per week from the dora_* views (migration
// 0009, where the definitions are written down once). The delivery
// dashboard computes the same figures from the same views in SQL
// (dashboards/dora.go); a test there holds the two together.
type Dora struct {
	ch Querier
}

// NewDora reads through ch.
func NewDora(ch Querier) *Dora { return &Dora{ch: ch} }

const (
	defaultDoraWeeks = 12
	defaultDoraEnv   = "production"
	oneWeek          = 7 * 24 * time.Hour
	// slowestNotable is how many of the slowest lead times a report names.
	slowestNotable = 5
)

// doraFilter is the WHERE every query shares: env, service twice, team
// twice, then the time range. The views filter nothing themselves, and 18.16
// does not push this WHERE into them: each query folds the whole history,
// which is also what keeps lead time's "first production deploy" right.
const doraFilter = `env = ? AND (? = '' OR service = ?) AND (? = '' OR team = ?)`

// doraDeployWeeks counts the deploys of each week.
const doraDeployWeeks = `SELECT week_start, count(), sum(reached_production),
	uniqExactIf(day, reached_production = 1), sum(failure)
FROM dora_deploys
WHERE ` + doraFilter + ` AND finished_at >= ? AND finished_at <= ?
GROUP BY week_start`

// The quantiles are computed here rather than with ClickHouse's quantile
// functions: quantileExact does not interpolate, and quantile samples
// beyond 8192 values. Go interpolates as PERCENTILE_CONT does (Four Keys'
// BigQuery), exactly at any count.
const doraLeadTimes = `SELECT week_start, deploy_id, lead_time_s
FROM dora_lead_times
WHERE ` + doraFilter + ` AND finished_at >= ? AND finished_at <= ?`

const doraRestores = `SELECT week_start, restore_s
FROM dora_restores
WHERE ` + doraFilter + ` AND resolved_at >= ? AND resolved_at <= ?`

const doraIncidentWeeks = `SELECT week_start, count()
FROM dora_incidents
WHERE ` + doraFilter + ` AND opened_at >= ? AND opened_at <= ?
GROUP BY week_start`

const doraNotable = `SELECT deploy_id, service, env, team, version, status, finished_at,
	rolled_back, bad_verdict, incident, failure, incident_id, verdict_status, verdict_reason, url
FROM dora_deploys
WHERE ` + doraFilter + ` AND reached_production = 1 AND finished_at >= ? AND finished_at <= ?`

// Report returns the four keys of each of f.Weeks weeks (Monday to Sunday,
// UTC) ending with the week of f.Now, and the notable deploys of the
// newest two of them.
func (d *Dora) Report(ctx context.Context, f schema.DoraFilter) (schema.DoraReport, error) {
	now := f.Now.UTC()
	if f.Now.IsZero() {
		now = time.Now().UTC()
	}
	n := f.Weeks
	if n <= 0 {
		n = defaultDoraWeeks
	}
	env := f.Env
	if env == "" {
		env = defaultDoraEnv
	}
	newest := monday(now)
	from := newest.Add(-time.Duration(n-1) * oneWeek)
	notableFrom := from
	if n > 1 {
		notableFrom = newest.Add(-oneWeek)
	}
	report := schema.DoraReport{Service: f.Service, Env: env, Team: f.Team, Weeks: make([]schema.DoraWeek, n),
		Notable: []schema.NotableDeploy{}, NotableFrom: notableFrom}
	byWeek := make(map[string]*schema.DoraWeek, n)
	for i := range report.Weeks {
		start := from.Add(time.Duration(i) * oneWeek)
		report.Weeks[i].WeekStart = start
		byWeek[dateKey(start)] = &report.Weeks[i]
	}
	args := func(since time.Time) []any {
		return []any{env, f.Service, f.Service, f.Team, f.Team, since, now}
	}

	// Deploys, from MonthlyWeeks−1 weeks earlier for the frequency band.
	production := make(map[string]int)
	rows, err := d.ch.Query(ctx, doraDeployWeeks, args(from.Add(-(schema.MonthlyWeeks-1)*oneWeek))...)
	if err != nil {
		return schema.DoraReport{}, fmt.Errorf("cannot count the deploys of each week: %w", err)
	}
	err = scanEach(rows, func(scan func(...any) error) error {
		var (
			start                     time.Time
			all, prod, days, failures uint64
		)
		if err := scan(&start, &all, &prod, &days, &failures); err != nil {
			return err
		}
		production[dateKey(start)] = int(prod)
		if w := byWeek[dateKey(start)]; w != nil {
			w.Deploys, w.DeployFrequency, w.DeployDays, w.Failures = int(all), int(prod), int(days), int(failures)
		}
		return nil
	})
	if err != nil {
		return schema.DoraReport{}, fmt.Errorf("cannot read the deploys of each week: %w", err)
	}

	// Lead times, per commit; each deploy's longest for the notable ones.
	leads := make(map[string][]float64, n)
	deployLead := make(map[string]float64)
	rows, err = d.ch.Query(ctx, doraLeadTimes, args(from)...)
	if err != nil {
		return schema.DoraReport{}, fmt.Errorf("cannot read lead times: %w", err)
	}
	err = scanEach(rows, func(scan func(...any) error) error {
		var (
			start    time.Time
			deployID string
			lead     int64
		)
		if err := scan(&start, &deployID, &lead); err != nil {
			return err
		}
		k := dateKey(start)
		leads[k] = append(leads[k], float64(lead))
		if l, ok := deployLead[deployID]; !ok || float64(lead) > l {
			deployLead[deployID] = float64(lead)
		}
		return nil
	})
	if err != nil {
		return schema.DoraReport{}, fmt.Errorf("cannot read lead times: %w", err)
	}

	restores := make(map[string][]float64, n)
	rows, err = d.ch.Query(ctx, doraRestores, args(from)...)
	if err != nil {
		return schema.DoraReport{}, fmt.Errorf("cannot read times to restore: %w", err)
	}
	err = scanEach(rows, func(scan func(...any) error) error {
		var (
			start time.Time
			s     int64
		)
		if err := scan(&start, &s); err != nil {
			return err
		}
		restores[dateKey(start)] = append(restores[dateKey(start)], float64(s))
		return nil
	})
	if err != nil {
		return schema.DoraReport{}, fmt.Errorf("cannot read times to restore: %w", err)
	}

	rows, err = d.ch.Query(ctx, doraIncidentWeeks, args(from)...)
	if err != nil {
		return schema.DoraReport{}, fmt.Errorf("cannot count the incidents of each week: %w", err)
	}
	err = scanEach(rows, func(scan func(...any) error) error {
		var (
			start time.Time
			count uint64
		)
		if err := scan(&start, &count); err != nil {
			return err
		}
		if w := byWeek[dateKey(start)]; w != nil {
			w.Incidents = int(count)
		}
		return nil
	})
	if err != nil {
		return schema.DoraReport{}, fmt.Errorf("cannot count the incidents of each week: %w", err)
	}

	for i := range report.Weeks {
		w := &report.Weeks[i]
		k := dateKey(w.WeekStart)
		l := leads[k]
		w.Commits = len(l)
		w.LeadTimeS = quantiles(l)
		w.MTTRS = quantiles(restores[k])
		if w.DeployFrequency > 0 {
			r := float64(w.Failures) / float64(w.DeployFrequency)
			w.ChangeFailureRate = &r
		}
		recent := 0
		for j := range schema.MonthlyWeeks {
			recent += production[dateKey(w.WeekStart.Add(-time.Duration(j)*oneWeek))]
		}
		w.Bands = schema.DoraBands{
			DeployFrequency:   schema.DeployFrequencyBand(w.DeployFrequency, recent),
			LeadTime:          schema.LeadTimeBand(w.LeadTimeS.P50),
			ChangeFailureRate: schema.ChangeFailureRateBand(w.ChangeFailureRate),
			MTTR:              schema.TimeToRestoreBand(w.MTTRS.P50),
		}
	}

	if report.Notable, err = d.notable(ctx, args(notableFrom), deployLead); err != nil {
		return schema.DoraReport{}, err
	}
	return report, nil
}

// notable returns the production deploys since args' start that failed
// (rolled back, bad verdict, linked incident) or are among the
// slowestNotable longest lead times, newest first.
func (d *Dora) notable(ctx context.Context, args []any, deployLead map[string]float64) ([]schema.NotableDeploy, error) {
	rows, err := d.ch.Query(ctx, doraNotable, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot read the notable deploys: %w", err)
	}
	var all []schema.NotableDeploy
	err = scanEach(rows, func(scan func(...any) error) error {
		var (
			nd                                       schema.NotableDeploy
			rolledBack, badVerdict, incident, failed uint8
		)
		if err := scan(&nd.DeployID, &nd.Service, &nd.Env, &nd.Team, &nd.Version, &nd.Status, &nd.FinishedAt,
			&rolledBack, &badVerdict, &incident, &failed, &nd.IncidentID, &nd.VerdictStatus, &nd.VerdictReason, &nd.URL); err != nil {
			return err
		}
		nd.FinishedAt = nd.FinishedAt.UTC()
		nd.Reasons = []string{}
		if failed == 1 {
			for _, r := range []struct {
				set  uint8
				name string
			}{{rolledBack, "rolled_back"}, {badVerdict, "bad_verdict"}, {incident, "incident"}} {
				if r.set == 1 {
					nd.Reasons = append(nd.Reasons, r.name)
				}
			}
		}
		if l, ok := deployLead[nd.DeployID]; ok {
			nd.LeadTimeS = &l
		}
		all = append(all, nd)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read the notable deploys: %w", err)
	}

	// The slowest: longest lead time first, the newest of equal ones.
	slow := slices.Clone(all)
	slow = slices.DeleteFunc(slow, func(nd schema.NotableDeploy) bool { return nd.LeadTimeS == nil })
	slices.SortFunc(slow, func(a, b schema.NotableDeploy) int {
		if c := cmp.Compare(*b.LeadTimeS, *a.LeadTimeS); c != 0 {
			return c
		}
		return b.FinishedAt.Compare(a.FinishedAt)
	})
	slowest := make(map[string]bool, slowestNotable)
	for _, nd := range slow[:min(len(slow), slowestNotable)] {
		slowest[nd.DeployID] = true
	}

	out := []schema.NotableDeploy{}
	for _, nd := range all {
		if slowest[nd.DeployID] {
			nd.Reasons = append(nd.Reasons, "slow_lead_time")
		}
		if len(nd.Reasons) > 0 {
			out = append(out, nd)
		}
	}
	slices.SortFunc(out, func(a, b schema.NotableDeploy) int {
		if c := b.FinishedAt.Compare(a.FinishedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.DeployID, b.DeployID)
	})
	return out, nil
}

// scanEach calls row for each row, then closes rows.
func scanEach(rows driver.Rows, row func(scan func(...any) error) error) error {
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// quantiles returns the median and 90th percentile of values, interpolated
// between the two nearest ranks (PERCENTILE_CONT); null without values.
func quantiles(values []float64) schema.Quantiles {
	if len(values) == 0 {
		return schema.Quantiles{}
	}
	s := slices.Clone(values)
	slices.Sort(s)
	at := func(q float64) *float64 {
		pos := q * float64(len(s)-1)
		lo := int(math.Floor(pos))
		v := s[lo]
		if lo+1 < len(s) {
			v += (pos - float64(lo)) * (s[lo+1] - s[lo])
		}
		return &v
	}
	return schema.Quantiles{P50: at(0.5), P90: at(0.9)}
}

// monday returns the start of t's week: Monday 00:00 UTC.
func monday(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return day.AddDate(0, 0, -(int(day.Weekday())+6)%7)
}

// dateKey is how weeks are matched: ClickHouse Dates come back as midnight
// in some zone, and only the calendar date is meant.
func dateKey(t time.Time) string { return t.Format(time.DateOnly) }
