package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The pipeline dashboard reads deploywatch's own /metrics from Prometheus (or
// anything that speaks PromQL). Its latency histograms are Prometheus
// histograms (le buckets), so histogram_quantile works in Prometheus and in
// VictoriaMetrics alike.

// inst selects the deploywatch instances picked in $instance.
const inst = `instance=~"$instance"`

type promQuery struct{ expr, legend string }

func pipelineHealth() *dashboard.DashboardBuilder {
	return newDashboard(PipelineHealthUID, "deploywatch: pipeline health",
		"deploywatch's own metrics: what comes in, what waits in JetStream, how long ClickHouse inserts take, what fails.",
		"now-6h").
		WithVariable(dashboard.NewDatasourceVariableBuilder(prometheusVar).
			Label("Prometheus").
			Type(PrometheusPlugin).
			Current(option("deploywatch Prometheus", PrometheusDatasourceUID))).
		WithVariable(dashboard.NewQueryVariableBuilder("instance").
			Label("Instance").
			Datasource(*prometheusRef()).
			Query(dashboard.StringOrMap{String: ptr("label_values(deploywatch_eventlog_published_total, instance)")}).
			Definition("label_values(deploywatch_eventlog_published_total, instance)").
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Multi(true).IncludeAll(true).AllValue(".*").
			Current(option("All", "$__all"))).
		WithPanel(promPanel("HTTP requests by route", "reqps",
			promQuery{`sum by (route) (rate(deploywatch_http_requests_total{` + inst + `}[$__rate_interval]))`, "{{route}}"})).
		WithPanel(promPanel("Ingest rate", "short",
			promQuery{`sum(rate(deploywatch_ingest_samples_per_request_sum{` + inst + `}[$__rate_interval]))`, "samples/s via the API"},
			promQuery{`sum(rate(deploywatch_remote_write_samples_total{` + inst + `}[$__rate_interval]))`, "samples/s via remote_write"},
			promQuery{`sum(rate(deploywatch_eventlog_published_total{` + inst + `}[$__rate_interval]))`, "events/s published"},
			promQuery{`sum(rate(deploywatch_eventlog_duplicates_total{` + inst + `}[$__rate_interval]))`, "duplicates/s"})).
		WithPanel(promPanel("Consumer pending", "short",
			promQuery{`max by (stream) (deploywatch_sink_consumer_pending{` + inst + `})`, "{{stream}}"}).
			Description("Messages JetStream holds for the ClickHouse sink, per stream: growing means ClickHouse falls behind.")).
		WithPanel(promPanel("Sink throughput", "short",
			promQuery{`sum by (stream) (rate(deploywatch_sink_acked_messages_total{` + inst + `}[$__rate_interval]))`, "{{stream}} messages/s"},
			promQuery{`sum by (stream) (rate(deploywatch_sink_batch_rows_sum{` + inst + `}[$__rate_interval]))`, "{{stream}} rows/s"})).
		WithPanel(promPanel("ClickHouse insert latency", "s",
			promQuery{`sum by (stream) (rate(deploywatch_sink_insert_duration_seconds_sum{` + inst + `}[$__rate_interval])) / sum by (stream) (rate(deploywatch_sink_insert_duration_seconds_count{` + inst + `}[$__rate_interval]))`, "{{stream}} mean"},
			promQuery{`histogram_quantile(0.99, sum by (stream, le) (rate(deploywatch_sink_insert_duration_seconds_bucket{` + inst + `}[$__rate_interval])))`, "{{stream}} p99"}).
			Description("Mean and 99th percentile of one columnar insert into ClickHouse, per stream.")).
		WithPanel(promPanel("Publish and request latency", "s",
			promQuery{`sum(rate(deploywatch_eventlog_publish_duration_seconds_sum{` + inst + `}[$__rate_interval])) / sum(rate(deploywatch_eventlog_publish_duration_seconds_count{` + inst + `}[$__rate_interval]))`, "JetStream publish mean"},
			promQuery{`histogram_quantile(0.99, sum by (le) (rate(deploywatch_eventlog_publish_duration_seconds_bucket{` + inst + `}[$__rate_interval])))`, "JetStream publish p99"},
			promQuery{`histogram_quantile(0.99, sum by (route, le) (rate(deploywatch_http_request_duration_seconds_bucket{` + inst + `}[$__rate_interval])))`, "{{route}} p99"}).
			Description("Time until JetStream acknowledged a publish, and until the API answered, per route (99th percentile).")).
		WithPanel(promPanel("Errors", "short",
			promQuery{`sum by (stream) (rate(deploywatch_sink_insert_errors_total{` + inst + `}[$__rate_interval]))`, "{{stream}} insert errors/s"},
			promQuery{`sum by (stream) (rate(deploywatch_sink_dead_letters_total{` + inst + `}[$__rate_interval]))`, "{{stream}} dead letters/s"},
			promQuery{`sum(rate(deploywatch_eventlog_publish_errors_total{` + inst + `}[$__rate_interval]))`, "publish errors/s"},
			promQuery{`sum(rate(deploywatch_ingest_rejected_requests_total{` + inst + `}[$__rate_interval]))`, "rejected requests/s"},
			promQuery{`sum(rate(deploywatch_http_requests_total{code=~"5..", ` + inst + `}[$__rate_interval])) or vector(0)`, "HTTP 5xx/s"}, // 0, not nothing, before the first 5xx
			promQuery{`sum(rate(deploywatch_delivery_record_errors_total{` + inst + `}[$__rate_interval]))`, "delivery record errors/s"}).
			Span(24)).
		WithPanel(promPanel("Impact analysis", "short",
			promQuery{`sum(deploywatch_impact_open_analyses{` + inst + `})`, "open analyses"},
			promQuery{`sum(rate(deploywatch_impact_verdicts_total{` + inst + `}[$__rate_interval])) * 60`, "verdicts/min"},
			promQuery{`sum(rate(deploywatch_impact_late_samples_total{` + inst + `}[$__rate_interval])) * 60`, "late samples/min"})).
		WithPanel(promPanel("Webhook deliveries", "short",
			promQuery{`sum by (outcome) (rate(deploywatch_delivery_attempts_total{outcome!="", ` + inst + `}[$__rate_interval])) * 60`, "{{outcome}}/min"}))
}

// promPanel is a line chart of PromQL queries on the $prometheus datasource.
func promPanel(title, unit string, qs ...promQuery) *timeseries.PanelBuilder {
	var ts []cog.Builder[variants.Dataquery]
	for i, q := range qs {
		ts = append(ts, prometheus.NewDataqueryBuilder().
			RefId(string(rune('A'+i))).
			Datasource(*prometheusRef()).
			Expr(q.expr).
			LegendFormat(q.legend).
			Range())
	}
	return timeseries.NewPanelBuilder().
		Title(title).
		Datasource(*prometheusRef()).
		Targets(ts).
		Unit(unit).
		Min(0).
		Height(8).Span(12).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}
