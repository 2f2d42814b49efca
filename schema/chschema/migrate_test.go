package chschema_test

import (
	"context"
	"math"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema/chschema"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// migrated returns a connection to a fresh, migrated database and its name.
func migrated(t *testing.T) (driver.Conn, string) {
	t.Helper()
	ctx := context.Background()
	dsn := testenv.ClickHouse(t)
	conn, err := chschema.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	db, err := chschema.DatabaseFromDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chschema.Migrate(ctx, conn, db, nil); err != nil {
		t.Fatalf("cannot migrate: %s", err)
	}
	return conn, db
}

func allVersions() []int {
	var vs []int
	for _, m := range chschema.Migrations() {
		vs = append(vs, m.Version)
	}
	return vs
}

func TestMigrateTwiceAppliesNothingTheSecondTime(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.ClickHouse(t)
	conn, err := chschema.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	db, err := chschema.DatabaseFromDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}

	status, err := chschema.Status(ctx, conn, db)
	if err != nil {
		t.Fatalf("Status before Migrate: %s", err)
	}
	for _, s := range status {
		if s.Applied {
			t.Fatalf("Status before Migrate: %04d_%s is applied", s.Version, s.Name)
		}
	}

	applied, err := chschema.Migrate(ctx, conn, db, nil)
	if err != nil {
		t.Fatalf("first Migrate: %s", err)
	}
	if want := allVersions(); !slices.Equal(applied, want) {
		t.Fatalf("first Migrate applied %v, want %v", applied, want)
	}
	applied, err = chschema.Migrate(ctx, conn, db, nil)
	if err != nil {
		t.Fatalf("second Migrate: %s", err)
	}
	if len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, want nothing", applied)
	}

	status, err = chschema.Status(ctx, conn, db)
	if err != nil {
		t.Fatalf("Status after Migrate: %s", err)
	}
	if len(status) != len(allVersions()) {
		t.Fatalf("Status lists %d migrations, want %d", len(status), len(allVersions()))
	}
	for _, s := range status {
		if !s.Applied || time.Since(s.AppliedAt) > time.Hour || time.Since(s.AppliedAt) < -time.Minute {
			t.Fatalf("Status after Migrate: %04d_%s applied=%v at %s", s.Version, s.Name, s.Applied, s.AppliedAt)
		}
	}

	var tables []string
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? ORDER BY name", db)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	want := []string{"alert_acks", "alert_events", "commits", "deploy_changes", "deploy_verdicts", "deploys", "dora_deploys", "dora_finished_deploys", "dora_incidents", "dora_lead_times", "dora_restores", "events", "incident_changes", "latest_alerts", "latest_verdicts", "metric_samples", "metrics_1m", "metrics_1m_mv", "rollback_signals", "schema_migrations", "silences", "webhook_deliveries"}
	if !slices.Equal(tables, want) {
		t.Fatalf("tables in %s:\n got %v\nwant %v", db, tables, want)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.ClickHouse(t)
	db, err := chschema.DatabaseFromDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// The database does not exist yet: Open creates it, Migrate's CREATE
	// DATABASE IF NOT EXISTS then races with the others.
	admin, err := chschema.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.Exec(ctx, "DROP DATABASE "+db); err != nil {
		t.Fatal(err)
	}

	const runs = 4
	var wg sync.WaitGroup
	errs := make([]error, runs)
	for i := range runs {
		wg.Go(func() {
			conn, err := chschema.Open(ctx, dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close()
			_, errs[i] = chschema.Migrate(ctx, conn, db, nil)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate %d: %s", i, err)
		}
	}
	status, err := chschema.Status(ctx, admin, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range status {
		if !s.Applied {
			t.Errorf("after concurrent Migrate: %04d_%s is pending", s.Version, s.Name)
		}
	}
}

func TestMigrateRejectsABadDatabaseName(t *testing.T) {
	// Validation comes before any query, so no server is needed.
	if _, err := chschema.Migrate(context.Background(), nil, "x; DROP DATABASE y", nil); err == nil {
		t.Fatal("Migrate with a bad database name: want an error")
	}
}

type deployChange struct {
	id, status, service, env, version, previous string
	rank                                        uint8
	eventTime                                   time.Time
	startedAt, finishedAt                       *time.Time
	commitSHAs                                  []string
	commitTimes                                 []time.Time
}

const deployColumns = "deploy_id, status, status_rank, service, env, version, previous_version, event_time, " +
	"started_at, finished_at, author, strategy, url, label_keys, label_values, " +
	"commit_shas, commit_times, commit_authors, commit_messages"

func insertDeployChanges(t *testing.T, conn driver.Conn, changes ...deployChange) {
	t.Helper()
	ctx := context.Background()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO deploy_changes ("+deployColumns+")")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		authors := make([]string, len(c.commitSHAs))
		messages := make([]string, len(c.commitSHAs))
		for i := range c.commitSHAs {
			authors[i], messages[i] = "dev@example.com", "change "+c.commitSHAs[i]
		}
		err := batch.Append(c.id, c.status, c.rank, c.service, c.env, c.version, c.previous, c.eventTime,
			c.startedAt, c.finishedAt, "ci-bot", "rolling", "https://ci.example.com/"+c.id,
			[]string{"team"}, []string{"payments-" + c.status}, c.commitSHAs, c.commitTimes, authors, messages)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("cannot insert deploy changes: %s", err)
	}
}

type deployRow struct {
	status, version, previous string
	startedAt                 *time.Time
	finishedAt, rolledBackAt  *time.Time
	labelValues, commitSHAs   []string
	commitTimes               []time.Time
	updatedAt                 time.Time
}

func queryDeploys(t *testing.T, conn driver.Conn, id string) []deployRow {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT status, version, previous_version, started_at, finished_at,
		rolled_back_at, label_values, commit_shas, commit_times, updated_at FROM deploys WHERE deploy_id = ?`, id)
	if err != nil {
		t.Fatalf("cannot query deploys: %s", err)
	}
	defer rows.Close()
	var out []deployRow
	for rows.Next() {
		var r deployRow
		if err := rows.Scan(&r.status, &r.version, &r.previous, &r.startedAt, &r.finishedAt, &r.rolledBackAt,
			&r.labelValues, &r.commitSHAs, &r.commitTimes, &r.updatedAt); err != nil {
			t.Fatalf("cannot scan deploys: %s", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func ptr(t time.Time) *time.Time { return &t }

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func fmtTime(p *time.Time) string {
	if p == nil {
		return "NULL"
	}
	return p.UTC().Format(time.RFC3339)
}

func TestDeploysViewFoldsRedeliveredChanges(t *testing.T) {
	conn, _ := migrated(t)
	t0 := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	t1 := t0.Add(4*time.Minute + 12*time.Second)
	commitTime := t0.Add(-2 * time.Hour)

	started := deployChange{id: "dep-1", status: "started", rank: 1, service: "payments", env: "prod",
		version: "v1.42.0", previous: "v1.41.3", eventTime: t0, startedAt: ptr(t0),
		commitSHAs: []string{"a1b2c3d", "e4f5a6b"}, commitTimes: []time.Time{commitTime, commitTime.Add(time.Minute)}}
	succeeded := deployChange{id: "dep-1", status: "succeeded", rank: 2, service: "payments", env: "prod",
		version: "v1.42.0", previous: "v1.41.3", eventTime: t1, startedAt: ptr(t0), finishedAt: ptr(t1)}
	// Each change delivered twice, in separate inserts, the second copy out of order.
	insertDeployChanges(t, conn, started)
	insertDeployChanges(t, conn, succeeded)
	insertDeployChanges(t, conn, succeeded, started)

	got := queryDeploys(t, conn, "dep-1")
	if len(got) != 1 {
		t.Fatalf("deploys has %d rows for dep-1, want 1", len(got))
	}
	d := got[0]
	if d.status != "succeeded" || d.version != "v1.42.0" || d.previous != "v1.41.3" {
		t.Errorf("dep-1: status %q version %q previous %q; want succeeded v1.42.0 v1.41.3", d.status, d.version, d.previous)
	}
	if !sameTime(d.startedAt, ptr(t0)) || !sameTime(d.finishedAt, ptr(t1)) || d.rolledBackAt != nil {
		t.Errorf("dep-1: started %s finished %s rolled back %s; want %s %s NULL",
			fmtTime(d.startedAt), fmtTime(d.finishedAt), fmtTime(d.rolledBackAt), fmtTime(ptr(t0)), fmtTime(ptr(t1)))
	}
	if !d.updatedAt.Equal(t1) {
		t.Errorf("dep-1: updated_at %s, want %s", d.updatedAt, t1)
	}
	if !slices.Equal(d.labelValues, []string{"payments-succeeded"}) {
		t.Errorf("dep-1: labels from the latest change: got %v", d.labelValues)
	}
	// The latest change has no commits: they come from the latest one that has.
	if !slices.Equal(d.commitSHAs, started.commitSHAs) || len(d.commitTimes) != 2 || !d.commitTimes[0].Equal(commitTime) {
		t.Errorf("dep-1: commits %v at %v; want %v at %v", d.commitSHAs, d.commitTimes, started.commitSHAs, started.commitTimes)
	}
}

func TestDeploysViewBreaksTimeTiesByStatus(t *testing.T) {
	conn, _ := migrated(t)
	t0 := time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(90 * time.Second)
	base := deployChange{id: "dep-2", service: "checkout", env: "prod", version: "v7", previous: "v6", startedAt: ptr(t0)}
	started, succeeded, rolledBack := base, base, base
	started.status, started.rank, started.eventTime = "started", 1, t0
	// A sender that reports the end with the start's time: the later step still wins.
	succeeded.status, succeeded.rank, succeeded.eventTime, succeeded.finishedAt = "succeeded", 2, t0, ptr(t0)
	rolledBack.status, rolledBack.rank, rolledBack.eventTime, rolledBack.finishedAt = "rolled_back", 3, t1, ptr(t1)
	insertDeployChanges(t, conn, succeeded, started)

	got := queryDeploys(t, conn, "dep-2")
	if len(got) != 1 || got[0].status != "succeeded" || !sameTime(got[0].finishedAt, ptr(t0)) {
		t.Fatalf("dep-2 after started and succeeded at the same time: %+v; want one row, succeeded", got)
	}

	insertDeployChanges(t, conn, rolledBack)
	got = queryDeploys(t, conn, "dep-2")
	if len(got) != 1 {
		t.Fatalf("deploys has %d rows for dep-2, want 1", len(got))
	}
	d := got[0]
	if d.status != "rolled_back" || !sameTime(d.finishedAt, ptr(t0)) || !sameTime(d.rolledBackAt, ptr(t1)) {
		t.Fatalf("dep-2 after the rollback: status %q finished %s rolled back %s; want rolled_back %s %s",
			d.status, fmtTime(d.finishedAt), fmtTime(d.rolledBackAt), fmtTime(ptr(t0)), fmtTime(ptr(t1)))
	}
}

const sampleColumns = "service, env, version, instance, time, interval_s, requests, errors, " +
	"latency_p50, latency_p90, latency_p95, latency_p99, latency_max, hist_bounds_ms, hist_counts, source_id"

type sample struct {
	version, instance  string
	time               time.Time
	requests, errors   uint64
	p50, p95, p99, max *float64
}

func f64(v float64) *float64 { return &v }

func insertSamples(t *testing.T, conn driver.Conn, sourceID string, samples []sample) {
	t.Helper()
	ctx := context.Background()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO metric_samples ("+sampleColumns+")")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples {
		err := batch.Append("payments", "prod", s.version, s.instance, s.time, 10.0, s.requests, s.errors,
			s.p50, (*float64)(nil), s.p95, s.p99, s.max,
			[]float64{50, 100, 250, 1000}, []uint64{s.requests / 2, s.requests / 4, s.requests / 8, s.requests / 8}, sourceID)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("cannot insert samples: %s", err)
	}
}

// metricSamples makes two minutes of 10 s samples from three instances of
// two versions, with latencies that some samples lack.
func metricSamples(start time.Time) []sample {
	var out []sample
	for i := range 12 {
		for j, inst := range []string{"pay-7d9f-a", "pay-7d9f-b", "pay-8c1e-a"} {
			s := sample{version: "v1.41.3", instance: inst, time: start.Add(time.Duration(i*10) * time.Second),
				requests: uint64(900 + 37*i + 101*j), errors: uint64((i + j) % 4)}
			if j == 2 {
				s.version = "v1.42.0"
			}
			if (i+j)%5 != 0 {
				s.p50 = f64(20 + float64(i) + float64(j)/2)
				s.p95 = f64(80 + 3*float64(i))
			}
			if i%3 != 0 {
				s.p99 = f64(240 + 7*float64(j))
				s.max = f64(900 + float64(i*j))
			}
			out = append(out, s)
		}
	}
	return out
}

type rollup struct {
	samples, requests, errors    uint64
	p50w, p95w, p99w             float64
	p50weight, p95weight, p99wgt uint64
	max                          float64
}

func expectRollups(samples []sample) map[[2]string]*rollup {
	want := map[[2]string]*rollup{}
	for _, s := range samples {
		key := [2]string{s.version, s.time.Truncate(time.Minute).Format(time.RFC3339)}
		r := want[key]
		if r == nil {
			r = &rollup{}
			want[key] = r
		}
		r.samples++
		r.requests += s.requests
		r.errors += s.errors
		if s.p50 != nil {
			r.p50w += *s.p50 * float64(s.requests)
			r.p50weight += s.requests
		}
		if s.p95 != nil {
			r.p95w += *s.p95 * float64(s.requests)
			r.p95weight += s.requests
		}
		if s.p99 != nil {
			r.p99w += *s.p99 * float64(s.requests)
			r.p99wgt += s.requests
		}
		if s.max != nil {
			r.max = max(r.max, *s.max)
		}
	}
	return want
}

func TestMetricSamplesAndRollupIgnoreRedelivery(t *testing.T) {
	conn, _ := migrated(t)
	ctx := context.Background()
	start := time.Date(2025, 3, 14, 11, 58, 0, 0, time.UTC)
	samples := metricSamples(start)
	// Two messages whose samples share (version, minute): instance a's, and the rest.
	var first, second []sample
	for _, s := range samples {
		if s.instance == "pay-7d9f-a" {
			first = append(first, s)
		} else {
			second = append(second, s)
		}
	}

	// Message m-1 delivered twice, m-2 once.
	insertSamples(t, conn, "m-1", first)
	insertSamples(t, conn, "m-2", second)
	insertSamples(t, conn, "m-1", first)

	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM metric_samples FINAL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != uint64(len(samples)) {
		t.Fatalf("metric_samples FINAL has %d rows, want %d", n, len(samples))
	}

	rows, err := conn.Query(ctx, `SELECT version, minute, sum(samples), sum(requests), sum(errors),
		sum(latency_p50_wsum), sum(latency_p95_wsum), sum(latency_p99_wsum),
		sum(latency_p50_weight), sum(latency_p95_weight), sum(latency_p99_weight), max(latency_max)
		FROM metrics_1m FINAL WHERE service = 'payments' AND env = 'prod'
		GROUP BY version, minute ORDER BY version, minute`)
	if err != nil {
		t.Fatalf("cannot query metrics_1m: %s", err)
	}
	defer rows.Close()
	want := expectRollups(samples)
	seen := 0
	for rows.Next() {
		var version string
		var minute time.Time
		var got rollup
		if err := rows.Scan(&version, &minute, &got.samples, &got.requests, &got.errors, &got.p50w, &got.p95w, &got.p99w,
			&got.p50weight, &got.p95weight, &got.p99wgt, &got.max); err != nil {
			t.Fatal(err)
		}
		key := [2]string{version, minute.UTC().Format(time.RFC3339)}
		w := want[key]
		if w == nil {
			t.Errorf("metrics_1m has an unexpected row for %v", key)
			continue
		}
		seen++
		if got.samples != w.samples || got.requests != w.requests || got.errors != w.errors ||
			got.p50weight != w.p50weight || got.p95weight != w.p95weight || got.p99wgt != w.p99wgt ||
			!near(got.p50w, w.p50w) || !near(got.p95w, w.p95w) || !near(got.p99w, w.p99w) || got.max != w.max {
			t.Errorf("metrics_1m %v:\n got %+v\nwant %+v", key, got, *w)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Fatalf("metrics_1m has %d (version, minute) rows, want %d", seen, len(want))
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
