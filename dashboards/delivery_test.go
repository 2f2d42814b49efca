package dashboards_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/deploywatch/deploywatch/dashboards"
	"github.com/deploywatch/deploywatch/internal/seedhistory"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/deploywatch/deploywatch/store"
)

// clickHouseIn starts a ClickHouse server of the test's own whose timezone
// is tz, and returns the DSN of a database on it.
func clickHouseIn(t *testing.T, tz string) string {
	t.Helper()
	srv := testenv.OwnClickHouse(t)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(srv.DataDir(), "config.xml")
	config, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	utc := []byte("<timezone>UTC</timezone>")
	if !bytes.Contains(config, utc) {
		t.Fatalf("%s does not set the timezone UTC: cannot set %s", path, tz)
	}
	if err := os.WriteFile(path, bytes.Replace(config, utc, []byte("<timezone>"+tz+"</timezone>"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return srv.DSN("deploywatch")
}

func kolkata(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// deliveryQueries are the delivery dashboard's queries by panel title.
func deliveryQueries(t *testing.T) map[string]string {
	t.Helper()
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range ds {
		if *d.Uid == dashboards.DeliveryUID {
			for _, q := range dashboards.ClickHouseQueries(d) {
				if title, ok := strings.CutPrefix(q.Where, "panel "); ok {
					out[title] = q.RawSQL
				}
			}
		}
	}
	return out
}

// figureRows runs sql and returns its rows, each a map from column name to
// value: numbers as *float64 (nil for NULL), times as time.Time.
func figureRows(t *testing.T, ch driver.Conn, sql string) []map[string]any {
	t.Helper()
	rows, err := ch.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s\n%s", err, sql)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out []map[string]any
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatalf("%s\n%s", err, sql)
		}
		row := map[string]any{}
		for i, ct := range types {
			row[ct.Name()] = plainValue(reflect.ValueOf(dest[i]).Elem())
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s\n%s", err, sql)
	}
	return out
}

func plainValue(v reflect.Value) any {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return (*float64)(nil)
		}
		v = v.Elem()
	}
	var f float64
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f = float64(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f = float64(v.Uint())
	case reflect.Float32, reflect.Float64:
		f = v.Float()
	default:
		return v.Interface()
	}
	return &f
}

// num is a figure of a row, nil for NULL; a column that is not a number
// fails the test.
func num(t *testing.T, row map[string]any, col string) *float64 {
	t.Helper()
	f, ok := row[col].(*float64)
	if !ok {
		t.Fatalf("column %s is %T (%v), want a number: %v", col, row[col], row[col], row)
	}
	return f
}

func showFigure(f *float64) string {
	if f == nil {
		return "null"
	}
	return fmt.Sprint(*f)
}

func sameFigure(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return math.Abs(*a-*b) <= 1e-9*math.Max(1, math.Abs(*b))
}

func intFigure(n int) *float64 { f := float64(n); return &f }

// TestDeliveryFiguresMatchTheAPI runs the delivery dashboard's weekly and
// stat queries over a seeded history and compares what they show with what
// store.Dora (GET /api/v1/dora, the weekly report) says for the same weeks:
// deploy frequency and days, lead time p50 and p90, change failure rate,
// time to restore p50 and p90. The server's timezone is not UTC (Asia/Kolkata,
// +05:30), so a date converted in the server's timezone would show: the
// weekly panels' range starts on the first week's Sunday at 19:00 UTC, which
// is already Monday on the server, and their first bar still counts that
// whole week (Monday to Sunday, UTC), as the API does; no bar comes before it.
func TestDeliveryFiguresMatchTheAPI(t *testing.T) {
	end := time.Date(2026, 11, 19, 15, 0, 0, 0, time.UTC) // a Thursday
	s := seedOn(t, clickHouseIn(t, "Asia/Kolkata"), seedhistory.Config{Services: 3, Days: 45, End: end, Seed: 4})
	qs := deliveryQueries(t)
	ctx := context.Background()
	report, err := store.NewDora(s.ch).Report(ctx, schema.DoraFilter{Weeks: 5, Now: end})
	if err != nil {
		t.Fatal(err)
	}
	weeks := report.Weeks
	vars := map[string]variable{"env": single("production"), "service": all(s.sum.Services...), "team": all(seedhistory.Teams...)}
	run := func(panel string, from, to time.Time) []map[string]any {
		t.Helper()
		sql, ok := qs[panel]
		if !ok {
			t.Fatalf("the delivery dashboard has no panel %q", panel)
		}
		return figureRows(t, s.ch, expand(t, sql, expansion{from: from, to: to, interval: 24 * time.Hour, vars: vars}))
	}
	compared := 0
	check := func(what string, got, want *float64) {
		t.Helper()
		if !sameFigure(got, want) {
			t.Errorf("%s: the dashboard shows %s, the API says %s", what, showFigure(got), showFigure(want))
		}
		if want != nil {
			compared++
		}
	}

	// Week by week, from Sunday 19:00 UTC of the first week (Monday 00:30
	// in Kolkata): a Monday taken in the server's timezone would be the
	// next one, and the first week would lose its days.
	from := weeks[0].WeekStart.Add(6*24*time.Hour + 19*time.Hour)
	if from.Weekday() != time.Sunday || from.In(kolkata(t)).Weekday() != time.Monday {
		t.Fatalf("the range starts %s (%s in Kolkata), want a Sunday in UTC that is a Monday there", from, from.In(kolkata(t)))
	}
	apiWeek := map[time.Time]bool{}
	for _, w := range weeks {
		apiWeek[w.WeekStart] = true
	}
	byWeek := func(panel string) map[time.Time]map[string]any {
		t.Helper()
		out := map[time.Time]map[string]any{}
		for _, row := range run(panel, from, end) {
			at, ok := row["time"].(time.Time)
			if !ok {
				t.Fatalf("panel %s: time is %T", panel, row["time"])
			}
			if at.Weekday() != time.Monday || !at.Equal(at.UTC().Truncate(24*time.Hour)) {
				t.Errorf("panel %s: a bar at %s (%s UTC), want Mondays 00:00 UTC", panel, at, at.UTC())
			}
			if !apiWeek[at.UTC()] {
				t.Errorf("panel %s: a bar for the week of %s, which is not one of the API's weeks (%s to %s)",
					panel, at.UTC().Format(time.DateOnly), weeks[0].WeekStart.Format(time.DateOnly),
					weeks[len(weeks)-1].WeekStart.Format(time.DateOnly))
			}
			out[at.UTC()] = row
		}
		return out
	}
	freq, lead, cfr, restore := byWeek("Deploy frequency per week"), byWeek("Lead time for changes per week"),
		byWeek("Change failure rate per week"), byWeek("Time to restore per week")
	for _, w := range weeks {
		week := w.WeekStart.Format(time.DateOnly)
		deploys, days := intFigure(0), intFigure(0)
		if row, ok := freq[w.WeekStart]; ok {
			deploys, days = num(t, row, "deploys"), num(t, row, "deploy_days")
		}
		check("deploys in the week of "+week, deploys, intFigure(w.DeployFrequency))
		check("deploy days in the week of "+week, days, intFigure(w.DeployDays))
		var median, p90, rate *float64
		if row, ok := lead[w.WeekStart]; ok {
			median, p90 = num(t, row, "median"), num(t, row, "p90")
		}
		check("lead time p50 in the week of "+week, median, w.LeadTimeS.P50)
		check("lead time p90 in the week of "+week, p90, w.LeadTimeS.P90)
		if row, ok := cfr[w.WeekStart]; ok {
			rate = num(t, row, "change_failure_rate")
		}
		check("change failure rate in the week of "+week, rate, w.ChangeFailureRate)
		median, p90 = nil, nil
		if row, ok := restore[w.WeekStart]; ok {
			median, p90 = num(t, row, "median"), num(t, row, "p90")
		}
		check("time to restore p50 in the week of "+week, median, w.MTTRS.P50)
		check("time to restore p90 in the week of "+week, p90, w.MTTRS.P90)
	}

	// The stats over the current week alone: one week's figures.
	stat := func(panel, col string, from time.Time) *float64 {
		t.Helper()
		rows := run(panel, from, end)
		if len(rows) != 1 {
			t.Fatalf("panel %s: %d rows, want 1", panel, len(rows))
		}
		return num(t, rows[0], col)
	}
	cur := weeks[len(weeks)-1]
	check("deploys per week, this week", stat("Deploys per week", "deploys_per_week", cur.WeekStart), intFigure(cur.DeployFrequency))
	check("lead time median, this week", stat("Lead time for changes (median)", "median_lead_time", cur.WeekStart), cur.LeadTimeS.P50)
	check("change failure rate, this week", stat("Change failure rate", "change_failure_rate", cur.WeekStart), cur.ChangeFailureRate)
	check("time to restore median, this week", stat("Time to restore (median)", "median_time_to_restore", cur.WeekStart), cur.MTTRS.P50)

	// Over all five weeks: deploys ÷ the range's weeks, failures ÷ deploys.
	var deploys, failures int
	for _, w := range weeks {
		deploys, failures = deploys+w.DeployFrequency, failures+w.Failures
	}
	perWeek := float64(deploys) / (end.Sub(weeks[0].WeekStart).Hours() / (7 * 24))
	rate := float64(failures) / float64(deploys)
	check("deploys per week over 5 weeks", stat("Deploys per week", "deploys_per_week", weeks[0].WeekStart), &perWeek)
	check("change failure rate over 5 weeks", stat("Change failure rate", "change_failure_rate", weeks[0].WeekStart), &rate)

	if compared < 30 {
		t.Errorf("only %d figures were compared; the seeded history is too thin for this test", compared)
	}
	t.Logf("compared %d figures of the dashboard with the API's", compared)
}

// TestDeliveryStatsShowNoDataForAnEmptyRange: over a range without deploys
// or incidents the durations and the failure rate are NULL, which the stat
// panels show as "no data", not 0 s in the elite band's colour.
func TestDeliveryStatsShowNoDataForAnEmptyRange(t *testing.T) {
	s := seed(t, seedhistory.Config{Services: 2, Days: 7, Seed: 5})
	qs := deliveryQueries(t)
	e := expansion{from: s.sum.From.AddDate(-1, 0, 0), to: s.sum.From.AddDate(-1, 0, 14), interval: 24 * time.Hour,
		vars: map[string]variable{"env": single("production"), "service": all(s.sum.Services...), "team": all(seedhistory.Teams...)}}
	f := func(panel, col string, want *float64) {
		t.Helper()
		rows := figureRows(t, s.ch, expand(t, qs[panel], e))
		if len(rows) != 1 {
			t.Fatalf("panel %s: %d rows, want 1", panel, len(rows))
		}
		if got := num(t, rows[0], col); !sameFigure(got, want) {
			t.Errorf("panel %s over an empty range: %s, want %s", panel, showFigure(got), showFigure(want))
		}
	}
	f("Deploys per week", "deploys_per_week", intFigure(0))
	f("Lead time for changes (median)", "median_lead_time", nil)
	f("Change failure rate", "change_failure_rate", nil)
	f("Time to restore (median)", "median_time_to_restore", nil)
	for _, panel := range []string{"Lead time for changes per week", "Time to restore per week", "Deploy frequency per week"} {
		if rows := figureRows(t, s.ch, expand(t, qs[panel], e)); len(rows) != 0 {
			t.Errorf("panel %s over an empty range: %v, want no bars", panel, rows)
		}
	}
}

// drawnPanel is how a generated panel draws its series.
type drawnPanel struct {
	dashboard, title, kind, drawStyle string
	barAlignment                      *int
}

// drawnPanels reads every panel of every generated dashboard.
func drawnPanels(t *testing.T) []drawnPanel {
	t.Helper()
	files, err := dashboards.Generate(dashboards.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []drawnPanel
	for _, f := range files {
		if !strings.HasPrefix(f.Path, "dashboards"+string(filepath.Separator)) {
			continue
		}
		var d struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title       string `json:"title"`
				Type        string `json:"type"`
				FieldConfig struct {
					Defaults struct {
						Custom struct {
							DrawStyle    string `json:"drawStyle"`
							BarAlignment *int   `json:"barAlignment"`
						} `json:"custom"`
					} `json:"defaults"`
				} `json:"fieldConfig"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(f.Data, &d); err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Panels {
			c := p.FieldConfig.Defaults.Custom
			out = append(out, drawnPanel{d.UID, p.Title, p.Type, c.DrawStyle, c.BarAlignment})
		}
	}
	return out
}

// TestWeeklyBarsSpanTheirWeek: the weekly panels' bars are drawn from their
// Monday on (barAlignment "after", 1), not centred on Monday 00:00, where
// Grafana cuts the first one in half at the range's start.
func TestWeeklyBarsSpanTheirWeek(t *testing.T) {
	n := 0
	for _, p := range drawnPanels(t) {
		if p.dashboard != dashboards.DeliveryUID || p.kind != "timeseries" || !strings.HasSuffix(p.title, "per week") {
			continue
		}
		n++
		if p.drawStyle != "bars" || p.barAlignment == nil || *p.barAlignment != 1 {
			t.Errorf("panel %s: drawStyle %q, barAlignment %v; want bars aligned after their time (1)", p.title, p.drawStyle, p.barAlignment)
		}
	}
	if n != 4 {
		t.Errorf("%d weekly time series panels, want 4", n)
	}
}

// TestEveryBarPanelSpansItsPeriod: a bar is a day's or a week's count, drawn
// from its start; centred on it, Grafana would clip the first bar at the
// range's start. Every bar panel of every dashboard is aligned so.
func TestEveryBarPanelSpansItsPeriod(t *testing.T) {
	n := 0
	for _, p := range drawnPanels(t) {
		if p.drawStyle != "bars" {
			continue
		}
		n++
		if p.barAlignment == nil || *p.barAlignment != 1 {
			t.Errorf("%s: panel %s draws bars with barAlignment %v; want 1, after their time", p.dashboard, p.title, p.barAlignment)
		}
	}
	if n < 6 {
		t.Errorf("found %d bar panels, want the 4 weekly DORA ones and the fleet's daily ones", n)
	}
}
