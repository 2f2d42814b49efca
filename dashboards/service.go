package dashboards

import (
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The queries read the tables of the datasource's default database (its
// "Default database" setting): no database name is written into them.
//
// Every query runs on ClickHouse 18.16 and on current servers: time buckets
// are intDiv(toUInt32(t), $__interval_s) * $__interval_s ($__timeInterval
// needs toStartOfInterval, which 18.16 lacks), tables whose copies merge away
// later are folded (any() per key, argMax per deploy) where FINAL would be
// slower, and columns are renamed (d_*, v_*, r_*) inside subqueries because a
// ClickHouse alias is visible in the whole SELECT.

// serviceFilter selects one service in one environment (single-value variables).
const serviceFilter = `service = ${service:singlequote} AND env = ${env:singlequote}`

// serviceMinutes are the service's metrics_1m rows in the time range with
// the rollup columns cols (each as r_<col>), their copies folded away: a copy
// (a redelivered message) has the same key, source_id included, and the same
// values, so any() of a group is what FINAL would keep. On 18.16 FINAL merges
// every part of the range in one thread (about 0.5 s for 30 days of one
// service among 100); the GROUP BY runs in parallel, and reads only cols.
func serviceMinutes(cols ...string) string {
	var b strings.Builder
	b.WriteString("(\n    SELECT\n        minute,\n        version,\n        source_id")
	for _, c := range cols {
		b.WriteString(",\n        any(" + c + ") AS r_" + c)
	}
	b.WriteString("\n    FROM metrics_1m\n    WHERE " + serviceFilter + " AND $__timeFilter(minute)\n    GROUP BY minute, version, source_id\n)")
	return b.String()
}

// minuteBucket is a metrics_1m minute rounded down to the panel's interval.
const minuteBucket = `toDateTime(intDiv(toUInt32(minute), $__interval_s) * $__interval_s)`

const (
	sqlEnvs = `SELECT DISTINCT env FROM deploy_changes ORDER BY env`

	// Services with deploys, and services that reported traffic in the last day.
	sqlServices = `SELECT DISTINCT service
FROM
(
    SELECT service FROM deploy_changes WHERE env = ${env:singlequote}
    UNION ALL
    SELECT service FROM metrics_1m WHERE env = ${env:singlequote} AND minute >= now() - INTERVAL 1 DAY
)
ORDER BY service`
)

// The metrics panels' queries.
var (
	sqlRequestRate = `SELECT
    ` + minuteBucket + ` AS time,
    sum(r_requests) / $__interval_s AS requests_per_s
FROM ` + serviceMinutes("requests") + `
GROUP BY time
ORDER BY time`

	sqlErrorRate = `SELECT
    ` + minuteBucket + ` AS time,
    if(sum(r_requests) = 0, 0, sum(r_errors) / sum(r_requests)) AS error_rate
FROM ` + serviceMinutes("requests", "errors") + `
GROUP BY time
ORDER BY time`

	// The rollup keeps each quantile as a request-weighted sum: their ratio is
	// the request-weighted mean of the quantiles the instances reported.
	sqlLatency = `SELECT
    ` + minuteBucket + ` AS time,
    sum(r_latency_p50_wsum) / nullIf(sum(r_latency_p50_weight), 0) AS p50,
    sum(r_latency_p95_wsum) / nullIf(sum(r_latency_p95_weight), 0) AS p95,
    sum(r_latency_p99_wsum) / nullIf(sum(r_latency_p99_weight), 0) AS p99
FROM ` + serviceMinutes("latency_p50_wsum", "latency_p50_weight", "latency_p95_wsum", "latency_p95_weight",
		"latency_p99_wsum", "latency_p99_weight") + `
GROUP BY time
ORDER BY time`

	// One series per version: during a canary the new version and the old
	// one report in the same minutes, side by side.
	sqlVersionLatency = `SELECT
    ` + minuteBucket + ` AS time,
    version,
    sum(r_latency_p95_wsum) / nullIf(sum(r_latency_p95_weight), 0) AS p95
FROM ` + serviceMinutes("latency_p95_wsum", "latency_p95_weight") + `
GROUP BY time, version
ORDER BY time`

	sqlVersionErrors = `SELECT
    ` + minuteBucket + ` AS time,
    version,
    if(sum(r_requests) = 0, 0, sum(r_errors) / sum(r_requests)) AS error_rate
FROM ` + serviceMinutes("requests", "errors") + `
GROUP BY time, version
ORDER BY time`
)

const (
	// serviceDeploys folds the service's deploy changes in the time range into
	// deploys, as the deploys view does (the latest change by (event_time,
	// status_rank) wins), reading only this service's part of the table.
	serviceDeploys = `(
    SELECT
        deploy_id,
        argMax(version, (event_time, status_rank))  AS d_version,
        argMax(status, (event_time, status_rank))   AS d_status,
        argMax(strategy, (event_time, status_rank)) AS d_strategy,
        min(ifNull(started_at, event_time))         AS d_started
    FROM deploy_changes
    WHERE ` + serviceFilter + ` AND $__timeFilter(event_time)
    GROUP BY deploy_id
)`

	// serviceVerdicts is the latest verdict of each deploy in the time range,
	// as latest_verdicts folds them (a final verdict wins, then the newest),
	// without its body. They are picked by the deploys' ids, not by when they
	// were evaluated: a deploy listed for its rollback in the range was judged
	// before the range began. deploy_verdicts is keyed by deploy_id, so the
	// IN reads only those deploys' rows.
	serviceVerdicts = `(
    SELECT
        deploy_id,
        argMax(status, (final, evaluated_at)) AS v_status,
        argMax(score, (final, evaluated_at))  AS v_score,
        argMax(final, (final, evaluated_at))  AS v_final,
        argMax(reason, (final, evaluated_at)) AS v_reason
    FROM deploy_verdicts
    WHERE deploy_id IN (SELECT deploy_id FROM deploy_changes WHERE ` + serviceFilter + ` AND $__timeFilter(event_time))
        AND comparison != 'recovery_vs_baseline' AND ` + serviceFilter + `
    GROUP BY deploy_id
)`

	// A deploy without a verdict (a failed one, or one not judged yet) has
	// no match in the LEFT JOIN, whose defaults (score 0, final 0) would read
	// as a bad score and an interim verdict: it gets NULL and '' instead.
	sqlRecentDeploys = `SELECT
    d_started AS started,
    deploy_id,
    d_version AS version,
    d_status AS status,
    if(d_strategy = '', 'rolling', d_strategy) AS strategy,
    if(v_status = '', 'none', v_status) AS verdict,
    if(v_status = '', NULL, v_score) AS score,
    multiIf(v_status = '', '', v_final = 1, 'final', 'interim') AS evaluation,
    v_reason AS reason
FROM ` + serviceDeploys + `
ALL LEFT JOIN ` + serviceVerdicts + ` USING deploy_id
ORDER BY started DESC
LIMIT 200`

	// deployMarks are the service's deploys as annotations with their verdict
	// class; one annotation query per class gives each its colour.
	deployMarks = `SELECT
    d_started AS time,
    concat(d_version, ' ', d_status, if(v_status = '', ' (no verdict yet)',
        concat(': ', v_status, ' ', toString(v_score), '/100, ', v_reason))) AS text,
    multiIf(v_status = 'bad' OR d_status IN ('failed', 'rolled_back'), 'bad',
        v_status IN ('healthy', 'marginal'), v_status, 'unjudged') AS tags
FROM ` + serviceDeploys + `
ALL LEFT JOIN ` + serviceVerdicts + ` USING deploy_id`

	// serviceComparisons is each deploy's latest verdict that judged the
	// deploy itself (canary against baseline, or before against after; not
	// a recovery after its rollback), with its metric columns and body. The
	// service's condition is the PREWHERE: 18.16 would move deploy_id != ''
	// there instead and read every verdict's body (15 times slower).
	serviceComparisons = `(
    SELECT
        deploy_id,
        argMax(evaluated_at, (final, evaluated_at))     AS c_evaluated,
        argMax(version, (final, evaluated_at))          AS c_version,
        argMax(previous_version, (final, evaluated_at)) AS c_previous,
        argMax(comparison, (final, evaluated_at))       AS c_comparison,
        argMax(status, (final, evaluated_at))           AS c_status,
        argMax(metric_names, (final, evaluated_at))     AS c_names,
        argMax(metric_classes, (final, evaluated_at))   AS c_classes,
        argMax(metric_ratios, (final, evaluated_at))    AS c_ratios,
        argMax(body, (final, evaluated_at))             AS c_body
    FROM deploy_verdicts
    PREWHERE ` + serviceFilter + `
    WHERE deploy_id != '' AND $__timeFilter(evaluated_at) AND comparison IN ('canary_vs_baseline', 'before_vs_after')
    GROUP BY deploy_id
)`

	sqlMarksHealthy  = `SELECT time, text, tags FROM (` + deployMarks + `) WHERE tags = 'healthy' ORDER BY time`
	sqlMarksMarginal = `SELECT time, text, tags FROM (` + deployMarks + `) WHERE tags = 'marginal' ORDER BY time`
	sqlMarksBad      = `SELECT time, text, tags FROM (` + deployMarks + `) WHERE tags = 'bad' ORDER BY time`
	sqlMarksUnjudged = `SELECT time, text, tags FROM (` + deployMarks + `) WHERE tags = 'unjudged' ORDER BY time`
)

func serviceImpact() *dashboard.DashboardBuilder {
	mark := func(name, color, sql string) *dashboard.AnnotationQueryBuilder {
		return dashboard.NewAnnotationQueryBuilder().
			Name(name).
			Datasource(*clickhouseRef()).
			Enable(true).
			IconColor(color).
			Target(sqlQuery("deploys", FormatTable, sql))
	}
	return newDashboard(ServiceImpactUID, "deploywatch: service deploy impact",
		"Traffic, errors and latency of one service with every deploy marked by its verdict; "+
			"the recent deploys with verdict, score and reason; new and old versions side by side, canary against baseline.",
		"now-6h").
		WithVariable(clickhouseVariable()).
		WithVariable(sqlVariable("env", "Environment", sqlEnvs).Current(option("production", "production"))).
		WithVariable(sqlVariable("service", "Service", sqlServices)).
		Annotation(mark("Deploys: healthy", "green", sqlMarksHealthy)).
		Annotation(mark("Deploys: marginal", "yellow", sqlMarksMarginal)).
		Annotation(mark("Deploys: bad, failed or rolled back", "red", sqlMarksBad)).
		Annotation(mark("Deploys: no verdict", "blue", sqlMarksUnjudged)).
		WithPanel(timeseriesPanel("Request rate", "reqps", sqlRequestRate).
			Description("Requests per second, all versions and instances.")).
		WithPanel(timeseriesPanel("Error rate", "percentunit", sqlErrorRate).
			Description("Failed requests ÷ requests.")).
		WithPanel(timeseriesPanel("Latency p50 / p95 / p99", "ms", sqlLatency).
			Description("Request-weighted mean of the quantiles the instances reported.").Span(24)).
		WithPanel(timeseriesPanel("Latency p95 by version", "ms", sqlVersionLatency).
			Description("One series per version: during a canary, the new version against the old one.")).
		WithPanel(timeseriesPanel("Error rate by version", "percentunit", sqlVersionErrors).
			Description("One series per version: during a canary, the new version against the old one.")).
		WithPanel(table.NewPanelBuilder().
			Title("Recent deploys").
			Description("Deploys in the time range, newest first, with the impact analysis' latest verdict.").
			Datasource(*clickhouseRef()).
			Targets(targets(sqlQuery("A", FormatTable, sqlRecentDeploys))).
			Height(10).Span(24).
			SortBy([]cog.Builder[common.TableSortByFieldState]{sortDesc("started")}).
			OverrideByName("score", []dashboard.DynamicConfigValue{
				{Id: "thresholds", Value: mustBuild(thresholds("red", step{50, "orange"}, step{80, "green"}))},
				{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background"}},
			})).
		WithPanel(comparisonTable())
}

// comparedMetrics are the metrics the comparison table sets side by side,
// with the unit of their figures.
var comparedMetrics = []struct{ name, unit string }{
	{"error_rate", "percentunit"},
	{"latency_p95", "ms"},
	{"latency_p99", "ms"},
	{"request_rate", "reqps"},
}

// judged is whether the verdict judged metric: it lists it, and with a
// class other than nodata, whose figures (0) and ratio (1) the judge writes
// for want of samples and are not measurements.
func judged(metric string) string {
	i := `indexOf(c_names, '` + metric + `')`
	return `(` + i + ` != 0 AND c_classes[` + i + `] != 'nodata')`
}

// metricFigure is the baseline's or the candidate's figure ("baseline" or
// "candidate": the median, or the pooled rate for error_rate) of metric in
// the verdict's body, NULL when the verdict did not judge it. The columns of
// deploy_verdicts keep each metric's class, ratio and p-value but not the
// two figures; 18.16 has no JSONExtract, so the figure is read with
// visitParamExtract* from the metric's object on: the body is the verdict as
// published (encoding/json, compact, fields in schema.MetricVerdict's order:
// name first, then baseline and candidate before any other object).
func metricFigure(metric, side string) string {
	at := `position(c_body, '{"name":"` + metric + `"')`
	return `if(NOT ` + judged(metric) + ` OR ` + at + ` = 0, NULL, ` +
		`visitParamExtractFloat(visitParamExtractRaw(substring(c_body, ` + at + `), '` + side + `'), 'value'))`
}

// sqlComparisons sets each recent deploy's baseline and candidate side by
// side: the comparison, and per metric the two figures and their ratio
// (candidate ÷ baseline), NULL for a metric not judged, with the metrics the
// verdict found harmful.
var sqlComparisons = func() string {
	var b strings.Builder
	b.WriteString(`SELECT
    c_evaluated AS evaluated,
    deploy_id,
    c_version AS version,
    c_previous AS baseline_version,
    c_comparison AS comparison,
    c_status AS verdict,
    arrayStringConcat(arrayFilter(x -> x != '', arrayMap((n, c) -> if(c IN ('high', 'low'), concat(n, ' ', c), ''),
        c_names, c_classes)), ', ') AS harmful`)
	for _, m := range comparedMetrics {
		ratio := `if(` + judged(m.name) + `, c_ratios[indexOf(c_names, '` + m.name + `')], NULL)`
		b.WriteString(",\n    " + metricFigure(m.name, "baseline") + " AS " + m.name + "_baseline")
		b.WriteString(",\n    " + metricFigure(m.name, "candidate") + " AS " + m.name + "_candidate")
		b.WriteString(",\n    " + ratio + " AS " + m.name + "_ratio")
	}
	b.WriteString("\nFROM " + serviceComparisons + "\nORDER BY evaluated DESC\nLIMIT 100")
	return b.String()
}()

// comparisonTable is the canary-against-baseline table, each metric's
// figures in their unit and its ratio as a factor.
func comparisonTable() *table.PanelBuilder {
	p := table.NewPanelBuilder().
		Title("Canary against baseline").
		Description("Each recent deploy's verdict with its two sides next to each other: the candidate " +
			"(the new version: the canary, or the minutes after the deploy) against the baseline (the old version " +
			"over the same minutes, or the minutes before the deploy), per metric the baseline's and the candidate's " +
			"figure (median, or pooled error rate) and their ratio, empty for a metric it had too few samples to judge; " +
			"harmful lists the metrics judged high or low.").
		Datasource(*clickhouseRef()).
		Targets(targets(sqlQuery("A", FormatTable, sqlComparisons))).
		Height(10).Span(24).
		SortBy([]cog.Builder[common.TableSortByFieldState]{sortDesc("evaluated")})
	for _, m := range comparedMetrics {
		for _, side := range []string{"baseline", "candidate"} {
			p = p.OverrideByName(m.name+"_"+side, []dashboard.DynamicConfigValue{{Id: "unit", Value: m.unit}})
		}
		p = p.OverrideByName(m.name+"_ratio", []dashboard.DynamicConfigValue{
			{Id: "unit", Value: "suffix:×"}, {Id: "decimals", Value: 2}})
	}
	return p
}

// timeseriesPanel is a line chart of one ClickHouse time-series query.
func timeseriesPanel(title, unit, sql string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Datasource(*clickhouseRef()).
		Targets(targets(sqlQuery("A", FormatTimeSeries, sql))).
		Unit(unit).
		Min(0).
		Interval("1m"). // the rollup's resolution: no finer buckets
		Height(8).Span(12).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending)).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true))
}
