package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// SQLQuery is one ClickHouse query of a dashboard: a panel's target, a
// variable's or an annotation's query, its Grafana macros unexpanded.
type SQLQuery struct {
	Dashboard string // the dashboard's uid
	Where     string // "panel <title>", "variable <name>" or "annotation <name>"
	RawSQL    string
	Format    Format
	// MinInterval is the panel's lower limit for $__interval_s ("" for none).
	MinInterval string
}

// ClickHouseQueries lists every ClickHouse query of d, for review and tests.
// Targets must be ClickHouseQuery values: those of a built dashboard, or of
// a decoded one with ClickHouseVariantConfig registered.
func ClickHouseQueries(d dashboard.Dashboard) []SQLQuery {
	uid := ""
	if d.Uid != nil {
		uid = *d.Uid
	}
	var out []SQLQuery
	if d.Templating.List != nil {
		for _, v := range d.Templating.List {
			if v.Type != "query" || v.Datasource == nil || v.Datasource.Type == nil || *v.Datasource.Type != ClickHousePlugin || v.Query == nil {
				continue
			}
			sql, _ := v.Query.Map["rawSql"].(string)
			if v.Query.String != nil {
				sql = *v.Query.String
			}
			out = append(out, SQLQuery{Dashboard: uid, Where: "variable " + v.Name, RawSQL: sql, Format: FormatTable})
		}
	}
	for _, a := range d.Annotations.List {
		if q, ok := a.Target.(ClickHouseQuery); ok {
			out = append(out, SQLQuery{Dashboard: uid, Where: "annotation " + a.Name, RawSQL: q.RawSql, Format: q.Format})
		}
	}
	for _, p := range d.Panels {
		if p.Panel == nil {
			continue
		}
		title := ""
		if p.Panel.Title != nil {
			title = *p.Panel.Title
		}
		minInterval := ""
		if p.Panel.Interval != nil {
			minInterval = *p.Panel.Interval
		}
		for _, t := range p.Panel.Targets {
			if q, ok := t.(ClickHouseQuery); ok {
				out = append(out, SQLQuery{Dashboard: uid, Where: "panel " + title, RawSQL: q.RawSql, Format: q.Format, MinInterval: minInterval})
			}
		}
	}
	return out
}
