package dashboards_test

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

// This file expands a dashboard query the way Grafana and
// grafana-clickhouse-datasource do before the SQL reaches ClickHouse, so the
// tests run exactly what Grafana would run. It builds SQL by substituting
// text, which is what Grafana does with its variables and macros; it is test
// code and never runs against user input.
//
// Order, as in the datasource's applyTemplateVariables and its backend:
//  1. $__conditionalAll(cond, $var) becomes 1=1 when $var is All (or empty),
//     else cond (frontend, CHDatasource.applyConditionalAll);
//  2. template variables are replaced by Grafana's templateSrv: ${v:singlequote}
//     quotes every value ('a','b'), plain $v / ${v} uses the datasource's
//     format: several values become 'a','b', one value goes in as it is;
//  3. the backend's macros (pkg/macros): $__timeFilter(c) is
//     c >= toDateTime(FROM) AND c <= toDateTime(TO) in epoch seconds,
//     $__fromTime / $__toTime are toDateTime(FROM) / toDateTime(TO),
//     $__dateFilter(c) compares toDate('YYYY-MM-DD'), $__interval_s is the
//     query interval in whole seconds (at least 1).

// variable is a dashboard variable's current value.
type variable struct {
	values []string // the selected values; for All, every value
	all    bool
	multi  bool // a multi-value variable passes an array even with one value
}

func single(v string) variable { return variable{values: []string{v}} }
func all(vs ...string) variable {
	return variable{values: vs, all: true, multi: true}
}
func multi(vs ...string) variable { return variable{values: vs, multi: true} }

// expansion is what a query is expanded with.
type expansion struct {
	from, to time.Time
	interval time.Duration
	vars     map[string]variable
}

func expand(t testing.TB, sql string, e expansion) string {
	t.Helper()
	sql = conditionalAll(t, sql, e.vars)
	sql = templateVars(sql, e.vars)
	sql = backendMacros(t, sql, e)
	if strings.Contains(sql, "$") {
		t.Fatalf("the expanded query still has a $: %s", sql)
	}
	return sql
}

func conditionalAll(t testing.TB, sql string, vars map[string]variable) string {
	const macro = "$__conditionalAll("
	varRE := regexp.MustCompile(`\$\{(\w+)[^}]*\}|\$(\w+)`)
	for {
		i := strings.LastIndex(sql, macro)
		if i < 0 {
			return sql
		}
		args, end := macroArgs(sql, i+len(macro)-1)
		if len(args) != 2 {
			t.Fatalf("$__conditionalAll needs 2 arguments, got %q", args)
		}
		phrase := args[0]
		if m := varRE.FindStringSubmatch(strings.TrimSpace(args[1])); m != nil {
			name := m[1] + m[2]
			v, ok := vars[name]
			if !ok {
				t.Fatalf("$__conditionalAll names variable %s, which the test does not set", name)
			}
			if v.all || len(v.values) == 0 {
				phrase = "1=1"
			}
		}
		sql = sql[:i] + phrase + sql[end:]
	}
}

// macroArgs splits the arguments of the call whose '(' is at open, commas at
// depth 1 separating them; end is the index after the closing ')'.
func macroArgs(s string, open int) (args []string, end int) {
	depth, last := 0, open+1
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return append(args, s[last:i]), i + 1
			}
		case ',':
			if depth == 1 {
				args = append(args, s[last:i])
				last = i + 1
			}
		}
	}
	return nil, len(s)
}

// grafanaVarRE is Grafana's templateSrv variable syntax.
var grafanaVarRE = regexp.MustCompile(`\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}`)

func templateVars(sql string, vars map[string]variable) string {
	return grafanaVarRE.ReplaceAllStringFunc(sql, func(m string) string {
		g := grafanaVarRE.FindStringSubmatch(m)
		name, format := g[1]+g[2]+g[4], g[3]+g[6]
		v, ok := vars[name]
		if !ok {
			return m // a macro ($__timeFilter ...) or a built-in: left to the backend
		}
		switch format {
		case "singlequote":
			quoted := make([]string, len(v.values))
			for i, s := range v.values {
				quoted[i] = "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
			}
			return strings.Join(quoted, ",")
		case "":
			if v.multi || len(v.values) != 1 {
				return "'" + strings.Join(v.values, "','") + "'"
			}
			return v.values[0]
		}
		panic("the test does not expand variable format " + format)
	})
}

var backendMacroRE = regexp.MustCompile(`\$__(timeFilter|fromTime|toTime|dateFilter|interval_s|timeInterval)(?:\((.*?)\))?`)

func backendMacros(t testing.TB, sql string, e expansion) string {
	t.Helper()
	dt := func(x time.Time) string { return fmt.Sprintf("toDateTime(%d)", x.Unix()) }
	date := func(x time.Time) string { return fmt.Sprintf("toDate('%s')", x.UTC().Format("2006-01-02")) }
	return backendMacroRE.ReplaceAllStringFunc(sql, func(m string) string {
		g := backendMacroRE.FindStringSubmatch(m)
		arg := strings.TrimSpace(g[2])
		switch g[1] {
		case "timeFilter":
			return fmt.Sprintf("%s >= %s AND %s <= %s", arg, dt(e.from), arg, dt(e.to))
		case "dateFilter":
			return fmt.Sprintf("%s >= %s AND %s <= %s", arg, date(e.from), arg, date(e.to))
		case "fromTime":
			return dt(e.from) + g[0][len("$__fromTime"):]
		case "toTime":
			return dt(e.to) + g[0][len("$__toTime"):]
		case "interval_s":
			return fmt.Sprintf("%d", int(math.Max(e.interval.Seconds(), 1))) + g[0][len("$__interval_s"):]
		}
		t.Fatalf("query uses $__timeInterval, which 18.16 cannot run (no toStartOfInterval): bucket with $__interval_s")
		return ""
	})
}

// queryInterval is the interval Grafana gives a panel's queries: the range
// over the panel's max data points, rounded as Grafana rounds it, at least
// the panel's minimum interval.
func queryInterval(t testing.TB, rng time.Duration, maxDataPoints int, minInterval string) time.Duration {
	t.Helper()
	iv := roundInterval(rng / time.Duration(maxDataPoints))
	if minInterval != "" {
		min, err := parseGrafanaDuration(minInterval)
		if err != nil {
			t.Fatalf("panel interval %q: %s", minInterval, err)
		}
		if iv < min {
			iv = min
		}
	}
	return iv
}

func parseGrafanaDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		var n int
		if _, err := fmt.Sscanf(s, "%dd", &n); err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// roundInterval is Grafana's rangeutil.roundInterval.
func roundInterval(d time.Duration) time.Duration {
	ms := d.Milliseconds()
	steps := []struct {
		below int64
		to    time.Duration
	}{
		{15, 10 * time.Millisecond}, {35, 20 * time.Millisecond}, {75, 50 * time.Millisecond},
		{150, 100 * time.Millisecond}, {350, 200 * time.Millisecond}, {750, 500 * time.Millisecond},
		{1500, time.Second}, {3500, 2 * time.Second}, {7500, 5 * time.Second}, {12500, 10 * time.Second},
		{17500, 15 * time.Second}, {25000, 20 * time.Second}, {45000, 30 * time.Second},
		{90000, time.Minute}, {210000, 2 * time.Minute}, {450000, 5 * time.Minute},
		{750000, 10 * time.Minute}, {1050000, 15 * time.Minute}, {1500000, 20 * time.Minute},
		{2700000, 30 * time.Minute}, {5400000, time.Hour}, {9000000, 2 * time.Hour},
		{16200000, 3 * time.Hour}, {32400000, 6 * time.Hour}, {86400000, 12 * time.Hour},
		{604800000, 24 * time.Hour}, {1814400000, 7 * 24 * time.Hour}, {3628800000, 14 * 24 * time.Hour},
	}
	for _, s := range steps {
		if ms < s.below {
			return s.to
		}
	}
	return 30 * 24 * time.Hour
}

func TestExpandLikeTheDatasource(t *testing.T) {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(7 * 24 * time.Hour)
	e := expansion{from: from, to: to, interval: 10 * time.Minute, vars: map[string]variable{
		"env":     single("production"),
		"service": multi("checkout", "search"),
		"team":    all("payments", "growth"),
	}}
	f := func(in, want string) {
		t.Helper()
		if got := expand(t, in, e); got != want {
			t.Errorf("expand(%q):\n got %q\nwant %q", in, got, want)
		}
	}
	f(`env = ${env:singlequote}`, `env = 'production'`)
	f(`env = '$env'`, `env = 'production'`)
	f(`service IN ($service)`, `service IN ('checkout','search')`)
	f(`$__conditionalAll(service IN (${service:singlequote}), $service)`, `service IN ('checkout','search')`)
	f(`$__conditionalAll(team IN (${team:singlequote}), $team) AND x`, `1=1 AND x`)
	f(`$__timeFilter(minute)`, `minute >= toDateTime(1793491200) AND minute <= toDateTime(1794096000)`)
	f(`$__dateFilter(day)`, `day >= toDate('2026-11-01') AND day <= toDate('2026-11-08')`)
	f(`intDiv(toUInt32(t), $__interval_s) * $__interval_s`, `intDiv(toUInt32(t), 600) * 600`)
	f(`t >= $__fromTime AND t < $__toTime`, `t >= toDateTime(1793491200) AND t < toDateTime(1794096000)`)
	if got := queryInterval(t, 7*24*time.Hour, 1000, "1m"); got != 10*time.Minute {
		t.Errorf("interval of 7 days over 1000 points: %s, want 10m", got)
	}
	if got := queryInterval(t, 6*time.Hour, 1000, "1m"); got != time.Minute {
		t.Errorf("interval of 6 hours over 1000 points with a 1m minimum: %s, want 1m", got)
	}
}
