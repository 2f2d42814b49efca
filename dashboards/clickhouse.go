package dashboards

import (
	"encoding/json"
	"reflect"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
)

// Plugin ids of the datasources the dashboards query.
const (
	ClickHousePlugin = "grafana-clickhouse-datasource"
	PrometheusPlugin = "prometheus"
)

// Format is how grafana-clickhouse-datasource shapes a result (sqlds'
// FormatQueryOption): a time series is pivoted long-to-wide, so a string
// column (a version, a service) becomes one series per value.
type Format int

const (
	FormatTimeSeries Format = 0
	FormatTable      Format = 1
)

// ClickHouseQuery is a raw SQL query of grafana-clickhouse-datasource (v4),
// which the SDK has no type for: the fields its query editor saves.
type ClickHouseQuery struct {
	RefId      string                `json:"refId"`
	Hide       *bool                 `json:"hide,omitempty"`
	Datasource *common.DataSourceRef `json:"datasource,omitempty"`
	EditorType string                `json:"editorType"` // "sql": raw SQL, not the query builder
	QueryType  string                `json:"queryType"`  // "timeseries" or "table"
	Format     Format                `json:"format"`
	RawSql     string                `json:"rawSql"`
	// PluginVersion 4.0.0 or later tells the plugin the query is in its v4
	// shape; without one it migrates the query as a v3 one.
	PluginVersion string `json:"pluginVersion,omitempty"`
}

// pluginVersion is the plugin version the queries are written for.
const pluginVersion = "4.0.0"

func (q ClickHouseQuery) ImplementsDataqueryVariant() {}
func (q ClickHouseQuery) DataqueryType() string       { return ClickHousePlugin }
func (q ClickHouseQuery) Validate() error             { return nil }

func (q ClickHouseQuery) Equals(other variants.Dataquery) bool {
	o, ok := other.(ClickHouseQuery)
	return ok && reflect.DeepEqual(q, o)
}

// ClickHouseVariantConfig lets the SDK decode ClickHouse queries of a
// dashboard JSON into ClickHouseQuery (register it with
// cog.NewRuntime().RegisterDataqueryVariant).
func ClickHouseVariantConfig() variants.DataqueryConfig {
	decode := func(raw []byte) (variants.Dataquery, error) {
		var q ClickHouseQuery
		if err := json.Unmarshal(raw, &q); err != nil {
			return nil, err
		}
		return q, nil
	}
	return variants.DataqueryConfig{
		Identifier:                 ClickHousePlugin,
		DataqueryUnmarshaler:       decode,
		StrictDataqueryUnmarshaler: decode,
	}
}

// chQuery builds a ClickHouseQuery for the SDK's builders.
type chQuery struct{ q ClickHouseQuery }

var _ cog.Builder[variants.Dataquery] = chQuery{}

func (b chQuery) Build() (variants.Dataquery, error) { return b.q, nil }

// sqlQuery is a query on the dashboard's ClickHouse datasource variable.
func sqlQuery(refID string, format Format, sql string) chQuery {
	queryType := "table"
	if format == FormatTimeSeries {
		queryType = "timeseries"
	}
	return chQuery{ClickHouseQuery{
		RefId:      refID,
		Datasource: clickhouseRef(),
		EditorType: "sql",
		QueryType:  queryType,
		Format:     format,
		RawSql:     sql,

		PluginVersion: pluginVersion,
	}}
}

func clickhouseRef() *common.DataSourceRef {
	typ, uid := ClickHousePlugin, "${"+clickhouseVar+"}"
	return &common.DataSourceRef{Type: &typ, Uid: &uid}
}

func prometheusRef() *common.DataSourceRef {
	typ, uid := PrometheusPlugin, "${"+prometheusVar+"}"
	return &common.DataSourceRef{Type: &typ, Uid: &uid}
}
