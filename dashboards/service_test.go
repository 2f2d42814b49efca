package dashboards_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/dashboards"
	"github.com/deploywatch/deploywatch/internal/seedhistory"
	"github.com/deploywatch/deploywatch/schema"
)

// serviceQuery is the service dashboard's query of panel title.
func serviceQuery(t *testing.T, title string) string {
	t.Helper()
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if *d.Uid == dashboards.ServiceImpactUID {
			for _, q := range dashboards.ClickHouseQueries(d) {
				if q.Where == "panel "+title {
					return q.RawSQL
				}
			}
		}
	}
	t.Fatalf("the service dashboard has no panel %q", title)
	return ""
}

// rowsBy indexes rows by their deploy_id.
func rowsBy(t *testing.T, rows []map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, row := range rows {
		id, ok := row["deploy_id"].(string)
		if !ok {
			t.Fatalf("deploy_id is %T", row["deploy_id"])
		}
		out[id] = row
	}
	return out
}

// TestRecentDeploysWithoutAVerdict: a deploy the analysis never judged (a
// failed one) shows no score and no evaluation, not the LEFT JOIN's
// defaults (score 0, coloured red, and "interim").
func TestRecentDeploysWithoutAVerdict(t *testing.T) {
	s := seed(t, seedhistory.Config{Services: 4, Days: 30, Seed: 1})
	ctx := context.Background()
	var service, failedID, judgedID string
	if err := s.ch.QueryRow(ctx, `SELECT service, deploy_id FROM deploy_changes WHERE status = 'failed'
		ORDER BY deploy_id LIMIT 1`).Scan(&service, &failedID); err != nil {
		t.Fatalf("the seeded history has no failed deploy: %v", err)
	}
	if err := s.ch.QueryRow(ctx, `SELECT deploy_id FROM deploy_verdicts WHERE service = ? AND final = 1
		ORDER BY deploy_id LIMIT 1`, service).Scan(&judgedID); err != nil {
		t.Fatal(err)
	}
	e := expansion{from: s.sum.From, to: s.end, interval: time.Hour,
		vars: map[string]variable{"env": single("production"), "service": single(service)}}
	rows := rowsBy(t, figureRows(t, s.ch, expand(t, serviceQuery(t, "Recent deploys"), e)))

	failed, ok := rows[failedID]
	if !ok {
		t.Fatalf("Recent deploys does not list the failed deploy %s", failedID)
	}
	if failed["verdict"] != "none" || num(t, failed, "score") != nil || failed["evaluation"] != "" || failed["status"] != "failed" {
		t.Errorf("a deploy without a verdict: verdict %v, score %s, evaluation %q, status %v; want none, null, \"\", failed",
			failed["verdict"], showFigure(num(t, failed, "score")), failed["evaluation"], failed["status"])
	}
	judged, ok := rows[judgedID]
	if !ok {
		t.Fatalf("Recent deploys does not list the judged deploy %s", judgedID)
	}
	if judged["verdict"] == "none" || num(t, judged, "score") == nil || judged["evaluation"] != "final" {
		t.Errorf("a judged deploy: verdict %v, score %s, evaluation %q; want its verdict, a score, final",
			judged["verdict"], showFigure(num(t, judged, "score")), judged["evaluation"])
	}
}

// TestCanaryAgainstBaseline reads the comparison table of a service: per
// deploy its comparison and, per metric, the baseline's and the
// candidate's figures and their ratio, as the verdict published them; a
// recovery verdict after the rollback does not replace the deploy's own.
func TestCanaryAgainstBaseline(t *testing.T) {
	s := seed(t, seedhistory.Config{Services: 4, Days: 30, Seed: 1})
	ctx := context.Background()
	var service, badCanary, previous string
	if err := s.ch.QueryRow(ctx, `SELECT service, deploy_id, previous_version FROM deploy_verdicts
		WHERE comparison = 'canary_vs_baseline' AND status = 'bad' AND final = 1
		ORDER BY evaluated_at DESC LIMIT 1`).Scan(&service, &badCanary, &previous); err != nil {
		t.Fatalf("the seeded history has no bad canary: %v", err)
	}
	var rolling string
	if err := s.ch.QueryRow(ctx, `SELECT deploy_id FROM deploy_verdicts
		WHERE service = ? AND comparison = 'before_vs_after' AND status = 'healthy' AND final = 1
		ORDER BY evaluated_at DESC LIMIT 1`, service).Scan(&rolling); err != nil {
		t.Fatal(err)
	}
	// The bad canary was rolled back and recovered: a recovery verdict,
	// final and newer, that compares the minutes after the rollback.
	var evaluated time.Time
	if err := s.ch.QueryRow(ctx, "SELECT max(evaluated_at) FROM deploy_verdicts WHERE deploy_id = ?", badCanary).Scan(&evaluated); err != nil {
		t.Fatal(err)
	}
	recovery := schema.Verdict{ID: badCanary + ":recovery:1", Type: schema.TypeVerdict, DeployID: badCanary, Service: service,
		Env: "production", Status: schema.VerdictHealthy, Score: 100, Final: true, Reason: "recovered 2m0s after the rollback",
		EvaluatedAt: schema.At(evaluated.Add(30 * time.Minute)), Comparison: schema.RecoveryVsBaseline,
		Metrics: []schema.MetricVerdict{{Name: "error_rate", Class: schema.MetricPass, Baseline: schema.Stats{Value: 0.002},
			Candidate: schema.Stats{Value: 0.002}, Ratio: 1}}}
	body, err := json.Marshal(&recovery)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := s.ch.PrepareBatch(ctx, `INSERT INTO deploy_verdicts (id, deploy_id, service, env, status, score, final, reason,
		comparison, evaluated_at, metric_names, metric_classes, metric_ratios, metric_p_values, body, received_at)`)
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append(recovery.ID, badCanary, service, "production", "healthy", uint8(100), uint8(1), recovery.Reason,
		string(recovery.Comparison), recovery.EvaluatedAt.Time, []string{"error_rate"}, []string{"pass"}, []float64{1}, []float64{0.8},
		string(body), recovery.EvaluatedAt.Time); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	e := expansion{from: s.sum.From, to: s.end, interval: time.Hour,
		vars: map[string]variable{"env": single("production"), "service": single(service)}}
	rows := rowsBy(t, figureRows(t, s.ch, expand(t, serviceQuery(t, "Canary against baseline"), e)))
	f := func(id, col string, want float64) {
		t.Helper()
		if got := num(t, rows[id], col); !sameFigure(got, &want) {
			t.Errorf("deploy %s: %s = %s, want %v", id, col, showFigure(got), want)
		}
	}
	row, ok := rows[badCanary]
	if !ok {
		t.Fatalf("the table does not list the bad canary %s", badCanary)
	}
	if row["comparison"] != "canary_vs_baseline" || row["verdict"] != "bad" || row["harmful"] != "error_rate high" ||
		row["baseline_version"] != previous {
		t.Errorf("the bad canary: comparison %v, verdict %v, harmful %q, baseline version %v; want canary_vs_baseline, bad, error_rate high, %s",
			row["comparison"], row["verdict"], row["harmful"], row["baseline_version"], previous)
	}
	// The seed's bad deploys: errors 6.1 times the baseline's 0.2%.
	f(badCanary, "error_rate_baseline", 0.002)
	f(badCanary, "error_rate_candidate", 0.002*6.1)
	f(badCanary, "error_rate_ratio", 6.1)
	f(badCanary, "latency_p95_baseline", 130)
	f(badCanary, "latency_p95_candidate", 130*1.05)
	f(badCanary, "latency_p95_ratio", 1.05)
	f(badCanary, "latency_p99_ratio", 1.03)
	f(badCanary, "request_rate_baseline", 5.4)

	if row, ok := rows[rolling]; !ok || row["comparison"] != "before_vs_after" || row["harmful"] != "" {
		t.Errorf("the rolling deploy %s: %v, want before_vs_after with nothing harmful", rolling, row)
	}
	f(rolling, "error_rate_ratio", 1.02)
}

// TestEnvDefaultsToProduction: every dashboard with an env variable opens on
// production, as the delivery dashboard does.
func TestEnvDefaultsToProduction(t *testing.T) {
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range ds {
		for _, v := range d.Templating.List {
			if v.Name != "env" {
				continue
			}
			n++
			if v.Current == nil || v.Current.Value.String == nil || *v.Current.Value.String != "production" {
				t.Errorf("dashboard %s: variable env starts on %+v, want production", *d.Uid, v.Current)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d dashboards have an env variable, want 3 (service, fleet, delivery)", n)
	}
}
