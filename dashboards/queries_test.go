package dashboards_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/deploywatch/deploywatch/dashboards"
	"github.com/deploywatch/deploywatch/internal/seedhistory"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema/chschema"
)

// seeded is a migrated database on the test package's ClickHouse with a
// history written by seedhistory.
type seeded struct {
	ch  driver.Conn
	sum seedhistory.Summary
	end time.Time
}

func seed(t testing.TB, cfg seedhistory.Config) seeded {
	t.Helper()
	return seedOn(t, testenv.ClickHouse(t), cfg)
}

// seedOn is seed on the database dsn names.
func seedOn(t testing.TB, dsn string, cfg seedhistory.Config) seeded {
	t.Helper()
	ctx := context.Background()
	ch, err := chschema.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	db, err := chschema.DatabaseFromDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chschema.Migrate(ctx, ch, db, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.End.IsZero() {
		cfg.End = time.Now().UTC().Truncate(time.Minute)
	}
	sum, err := seedhistory.Write(ctx, ch, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return seeded{ch: ch, sum: sum, end: cfg.End}
}

// scenario is one choice of the variables a dashboard's queries run with.
type scenario struct {
	name string
	vars map[string]variable
}

// scenarios are the variable values every query of the dashboard is tried with.
func scenarios(uid string, services []string) []scenario {
	env := single("production")
	switch uid {
	case dashboards.ServiceImpactUID:
		return []scenario{{"one service", map[string]variable{"env": env, "service": single(services[0])}}}
	default:
		return []scenario{
			{"all services and teams", map[string]variable{"env": env, "service": all(services...), "team": all(seedhistory.Teams...)}},
			{"two services", map[string]variable{"env": env, "service": multi(services[0], services[1]), "team": multi(seedhistory.Teams[0], seedhistory.Teams[1])}},
			{"one service", map[string]variable{"env": env, "service": multi(services[1]), "team": multi(seedhistory.Teams[1])}},
		}
	}
}

// rowCount runs sql and counts the rows of its answer.
func rowCount(ctx context.Context, ch driver.Conn, sql string) (int, error) {
	rows, err := ch.Query(ctx, sql)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

// TestEveryQueryReturnsRows expands every ClickHouse query of every dashboard
// (panels, variables, annotations) as Grafana would, runs it on the real
// ClickHouse over 7 and 30 days of a seeded history, and wants rows back.
func TestEveryQueryReturnsRows(t *testing.T) {
	s := seed(t, seedhistory.Config{Services: 4, Days: 30, Seed: 1})
	t.Logf("seeded %+v", s.sum)
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	total := 0
	for _, d := range ds {
		qs := dashboards.ClickHouseQueries(d)
		if *d.Uid != dashboards.PipelineHealthUID && len(qs) == 0 {
			t.Errorf("dashboard %s has no ClickHouse queries", *d.Uid)
		}
		for _, q := range qs {
			if strings.Contains(q.RawSQL, "$__timeInterval") {
				t.Errorf("%s %s uses $__timeInterval, which ClickHouse 18.16 cannot run", q.Dashboard, q.Where)
			}
			if strings.Contains(q.RawSQL, "deploywatch.") {
				t.Errorf("%s %s names the database; queries read the datasource's default database", q.Dashboard, q.Where)
			}
			for _, days := range []int{7, 30} {
				rng := time.Duration(days) * 24 * time.Hour
				for _, sc := range scenarios(q.Dashboard, s.sum.Services) {
					e := expansion{from: s.end.Add(-rng), to: s.end, vars: sc.vars,
						interval: queryInterval(t, rng, 1000, q.MinInterval)}
					sql := expand(t, q.RawSQL, e)
					n, err := rowCount(ctx, s.ch, sql)
					switch {
					case err != nil:
						t.Errorf("%s %s (%d days, %s): %s\n%s", q.Dashboard, q.Where, days, sc.name, err, sql)
					case n == 0:
						t.Errorf("%s %s (%d days, %s): no rows\n%s", q.Dashboard, q.Where, days, sc.name, sql)
					}
					total++
				}
			}
		}
	}
	t.Logf("%d expanded queries ran and returned rows", total)
}

// TestFleetFiguresMatchTheHistory checks a few of the numbers the fleet
// dashboard shows against what the seed wrote. The bad deploys rolled back
// have a recovery verdict after their own, final, healthy and newer: they
// still count as bad.
func TestFleetFiguresMatchTheHistory(t *testing.T) {
	s := seed(t, seedhistory.Config{Services: 3, Days: 10, Seed: 2})
	if s.sum.Recoveries == 0 {
		t.Fatalf("the seeded history has no recovery verdict after a rollback: %+v", s.sum)
	}
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	byPanel := map[string]string{}
	for _, d := range ds {
		if *d.Uid == dashboards.FleetUID {
			for _, q := range dashboards.ClickHouseQueries(d) {
				byPanel[q.Where] = q.RawSQL
			}
		}
	}
	e := expansion{from: s.sum.From, to: s.end, interval: time.Hour, vars: map[string]variable{
		"env": single("production"), "service": all(s.sum.Services...)}}
	f := func(panel string, want int) {
		t.Helper()
		sql, ok := byPanel["panel "+panel]
		if !ok {
			t.Fatalf("the fleet dashboard has no panel %q", panel)
		}
		var got uint64
		if err := s.ch.QueryRow(context.Background(), expand(t, sql, e)).Scan(&got); err != nil {
			t.Fatalf("panel %s: %s", panel, err)
		}
		if int(got) != want {
			t.Errorf("panel %s shows %d, want %d", panel, got, want)
		}
	}
	f("Deploys", s.sum.Deploys)
	f("Rollbacks", s.sum.RolledBack)
	f("Bad verdicts", s.sum.Bad)
	f("Open incidents", s.sum.OpenIncidents)
}
