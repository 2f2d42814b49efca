package dashboards

import (
	"fmt"
	"math"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/deploywatch/deploywatch/schema"
)

// The delivery dashboard reads the DORA views of migration 0009
// (dora_deploys, dora_lead_times, dora_restores), where the definitions live,
// and computes what store.Dora computes from them, the same way: the README's
// "Delivery performance (DORA)" section says it in words. Weeks run Monday to
// Sunday, UTC (toMonday), and the panels' thresholds are schema's DORA bands.

// doraFilter selects the production environment, services and teams picked.
const doraFilter = `env = ${env:singlequote}
    AND $__conditionalAll(service IN (${service:singlequote}), $service)
    AND $__conditionalAll(team IN (${team:singlequote}), $team)`

// weeks in the time range, at least one: the divisor of per-week averages.
const rangeWeeks = `greatest(dateDiff('second', $__fromTime, $__toTime) / 604800, 1)`

// fromMonday is the weekly panels' time filter on col: from the Monday
// (00:00 UTC) of the week the range starts in, so the first bar counts its
// whole week as the API and the report do, not the days after the range's
// start. $__fromTime is a DateTime in the server's timezone: converted to
// UTC before toMonday.
func fromMonday(col string) string {
	return col + ` >= toDateTime(toMonday(toDateTime($__fromTime, 'UTC')), 'UTC') AND ` + col + ` <= $__toTime`
}

// weekTime is a week's bar: its Monday, 00:00 UTC whatever the server's
// timezone (toDateTime of a Date alone would take the server's midnight).
const weekTime = `toDateTime(week_start, 'UTC') AS time`

// percentile is the q-quantile of the sorted array expression sorted,
// interpolated between the two nearest ranks, exactly at any count, as
// store.Dora computes it (PERCENTILE_CONT), so the dashboard, the API and
// the report agree; NULL (the panel's "no data") for an empty array.
// quantileExact does not interpolate (1800 and 3600 s give 3600, not 2700),
// quantile samples beyond 8192 values, and both give 0 or nan for no rows.
func percentile(sorted string, q float64) string {
	pos := fmt.Sprintf("%v * (length(%s) - 1)", q, sorted)
	lo := fmt.Sprintf("%s[toUInt64(floor(%s)) + 1]", sorted, pos)
	hi := fmt.Sprintf("%s[least(toUInt64(floor(%s)) + 2, length(%s))]", sorted, pos, sorted)
	return fmt.Sprintf("if(empty(%s), NULL, %s + (%s - floor(%s)) * (%s - %s))", sorted, lo, pos, pos, hi, lo)
}

var (
	sqlTeams = `SELECT DISTINCT label_values[indexOf(label_keys, 'team')] AS team
FROM deploy_changes
WHERE env = ${env:singlequote} AND has(label_keys, 'team')
ORDER BY team`

	sqlDeployFrequency = `SELECT
    ` + weekTime + `,
    sum(reached_production) AS deploys,
    uniqExactIf(day, reached_production = 1) AS deploy_days
FROM dora_deploys
WHERE ` + doraFilter + ` AND ` + fromMonday("finished_at") + `
GROUP BY week_start
ORDER BY time`

	sqlLeadTime = weeklyMedianAndP90("dora_lead_times", "lead_time_s", "finished_at")

	sqlChangeFailureRate = `SELECT
    ` + weekTime + `,
    sum(failure) / nullIf(sum(reached_production), 0) AS change_failure_rate
FROM dora_deploys
WHERE ` + doraFilter + ` AND ` + fromMonday("finished_at") + `
GROUP BY week_start
ORDER BY time`

	sqlTimeToRestore = weeklyMedianAndP90("dora_restores", "restore_s", "resolved_at")

	sqlDeploysPerWeek = `SELECT sum(reached_production) / ` + rangeWeeks + ` AS deploys_per_week
FROM dora_deploys
WHERE ` + doraFilter + ` AND $__timeFilter(finished_at)`

	sqlLeadTimeMedian = `SELECT ` + percentile("l_sorted", 0.5) + ` AS median_lead_time
FROM
(
    SELECT arraySort(groupArray(lead_time_s)) AS l_sorted
    FROM dora_lead_times
    WHERE ` + doraFilter + ` AND $__timeFilter(finished_at)
)`

	sqlChangeFailureRateAll = `SELECT sum(failure) / nullIf(sum(reached_production), 0) AS change_failure_rate
FROM dora_deploys
WHERE ` + doraFilter + ` AND $__timeFilter(finished_at)`

	sqlTimeToRestoreMedian = `SELECT ` + percentile("r_sorted", 0.5) + ` AS median_time_to_restore
FROM
(
    SELECT arraySort(groupArray(restore_s)) AS r_sorted
    FROM dora_restores
    WHERE ` + doraFilter + ` AND $__timeFilter(resolved_at)
)`

	sqlFailedChanges = `SELECT
    finished_at AS finished,
    service,
    team,
    version,
    deploy_id,
    multiIf(rolled_back = 1, 'rolled back', bad_verdict = 1, 'bad verdict', 'incident') AS failure_kind,
    incident_id,
    verdict_reason
FROM dora_deploys
WHERE failure = 1 AND ` + doraFilter + ` AND $__timeFilter(finished_at)
ORDER BY finished DESC
LIMIT 100`
)

// weeklyMedianAndP90 is the median and 90th percentile of column of view per
// week, from the Monday of the range's first week (the weeks counted by
// timeColumn, the view's week_start), as store.Dora computes them.
func weeklyMedianAndP90(view, column, timeColumn string) string {
	return `SELECT
    ` + weekTime + `,
    ` + percentile("sorted", 0.5) + ` AS median,
    ` + percentile("sorted", 0.9) + ` AS p90
FROM
(
    SELECT week_start, arraySort(groupArray(` + column + `)) AS sorted
    FROM ` + view + `
    WHERE ` + doraFilter + ` AND ` + fromMonday(timeColumn) + `
    GROUP BY week_start
)
ORDER BY time`
}

// Band colours, best first.
const (
	eliteColor  = "dark-green"
	highColor   = "green"
	mediumColor = "orange"
	lowColor    = "red"
)

// Thresholds at the DORA bands (schema/dora_bands.go). Durations and the
// change failure rate are better lower; a value at a duration limit falls
// in the worse band, a rate at a rate limit in the better one.
func deployFrequencyBands() *dashboard.ThresholdsConfigBuilder {
	return thresholds(mediumColor, step{schema.HighDeploysPerWeek, highColor}, step{schema.EliteDeploysPerWeek, eliteColor})
}

func leadTimeBands() *dashboard.ThresholdsConfigBuilder {
	return thresholds(eliteColor, step{schema.EliteLeadTime.Seconds(), highColor},
		step{schema.HighLeadTime.Seconds(), mediumColor}, step{schema.MediumLeadTime.Seconds(), lowColor})
}

func timeToRestoreBands() *dashboard.ThresholdsConfigBuilder {
	return thresholds(eliteColor, step{schema.EliteTimeToRestore.Seconds(), highColor},
		step{schema.HighTimeToRestore.Seconds(), mediumColor}, step{schema.MediumTimeToRestore.Seconds(), lowColor})
}

func changeFailureRateBands() *dashboard.ThresholdsConfigBuilder {
	above := func(x float64) float64 { return math.Nextafter(x, 1) }
	return thresholds(eliteColor, step{above(schema.EliteChangeFailureRate), highColor},
		step{above(schema.HighChangeFailureRate), mediumColor}, step{above(schema.MediumChangeFailureRate), lowColor})
}

func delivery() *dashboard.DashboardBuilder {
	return newDashboard(DeliveryUID, "deploywatch: delivery performance (DORA)",
		"DORA's four keys week by week, against DORA's performance bands (dark green elite, green high, "+
			"orange medium, red low): deploy frequency, lead time for changes, change failure rate, time to restore. "+
			"Definitions: the README's \"Delivery performance (DORA)\" section.",
		// 11 whole weeks and the current one: weeks start on Monday.
		"now-11w/w").
		WeekStart("monday").
		WithVariable(clickhouseVariable()).
		WithVariable(sqlVariable("env", "Production environment", sqlEnvs).Current(option("production", "production"))).
		WithVariable(multiSQLVariable("team", "Team", sqlTeams)).
		WithVariable(multiSQLVariable("service", "Service", sqlFleetServices)).
		WithPanel(doraStat("Deploys per week", "Production deploys in the time range ÷ its weeks.",
			"short", sqlDeploysPerWeek, deployFrequencyBands())).
		WithPanel(doraStat("Lead time for changes (median)", "Commit → first production deploy, per commit.",
			"s", sqlLeadTimeMedian, leadTimeBands())).
		WithPanel(doraStat("Change failure rate", "Production deploys rolled back, judged bad or linked to an incident ÷ production deploys.",
			"percentunit", sqlChangeFailureRateAll, changeFailureRateBands())).
		WithPanel(doraStat("Time to restore (median)", "Incident opened → resolved, incidents resolved in the time range.",
			"s", sqlTimeToRestoreMedian, timeToRestoreBands())).
		WithPanel(weeklyPanel("Deploy frequency per week", "Production deploys each week, and the days with at least one. "+
			"Every week shown is whole: the first from its Monday, even when the time range starts later in it.",
			"short", sqlDeployFrequency, deployFrequencyBands()).Decimals(0)).
		WithPanel(weeklyPanel("Lead time for changes per week", "Median and p90 of the lead times of the commits that reached production that week.",
			"s", sqlLeadTime, leadTimeBands())).
		WithPanel(weeklyPanel("Change failure rate per week", "Failed production deploys ÷ production deploys, per week.",
			"percentunit", sqlChangeFailureRate, changeFailureRateBands())).
		WithPanel(weeklyPanel("Time to restore per week", "Median and p90 of opened → resolved, incidents resolved that week.",
			"s", sqlTimeToRestore, timeToRestoreBands())).
		WithPanel(table.NewPanelBuilder().
			Title("Failed changes").
			Description("The production deploys counted as failures, newest first, and why.").
			Datasource(*clickhouseRef()).
			Targets(targets(sqlQuery("A", FormatTable, sqlFailedChanges))).
			Height(10).Span(24))
}

// doraStat is one key over the whole time range, coloured by its band.
func doraStat(title, description, unit, sql string, bands *dashboard.ThresholdsConfigBuilder) *stat.PanelBuilder {
	return statPanel(title, description, sql, bands).Unit(unit).NoValue("no data")
}

// weeklyPanel is a key week by week, the bands drawn behind it, a bar
// from each Monday to the next.
func weeklyPanel(title, description, unit, sql string, bands *dashboard.ThresholdsConfigBuilder) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(*clickhouseRef()).
		Targets(targets(sqlQuery("A", FormatTimeSeries, sql))).
		Unit(unit).
		Min(0).
		Height(9).Span(12).
		DrawStyle(common.GraphDrawStyleBars).
		// A week's bar starts at its Monday and spans the week: centred on
		// Monday 00:00 (Grafana's default), the first bar would be cut in half
		// by the range's start and every bar would straddle two weeks.
		BarAlignment(common.BarAlignmentAfter).
		FillOpacity(70).
		Thresholds(bands).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashedAndArea)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}
