package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Stable uids: provisioning and `dashboards push` update a dashboard in
// place by its uid, so these never change.
const (
	ServiceImpactUID  = "deploywatch-service-impact"
	FleetUID          = "deploywatch-fleet"
	DeliveryUID       = "deploywatch-delivery"
	PipelineHealthUID = "deploywatch-pipeline"
)

// Names of the dashboard variables that pick the datasources.
const (
	clickhouseVar = "datasource"
	prometheusVar = "prometheus"
)

// tag marks every generated dashboard, for Grafana's search and links.
const tag = "deploywatch"

// All builds every dashboard, in a stable order.
func All() ([]dashboard.Dashboard, error) {
	builders := []func() *dashboard.DashboardBuilder{serviceImpact, fleet, delivery, pipelineHealth}
	out := make([]dashboard.Dashboard, 0, len(builders))
	for _, b := range builders {
		d, err := b().Build()
		if err != nil {
			return nil, fmt.Errorf("cannot build a dashboard: %w", err)
		}
		numberPanels(&d)
		out = append(out, d)
	}
	return out, nil
}

// numberPanels gives panels ids 1, 2, 3 ... in order: Grafana needs them
// unique within a dashboard, and fixed ids keep the generated JSON stable.
func numberPanels(d *dashboard.Dashboard) {
	n := uint32(1)
	for i := range d.Panels {
		if p := d.Panels[i].Panel; p != nil {
			id := n
			p.Id = &id
			n++
		}
	}
}

// newDashboard starts a dashboard with deploywatch's defaults.
func newDashboard(uid, title, description, from string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{tag}).
		Editable().
		Timezone(common.TimeZoneUtc).
		Time(from, "now").
		Refresh("1m").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboard.NewDashboardLinkBuilder("deploywatch").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{tag}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true))
}

// clickhouseVariable lets users pick the ClickHouse datasource.
func clickhouseVariable() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder(clickhouseVar).
		Label("ClickHouse").
		Type(ClickHousePlugin).
		Current(option("deploywatch ClickHouse", ClickHouseDatasourceUID))
}

// option is a variable's selected value; Grafana picks another when a
// datasource variable's value does not exist.
func option(text, value string) dashboard.VariableOption {
	return dashboard.VariableOption{
		Text:  dashboard.StringOrArrayOfString{String: ptr(text)},
		Value: dashboard.StringOrArrayOfString{String: ptr(value)},
	}
}

// sqlVariable is a variable whose values a ClickHouse query lists.
func sqlVariable(name, label, sql string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(*clickhouseRef()).
		Query(dashboard.StringOrMap{Map: map[string]any{
			"refId":      name,
			"editorType": "sql",
			"rawSql":     sql,
		}}).
		Definition(sql).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
}

// multiSQLVariable is a sqlVariable with several values and All; queries
// filter on it with $__conditionalAll(col IN (${name:singlequote}), $name),
// which the datasource turns into 1=1 for All.
func multiSQLVariable(name, label, sql string) *dashboard.QueryVariableBuilder {
	return sqlVariable(name, label, sql).Multi(true).IncludeAll(true).
		Current(option("All", "$__all"))
}

// fieldThresholds are steps from a base colour: each value at or above
// steps[i].at takes steps[i].color.
type step struct {
	at    float64
	color string
}

func thresholds(base string, steps ...step) *dashboard.ThresholdsConfigBuilder {
	out := []dashboard.Threshold{{Color: base}}
	for _, s := range steps {
		out = append(out, dashboard.Threshold{Value: ptr(s.at), Color: s.color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(out)
}

// targets turns queries into the SDK's target builders.
func targets(qs ...cog.Builder[variants.Dataquery]) []cog.Builder[variants.Dataquery] { return qs }

func ptr[T any](v T) *T { return &v }

// sortDesc sorts a table by a field, largest first.
func sortDesc(field string) cog.Builder[common.TableSortByFieldState] {
	return common.NewTableSortByFieldStateBuilder().DisplayName(field).Desc(true)
}

// mustBuild builds what cannot fail to build (no required field is missing).
func mustBuild[T any](b cog.Builder[T]) T {
	v, err := b.Build()
	if err != nil {
		panic(fmt.Sprintf("dashboards: %s", err))
	}
	return v
}
