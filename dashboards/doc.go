// Package dashboards builds deploywatch's Grafana dashboards as code
// (grafana-foundation-sdk), the Grafana provisioning files that go with them,
// and pushes them through Grafana's HTTP API. The ClickHouse panels query the
// datasource's default database through grafana-clickhouse-datasource with
// SQL that runs on ClickHouse 18.16 and on current servers; the pipeline
// dashboard reads deploywatch's /metrics through Prometheus. The weekly
// report is in dashboards/report. It depends on schema only.
package dashboards
