package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/barchart"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// fleetFilter selects one environment and the services picked (all for All).
const fleetFilter = `env = ${env:singlequote} AND $__conditionalAll(service IN (${service:singlequote}), $service)`

const (
	sqlFleetServices = `SELECT DISTINCT service FROM deploy_changes WHERE env = ${env:singlequote} ORDER BY service`

	// fleetDeploys folds the deploy changes in the time range into deploys.
	fleetDeploys = `(
    SELECT
        deploy_id,
        any(service)                        AS d_service,
        min(ifNull(started_at, event_time)) AS d_started
    FROM deploy_changes
    WHERE ` + fleetFilter + ` AND $__timeFilter(event_time)
    GROUP BY deploy_id
)`

	// fleetVerdicts is each deploy's latest verdict (final first, then newest).
	fleetVerdicts = `(
    SELECT
        deploy_id,
        any(service)                           AS v_service,
        argMax(version, (final, evaluated_at)) AS v_version,
        argMax(status, (final, evaluated_at))  AS v_status,
        argMax(score, (final, evaluated_at))   AS v_score,
        argMax(reason, (final, evaluated_at))  AS v_reason,
        max(evaluated_at)                      AS v_evaluated
    FROM deploy_verdicts
    WHERE deploy_id != '' AND comparison != 'recovery_vs_baseline' AND ` + fleetFilter + ` AND $__timeFilter(evaluated_at)
    GROUP BY deploy_id
)`

	sqlDeploysPerDay = `SELECT
    toStartOfDay(d_started) AS time,
    d_service AS service,
    count() AS deploys
FROM ` + fleetDeploys + `
GROUP BY time, service
ORDER BY time`

	sqlDeployCount = `SELECT uniqExact(deploy_id) AS deploys
FROM deploy_changes
WHERE ` + fleetFilter + ` AND $__timeFilter(event_time)`

	sqlRollbackCount = `SELECT uniqExact(deploy_id) AS rollbacks
FROM deploy_changes
WHERE status = 'rolled_back' AND ` + fleetFilter + ` AND $__timeFilter(event_time)`

	sqlBadCount = `SELECT countIf(v_status = 'bad') AS bad_deploys
FROM ` + fleetVerdicts

	sqlRollbacksPerDay = `SELECT
    toStartOfDay(event_time) AS time,
    service,
    uniqExact(deploy_id) AS rollbacks
FROM deploy_changes
WHERE status = 'rolled_back' AND ` + fleetFilter + ` AND $__timeFilter(event_time)
GROUP BY time, service
ORDER BY time`

	sqlVerdictMix = `SELECT
    v_status AS verdict,
    count() AS deploys
FROM ` + fleetVerdicts + `
GROUP BY verdict
ORDER BY deploys DESC`

	// openIncidents are the incidents whose resolution has not come, however
	// long ago they opened: no time filter.
	openIncidents = `(
    SELECT
        incident_id,
        any(service)                        AS i_service,
        minIf(time, status = 'opened')      AS i_opened,
        max(status = 'resolved')            AS i_resolved,
        anyIf(title, status = 'opened')     AS i_title,
        anyIf(deploy_id, status = 'opened') AS i_deploy
    FROM incident_changes
    WHERE ` + fleetFilter + `
    GROUP BY incident_id
)`

	sqlOpenIncidentCount = `SELECT countIf(i_resolved = 0) AS open_incidents FROM ` + openIncidents

	sqlOpenIncidents = `SELECT
    i_opened AS opened,
    incident_id,
    i_service AS service,
    i_title AS title,
    i_deploy AS deploy_id,
    dateDiff('minute', i_opened, now()) AS open_minutes
FROM ` + openIncidents + `
WHERE i_resolved = 0
ORDER BY opened DESC
LIMIT 100`

	sqlWorstRegressions = `SELECT
    v_evaluated AS evaluated,
    deploy_id,
    v_service AS service,
    v_version AS version,
    v_status AS verdict,
    v_score AS score,
    v_reason AS reason
FROM ` + fleetVerdicts + `
WHERE v_status IN ('bad', 'marginal')
ORDER BY score ASC, evaluated DESC
LIMIT 20`
)

func fleet() *dashboard.DashboardBuilder {
	return newDashboard(FleetUID, "deploywatch: fleet deploys",
		"Deploys across services: how many a day, how they were judged, rollbacks, "+
			"the incidents still open and the worst recent regressions.",
		"now-7d").
		WithVariable(clickhouseVariable()).
		WithVariable(sqlVariable("env", "Environment", sqlEnvs).Current(option("production", "production"))).
		WithVariable(multiSQLVariable("service", "Service", sqlFleetServices)).
		WithPanel(statPanel("Deploys", "deploys in the time range", sqlDeployCount, thresholds("blue"))).
		WithPanel(statPanel("Bad verdicts", "deploys whose latest verdict is bad", sqlBadCount,
			thresholds("green", step{1, "red"}))).
		WithPanel(statPanel("Rollbacks", "deploys rolled back in the time range", sqlRollbackCount,
			thresholds("green", step{1, "orange"}))).
		WithPanel(statPanel("Open incidents", "incidents not resolved yet, whenever they opened", sqlOpenIncidentCount,
			thresholds("green", step{1, "red"}))).
		WithPanel(barsPanel("Deploys per day by service", sqlDeploysPerDay).Span(16)).
		WithPanel(barchart.NewPanelBuilder().
			Title("Verdict mix").
			Description("Deploys by their latest verdict.").
			Datasource(*clickhouseRef()).
			Targets(targets(sqlQuery("A", FormatTable, sqlVerdictMix))).
			XField("verdict").
			Height(8).Span(8).
			Legend(common.NewVizLegendOptionsBuilder().ShowLegend(false))).
		WithPanel(barsPanel("Rollbacks per day by service", sqlRollbacksPerDay).Span(24)).
		WithPanel(table.NewPanelBuilder().
			Title("Incidents still open").
			Description("Every incident not resolved yet, whenever it opened, newest first.").
			Datasource(*clickhouseRef()).
			Targets(targets(sqlQuery("A", FormatTable, sqlOpenIncidents))).
			Height(8).Span(24)).
		WithPanel(table.NewPanelBuilder().
			Title("Worst recent regressions").
			Description("Bad and marginal verdicts in the time range, lowest score first.").
			Datasource(*clickhouseRef()).
			Targets(targets(sqlQuery("A", FormatTable, sqlWorstRegressions))).
			Height(10).Span(24))
}

// statPanel is one number of a table query's single row.
func statPanel(title, description, sql string, th *dashboard.ThresholdsConfigBuilder) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(*clickhouseRef()).
		Targets(targets(sqlQuery("A", FormatTable, sql))).
		Height(4).Span(6).
		Thresholds(th).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}))
}

// barsPanel is a stacked bar chart over time of a query with one series per
// value of its string column.
func barsPanel(title, sql string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Datasource(*clickhouseRef()).
		Targets(targets(sqlQuery("A", FormatTimeSeries, sql))).
		Interval("1d").
		Height(8).Span(12).
		DrawStyle(common.GraphDrawStyleBars).
		BarAlignment(common.BarAlignmentAfter). // a day's bar spans its day, not centred on midnight
		FillOpacity(80).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		Decimals(0).
		Min(0).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}
