package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/deploywatch/deploywatch/store"
)

// insertIncidents writes incident changes as the sink does (its columns).
func insertIncidents(t *testing.T, conn driver.Conn, changes ...schema.Incident) {
	t.Helper()
	batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO incident_changes (incident_id, status, service, env, time, title, source, deploy_id)")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range changes {
		if err := batch.Append(in.ID, string(in.Status), in.Service, in.Env, in.Time.Time, in.Title, in.Source, in.DeployID); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("cannot insert incident changes: %v", err)
	}
}

// insertDeploy writes deploy changes as the sink does (the columns the
// deploys view folds for the durations).
func insertDeploy(t *testing.T, conn driver.Conn, changes ...schema.Deploy) {
	t.Helper()
	batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO deploy_changes (deploy_id, status, status_rank, service, env, version, event_time, started_at, finished_at)")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range changes {
		var started, finished *time.Time
		if !d.StartedAt.Time.IsZero() {
			started = &d.StartedAt.Time
		}
		if !d.FinishedAt.Time.IsZero() {
			finished = &d.FinishedAt.Time
		}
		if err := batch.Append(d.ID, string(d.Status), d.Status.Rank(), d.Service, d.Env, d.Version, d.EventTime().Time, started, finished); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("cannot insert deploy changes: %v", err)
	}
}

func change(id, service string, status schema.IncidentStatus, at time.Time, title, deployID string) schema.Incident {
	return schema.Incident{ID: id, Type: schema.TypeIncident, Service: service, Env: "production", Status: status,
		Time: schema.At(at), Title: title, Source: "alertmanager", DeployID: deployID}
}

func secondsOf(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestIncidents(t *testing.T) {
	conn := migrated(t)
	ctx := context.Background()
	incidents := store.NewIncidents(conn)
	t0 := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	const deploy = "gha-checkout-8123456789-1"

	// A deploy finished at 14:05 and rolled back at 14:20; the incident it
	// caused opened at 14:09 and resolved at 14:31, its changes delivered
	// twice, in separate inserts; the resolve names neither title nor deploy.
	insertDeploy(t, conn,
		schema.Deploy{ID: deploy, Service: "checkout", Env: "production", Version: "v2.14.0", Status: schema.DeploySucceeded,
			StartedAt: schema.At(t0), FinishedAt: schema.At(t0.Add(5 * time.Minute))},
		schema.Deploy{ID: deploy, Service: "checkout", Env: "production", Version: "v2.13.2", Status: schema.DeployRolledBack,
			FinishedAt: schema.At(t0.Add(20 * time.Minute))})
	opened := change("am-4d5d83df5dffb6f6-1772460540", "checkout", schema.IncidentOpened, t0.Add(9*time.Minute), "checkout 5xx ratio above 2% for 2 minutes", deploy)
	resolved := change(opened.ID, "checkout", schema.IncidentResolved, t0.Add(31*time.Minute), "", "")
	insertIncidents(t, conn, opened)
	insertIncidents(t, conn, opened, resolved)
	insertIncidents(t, conn, resolved)

	// A canary: the incident opened before the deploy finished counts from its start.
	insertDeploy(t, conn, schema.Deploy{ID: "argo-search-551", Service: "search", Env: "production", Version: "2026.03.02-1",
		Status: schema.DeploySucceeded, StartedAt: schema.At(t0.Add(40 * time.Minute)), FinishedAt: schema.At(t0.Add(55 * time.Minute))})
	canary := change("deploywatch-search-1", "search", schema.IncidentOpened, t0.Add(47*time.Minute), "bad verdict", "argo-search-551")
	// Open, without a deploy; another env; one opened long ago and resolved
	// within the window; one linked to an unknown deploy; a resolve whose
	// opened change never arrived.
	open := change("am-aafc8f55454a7799-1772463600", "payments-api", schema.IncidentOpened, t0.Add(60*time.Minute), "p99 latency high", "")
	staging := change("am-7e6fd185efb7800e-1772460488", "checkout", schema.IncidentOpened, t0.Add(8*time.Minute), "", "")
	staging.Env = "staging"
	old := change("pd-Q1W2E3", "checkout", schema.IncidentOpened, t0.Add(-48*time.Hour), "disk full", "")
	oldResolved := change("pd-Q1W2E3", "checkout", schema.IncidentResolved, t0.Add(10*time.Minute), "", "")
	unknownDeploy := change("inc-unknown-deploy", "checkout", schema.IncidentOpened, t0.Add(2*time.Minute), "x", "gha-never-seen-1")
	orphan := change("inc-orphan", "checkout", schema.IncidentResolved, t0.Add(3*time.Minute), "", "")
	insertIncidents(t, conn, canary, open, staging, old, oldResolved, unknownDeploy, orphan)

	got, err := incidents.GetIncident(ctx, opened.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != opened.ID || got.Service != "checkout" || got.Env != "production" || got.Status != schema.IncidentStateResolved ||
		got.Title != opened.Title || got.Source != "alertmanager" || got.DeployID != deploy ||
		got.OpenedAt == nil || !got.OpenedAt.Equal(t0.Add(9*time.Minute)) || got.OpenedAt.Location() != time.UTC ||
		got.ResolvedAt == nil || !got.ResolvedAt.Equal(t0.Add(31*time.Minute)) {
		t.Fatalf("GetIncident: %+v", got)
	}
	f := func(name string, got *float64, want any) {
		t.Helper()
		if secondsOf(got) != want {
			t.Errorf("%s = %v, want %v", name, secondsOf(got), want)
		}
	}
	f("mttr_s", got.MTTRS, 22*60.0)
	f("time_to_recover_s", got.TimeToRecoverS, 22*60.0)
	f("time_to_detect_s", got.TimeToDetectS, 4*60.0)      // 14:09 − 14:05
	f("time_to_rollback_s", got.TimeToRollbackS, 11*60.0) // 14:20 − 14:09

	c, err := incidents.GetIncident(ctx, canary.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != schema.IncidentStateOpen || c.ResolvedAt != nil {
		t.Errorf("the canary incident: %+v, want open", c)
	}
	f("canary mttr_s", c.MTTRS, nil)
	f("canary time_to_detect_s", c.TimeToDetectS, 7*60.0) // 14:47 − 14:40, the deploy finished at 14:55
	f("canary time_to_rollback_s", c.TimeToRollbackS, nil)

	u, err := incidents.GetIncident(ctx, unknownDeploy.ID)
	if err != nil || u.DeployID != "gha-never-seen-1" || u.TimeToDetectS != nil || u.TimeToRollbackS != nil {
		t.Errorf("an incident linked to an unknown deploy: %+v, %v; want its deploy_id and no deploy durations", u, err)
	}
	o, err := incidents.GetIncident(ctx, orphan.ID)
	if err != nil || o.OpenedAt != nil || o.Status != schema.IncidentStateResolved || o.MTTRS != nil {
		t.Errorf("a resolve without its opened change: %+v, %v", o, err)
	}
	if _, err := incidents.GetIncident(ctx, "x' OR '1'='1"); !errors.Is(err, schema.ErrNotFound) {
		t.Errorf("GetIncident of an unknown id: %v, want schema.ErrNotFound", err)
	}

	list := func(f schema.IncidentFilter) []string {
		t.Helper()
		found, err := incidents.ListIncidents(ctx, f)
		if err != nil {
			t.Fatalf("ListIncidents(%+v): %v", f, err)
		}
		ids := make([]string, len(found))
		for i, in := range found {
			ids[i] = in.ID
		}
		return ids
	}
	want := func(name string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %q, want %q", name, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: %q, want %q", name, got, want)
				return
			}
		}
	}
	since := t0.Add(-time.Hour)
	want("all since 13:00, newest opened first", list(schema.IncidentFilter{Since: since}),
		open.ID, canary.ID, opened.ID, staging.ID, unknownDeploy.ID)
	want("everything", list(schema.IncidentFilter{}),
		open.ID, canary.ID, opened.ID, staging.ID, unknownDeploy.ID, old.ID)
	want("checkout in production", list(schema.IncidentFilter{Service: "checkout", Env: "production", Since: since}),
		opened.ID, unknownDeploy.ID)
	want("staging", list(schema.IncidentFilter{Env: "staging", Since: since}), staging.ID)
	want("resolved", list(schema.IncidentFilter{Status: schema.IncidentStateResolved}), opened.ID, old.ID)
	want("open since 14:05", list(schema.IncidentFilter{Status: schema.IncidentStateOpen, Since: t0.Add(5 * time.Minute)}),
		open.ID, canary.ID, staging.ID)
	want("opened at since exactly", list(schema.IncidentFilter{Since: t0.Add(60 * time.Minute)}), open.ID)
	want("limit", list(schema.IncidentFilter{Since: since, Limit: 2}), open.ID, canary.ID)
	want("a service name with quotes is a value", list(schema.IncidentFilter{Service: "x' OR '1'='1"}))

	// The list carries the durations too.
	all, err := incidents.ListIncidents(ctx, schema.IncidentFilter{Service: "checkout", Env: "production"})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range all {
		if in.ID == opened.ID {
			f("listed time_to_rollback_s", in.TimeToRollbackS, 11*60.0)
			f("listed mttr_s", in.MTTRS, 22*60.0)
		}
		if in.ID == old.ID {
			f("old mttr_s", in.MTTRS, (48*time.Hour + 10*time.Minute).Seconds())
		}
	}
}

func TestIncidentsWhenClickHouseFails(t *testing.T) {
	conn := migrated(t)
	if err := conn.Exec(context.Background(), "DROP TABLE incident_changes"); err != nil {
		t.Fatal(err)
	}
	_, err := store.NewIncidents(conn).GetIncident(context.Background(), "inc-1")
	if err == nil || errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("GetIncident without the table: %v, want an error other than not found", err)
	}
	if _, err := store.NewIncidents(conn).ListIncidents(context.Background(), schema.IncidentFilter{}); err == nil {
		t.Fatal("ListIncidents without the table: no error")
	}
}
