// Package dashboards will generate deploywatch's Grafana dashboards and
// provisioning files and the weekly report (issue 5). It depends on schema only.
package dashboards
