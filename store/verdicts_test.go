package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/deploywatch/deploywatch/schema/chschema"
	"github.com/deploywatch/deploywatch/store"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// migrated returns a connection to a fresh, migrated database.
func migrated(t *testing.T) driver.Conn {
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
	return conn
}

func verdict(deployID string, at time.Time, status schema.VerdictStatus, final bool) *schema.Verdict {
	return &schema.Verdict{
		ID: deployID + ":verdict:" + strconv.FormatInt(at.Unix(), 10), Type: schema.TypeVerdict, DeployID: deployID,
		Service: "checkout", Env: "production", Version: "v2.14.0", Status: status, Final: final,
		Reason: string(status) + " at " + at.Format(time.TimeOnly), EvaluatedAt: schema.At(at), Comparison: schema.BeforeVsAfter,
		Baseline:  schema.Window{From: schema.At(at.Add(-time.Hour)), To: schema.At(at.Add(-30 * time.Minute))},
		Candidate: schema.Window{From: schema.At(at.Add(-30 * time.Minute)), To: schema.At(at)},
		Metrics: []schema.MetricVerdict{{Name: "latency_p99", Class: schema.MetricPass, Harm: "increase", Weight: 2,
			Baseline: schema.Stats{N: 30, Value: 310}, Candidate: schema.Stats{N: 30, Value: 305.5},
			Test: "mann_whitney", PValue: 0.7, Ratio: 0.985, Effect: -0.015, Tolerance: 0.1}},
	}
}

// insertVerdicts writes verdicts as the sink does (the columns the store reads).
func insertVerdicts(t *testing.T, conn driver.Conn, vs ...*schema.Verdict) {
	t.Helper()
	batch, err := conn.PrepareBatch(context.Background(), "INSERT INTO deploy_verdicts (id, deploy_id, service, env, status, final, comparison, evaluated_at, body, received_at)")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		body, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var final uint8
		if v.Final {
			final = 1
		}
		if err := batch.Append(v.ID, v.DeployID, v.Service, v.Env, string(v.Status), final, string(v.Comparison), v.EvaluatedAt.Time, string(body), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("cannot insert verdicts: %v", err)
	}
}

func TestVerdictsLatest(t *testing.T) {
	conn := migrated(t)
	ctx := context.Background()
	verdicts := store.NewVerdicts(conn)
	start := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)

	const deploy = "gha-checkout-8123456789-1"
	if _, err := verdicts.Latest(ctx, deploy); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("Latest before any verdict: %v, want schema.ErrNotFound", err)
	}

	interim := verdict(deploy, start.Add(5*time.Minute), schema.VerdictPending, false)
	insertVerdicts(t, conn, interim)
	got, err := verdicts.Latest(ctx, deploy)
	if err != nil || got.ID != interim.ID || got.Final || got.Status != schema.VerdictPending {
		t.Fatalf("Latest after one interim verdict: %+v, %v", got, err)
	}

	// The final verdict, an interim one evaluated after it, and a redelivered
	// copy of the final one, each in its own insert (its own part).
	final := verdict(deploy, start.Add(30*time.Minute), schema.VerdictHealthy, true)
	insertVerdicts(t, conn, final)
	insertVerdicts(t, conn, verdict(deploy, start.Add(35*time.Minute), schema.VerdictPending, false))
	insertVerdicts(t, conn, final)
	got, err = verdicts.Latest(ctx, deploy)
	if err != nil || got.ID != final.ID || !got.Final || got.Status != schema.VerdictHealthy || got.Reason != final.Reason ||
		!got.EvaluatedAt.Equal(final.EvaluatedAt.Time) || len(got.Metrics) != 1 || got.Metrics[0].Candidate.Value != 305.5 ||
		!got.Candidate.From.Equal(final.Candidate.From.Time) {
		t.Fatalf("Latest: %+v, %v; want the final verdict %s whole", got, err, final.ID)
	}

	// Lists: deploys without a verdict are left out; an id with quotes is a value.
	other := verdict("argo-search-551", start.Add(12*time.Minute), schema.VerdictBad, true)
	insertVerdicts(t, conn, other)
	many, err := verdicts.LatestFor(ctx, []string{deploy, "argo-search-551", "gha-none-1", "x' OR '1'='1", ""})
	if err != nil {
		t.Fatal(err)
	}
	if len(many) != 2 || many[deploy].ID != final.ID || many["argo-search-551"].Status != schema.VerdictBad {
		t.Fatalf("LatestFor: %v, want the final verdicts of the two deploys that have one", many)
	}
	// Rolled back and recovered: the recovery verdict judges the service, the
	// deploy stays bad.
	recovery := verdict("argo-search-551", start.Add(50*time.Minute), schema.VerdictHealthy, true)
	recovery.ID, recovery.Comparison = "argo-search-551:recovery:1", schema.RecoveryVsBaseline
	insertVerdicts(t, conn, recovery)
	if got, err := verdicts.Latest(ctx, "argo-search-551"); err != nil || got.ID != other.ID || got.Status != schema.VerdictBad {
		t.Fatalf("Latest after the recovery verdict: %+v, %v; want the deploy's own bad verdict %s", got, err, other.ID)
	}
	if none, err := verdicts.LatestFor(ctx, nil); err != nil || len(none) != 0 {
		t.Fatalf("LatestFor(nil): %v, %v; want an empty map", none, err)
	}
	// A verdict without a deploy (a regression on its own) is no deploy's.
	orphan := verdict("", start.Add(40*time.Minute), schema.VerdictBad, true)
	orphan.ID = "checkout:production:verdict:" + strconv.FormatInt(start.Add(40*time.Minute).Unix(), 10)
	insertVerdicts(t, conn, orphan)
	if _, err := verdicts.Latest(ctx, ""); !errors.Is(err, schema.ErrNotFound) {
		t.Fatalf(`Latest(""): %v, want schema.ErrNotFound`, err)
	}

	// The latest_verdicts view agrees.
	var viewID string
	if err := conn.QueryRow(ctx, "SELECT verdict_id FROM latest_verdicts WHERE deploy_id = ?", deploy).Scan(&viewID); err != nil || viewID != final.ID {
		t.Fatalf("latest_verdicts: %q, %v; want %s", viewID, err, final.ID)
	}
}

func TestVerdictsWhenClickHouseFails(t *testing.T) {
	conn := migrated(t)
	if err := conn.Exec(context.Background(), "DROP TABLE deploy_verdicts"); err != nil {
		t.Fatal(err)
	}
	_, err := store.NewVerdicts(conn).Latest(context.Background(), "gha-checkout-1")
	if err == nil || errors.Is(err, schema.ErrNotFound) {
		t.Fatalf("Latest without the table: %v, want an error other than not found", err)
	}
}
