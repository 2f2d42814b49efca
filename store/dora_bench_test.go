package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/deploywatch/deploywatch/schema/chschema"
	"github.com/deploywatch/deploywatch/store"
)

// doraHistory is 30 days of 100 services from 2026-03-08 20:00 UTC: a deploy
// every 108 s (24,000; 8 a day per service), each started then finished,
// every 20th failed, every 13th rolled back; three commits each, the third
// named by sha only and found in the commits table (72,000 rows); three
// verdicts each, every 11th finally bad; 1,000 incidents, two in three
// linked to a deploy. The statements are constant SQL: no values from Go.
var doraHistory = []string{
	`INSERT INTO deploy_changes (deploy_id, status, status_rank, service, env, version, event_time, started_at, finished_at, url, label_keys, label_values, commit_shas, commit_times)
	SELECT concat('dep-', toString(number)), 'started', 1, concat('svc-', toString(number % 100)), 'production', concat('v', toString(number)),
		toDateTime(1773000000 + number * 108, 'UTC') AS t, t, NULL, '', ['team'], [concat('team-', toString(number % 7))],
		[concat('sha', toString(number * 3)), concat('sha', toString(number * 3 + 1)), concat('sha', toString(number * 3 + 2))],
		[t - 3600, t - 7200, toDateTime(0, 'UTC')]
	FROM system.numbers LIMIT 24000`,
	`INSERT INTO deploy_changes (deploy_id, status, status_rank, service, env, version, event_time, started_at, finished_at, url, label_keys, label_values, commit_shas, commit_times)
	SELECT concat('dep-', toString(number)), if(number % 20 = 0, 'failed', 'succeeded'), 2, concat('svc-', toString(number % 100)), 'production', concat('v', toString(number)),
		toDateTime(1773000300 + number * 108, 'UTC') AS t, NULL, t, 'https://ci.example.com', ['team'], [concat('team-', toString(number % 7))],
		[concat('sha', toString(number * 3)), concat('sha', toString(number * 3 + 1)), concat('sha', toString(number * 3 + 2))],
		[t - 3600, t - 7200, toDateTime(0, 'UTC')]
	FROM system.numbers LIMIT 24000`,
	`INSERT INTO deploy_changes (deploy_id, status, status_rank, service, env, version, event_time, started_at, finished_at, url, label_keys, label_values, commit_shas, commit_times)
	SELECT concat('dep-', toString(number * 13)), 'rolled_back', 3, concat('svc-', toString((number * 13) % 100)), 'production', 'v0',
		toDateTime(1773000900 + number * 13 * 108, 'UTC') AS t, NULL, t, '', ['rollback_agent'], ['agent-1'], [], []
	FROM system.numbers LIMIT 1800`,
	`INSERT INTO deploy_verdicts (id, deploy_id, service, env, status, final, reason, evaluated_at, body, received_at)
	SELECT concat('dep-', toString(intDiv(number, 3)), ':verdict:', toString(number % 3)), concat('dep-', toString(intDiv(number, 3))), 'x', 'production',
		if(number % 3 = 2, if(intDiv(number, 3) % 11 = 0, 'bad', 'healthy'), 'pending'), toUInt8(number % 3 = 2), 'r',
		toDateTime(1773000600 + intDiv(number, 3) * 108 + (number % 3) * 60, 'UTC'), '{}', now()
	FROM system.numbers LIMIT 72000`,
	`INSERT INTO incident_changes (incident_id, status, service, env, time, title, source, deploy_id)
	SELECT concat('inc-', toString(intDiv(number, 2))), if(number % 2 = 0, 'opened', 'resolved'), concat('svc-', toString(intDiv(number, 2) % 100)), 'production',
		toDateTime(1773000000 + intDiv(number, 2) * 2592 + (number % 2) * 1800, 'UTC'), 't', 'alertmanager',
		if(intDiv(number, 2) % 3 = 0, '', concat('dep-', toString(intDiv(number, 2) * 24)))
	FROM system.numbers LIMIT 2000`,
	`INSERT INTO commits (service, repo, ref, sha, commit_time, author, message, head_sha, push_id, pushed_at)
	SELECT concat('svc-', toString(intDiv(number, 3) % 100)), 'acme/x', 'refs/heads/main', concat('sha', toString(intDiv(number, 3) * 3 + 2)),
		toDateTime(1773000000 + intDiv(number, 3) * 108 - 1800 - (number % 3) * 600, 'UTC'), 'dev', 'change',
		concat('sha', toString(intDiv(number, 3) * 3 + 2)), concat('push-', toString(intDiv(number, 3))), now()
	FROM system.numbers LIMIT 72000`,
}

// BenchmarkDoraReport times a 12-week report (five queries over the views)
// over doraHistory: of everything, and of one team.
func BenchmarkDoraReport(b *testing.B) {
	ctx := context.Background()
	dsn := testenv.ClickHouse(b)
	conn, err := chschema.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	db, err := chschema.DatabaseFromDSN(dsn)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := chschema.Migrate(ctx, conn, db, nil); err != nil {
		b.Fatalf("cannot migrate: %s", err)
	}
	for _, q := range doraHistory {
		if err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("cannot seed the history: %v", err)
		}
	}
	dora := store.NewDora(conn)
	now := time.Unix(1773000000+24000*108, 0).UTC()
	for _, bc := range []struct {
		name string
		f    schema.DoraFilter
	}{
		{"all", schema.DoraFilter{Weeks: 12, Now: now}},
		{"team", schema.DoraFilter{Weeks: 12, Now: now, Team: "team-3"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var weeks, commits int
			for b.Loop() {
				r, err := dora.Report(ctx, bc.f)
				if err != nil {
					b.Fatal(err)
				}
				weeks, commits = len(r.Weeks), 0
				for _, w := range r.Weeks {
					commits += w.Commits
				}
			}
			if weeks != 12 || commits == 0 {
				b.Fatalf("%d weeks with %d commits, want 12 weeks and commits", weeks, commits)
			}
		})
	}
}
