package dashboards_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/dashboards"
	"github.com/deploywatch/deploywatch/internal/seedhistory"
)

// BenchmarkPanelQueries runs every ClickHouse query of every dashboard
// (panels, variables, annotations), expanded as Grafana would, over 7 and 30
// days of a 100-service, 30-day history, and reports the distribution of
// single-query times: p50-ms, p95-ms and max-ms (the target is p95 under
// 300 ms on ClickHouse 18.16). ns/op is one pass over all the queries.
//
//	go test -run '^$' -bench BenchmarkPanelQueries -benchtime 5x ./dashboards
func BenchmarkPanelQueries(b *testing.B) {
	start := time.Now()
	s := seed(b, seedhistory.Config{Services: 100, Days: 30, Seed: 3})
	b.Logf("seeded %d services, %d deploys, %d samples, %d incidents in %s",
		len(s.sum.Services), s.sum.Deploys, s.sum.Samples, s.sum.Incidents, time.Since(start).Round(time.Second))
	ds, err := dashboards.All()
	if err != nil {
		b.Fatal(err)
	}
	var qs []dashboards.SQLQuery
	for _, d := range ds {
		qs = append(qs, dashboards.ClickHouseQueries(d)...)
	}
	ctx := context.Background()
	for _, days := range []int{7, 30} {
		rng := time.Duration(days) * 24 * time.Hour
		// What a user looks at: one service on its dashboard, every service elsewhere.
		sqls := make([]string, len(qs))
		for i, q := range qs {
			sc := scenarios(q.Dashboard, s.sum.Services)[0]
			sqls[i] = expand(b, q.RawSQL, expansion{from: s.end.Add(-rng), to: s.end, vars: sc.vars,
				interval: queryInterval(b, rng, 1000, q.MinInterval)})
		}
		b.Run(map[int]string{7: "7d", 30: "30d"}[days], func(b *testing.B) {
			var times []time.Duration
			slowest := make([]time.Duration, len(qs))
			for i := 0; i < b.N; i++ {
				for j, sql := range sqls {
					t0 := time.Now()
					n, err := rowCount(ctx, s.ch, sql)
					d := time.Since(t0)
					if err != nil || n == 0 {
						b.Fatalf("%s %s: %d rows, %v", qs[j].Dashboard, qs[j].Where, n, err)
					}
					times = append(times, d)
					slowest[j] = max(slowest[j], d)
				}
			}
			slices.Sort(times)
			pct := func(p float64) float64 {
				return float64(times[int(p*float64(len(times)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.95), "p95-ms")
			b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
			// The slowest queries, by their worst time, for whoever tunes them next.
			order := make([]int, len(qs))
			for j := range order {
				order[j] = j
			}
			slices.SortFunc(order, func(a, c int) int { return int(slowest[c] - slowest[a]) })
			for _, j := range order[:min(5, len(order))] {
				b.Logf("slow: %s %s, %s", qs[j].Dashboard, qs[j].Where, slowest[j].Round(time.Millisecond))
			}
		})
	}
}
