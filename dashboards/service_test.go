package dashboards_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

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

// insertVerdict writes v into deploy_verdicts as the sink does: its metric
// columns from its metrics, its body as published.
func insertVerdict(t *testing.T, ch driver.Conn, v schema.Verdict) {
	t.Helper()
	ctx := context.Background()
	body, err := json.Marshal(&v)
	if err != nil {
		t.Fatal(err)
	}
	var names, classes []string
	var ratios, pValues []float64
	for _, m := range v.Metrics {
		names, classes = append(names, m.Name), append(classes, string(m.Class))
		ratios, pValues = append(ratios, m.Ratio), append(pValues, m.PValue)
	}
	batch, err := ch.PrepareBatch(ctx, `INSERT INTO deploy_verdicts (id, deploy_id, service, env, version, previous_version,
		status, score, final, reason, comparison, evaluated_at, metric_names, metric_classes, metric_ratios, metric_p_values,
		body, received_at)`)
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append(v.ID, v.DeployID, v.Service, v.Env, v.Version, v.PreviousVersion, string(v.Status), uint8(v.Score),
		b2u(v.Final), v.Reason, string(v.Comparison), v.EvaluatedAt.Time, names, classes, ratios, pValues,
		string(body), v.EvaluatedAt.Time.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("cannot insert verdict %s: %v", v.ID, err)
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// TestRecentDeploysWithoutAVerdict: a deploy the analysis never judged (a
// failed one) shows no score and no evaluation, not the LEFT JOIN's
// defaults (score 0, coloured red, and "interim"); a bad deploy rolled back
// shows its own verdict, not the recovery verdict published after the
// rollback (final, healthy and newer).
func TestRecentDeploysWithoutAVerdict(t *testing.T) {
	s := seed(t, seedhistory.Config{Services: 4, Days: 30, Seed: 1})
	ctx := context.Background()
	var service, failedID, judgedID, rolledBackID string
	if err := s.ch.QueryRow(ctx, `SELECT service, deploy_id FROM deploy_changes WHERE status = 'failed'
		ORDER BY deploy_id LIMIT 1`).Scan(&service, &failedID); err != nil {
		t.Fatalf("the seeded history has no failed deploy: %v", err)
	}
	if err := s.ch.QueryRow(ctx, `SELECT deploy_id FROM deploy_verdicts WHERE service = ? AND final = 1
		AND comparison != 'recovery_vs_baseline' ORDER BY deploy_id LIMIT 1`, service).Scan(&judgedID); err != nil {
		t.Fatal(err)
	}
	if err := s.ch.QueryRow(ctx, `SELECT deploy_id FROM deploy_verdicts WHERE service = ? AND final = 1
		AND comparison = 'recovery_vs_baseline' AND status = 'healthy' ORDER BY deploy_id LIMIT 1`, service).Scan(&rolledBackID); err != nil {
		t.Fatalf("the seeded history has no recovery verdict after a rollback of %s: %v", service, err)
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
	rolledBack, ok := rows[rolledBackID]
	if !ok {
		t.Fatalf("Recent deploys does not list the deploy rolled back %s", rolledBackID)
	}
	if rolledBack["verdict"] != "bad" || rolledBack["status"] != "rolled_back" || rolledBack["evaluation"] != "final" {
		t.Errorf("a bad deploy rolled back, then recovered: verdict %v, status %v, evaluation %q; want bad, rolled_back, final",
			rolledBack["verdict"], rolledBack["status"], rolledBack["evaluation"])
	}
}

// TestRecentDeploysKeepTheirVerdictWhenTheRangeStartsAfterIt: a deploy
// listed because its rollback is in the time range shows its verdict, which
// came before the range's start (between the verdict and the rollback).
func TestRecentDeploysKeepTheirVerdictWhenTheRangeStartsAfterIt(t *testing.T) {
	s := seed(t, seedhistory.Config{Services: 2, Days: 7, Seed: 6})
	ctx := context.Background()
	var service, id string
	var judgedAt time.Time
	if err := s.ch.QueryRow(ctx, `SELECT service, deploy_id, evaluated_at FROM deploy_verdicts
		WHERE status = 'bad' AND final = 1 AND comparison != 'recovery_vs_baseline'
		AND deploy_id IN (SELECT deploy_id FROM deploy_changes WHERE status = 'rolled_back')
		ORDER BY evaluated_at DESC LIMIT 1`).Scan(&service, &id, &judgedAt); err != nil {
		t.Fatalf("the seeded history has no bad deploy rolled back: %v", err)
	}
	var rolledBack time.Time
	if err := s.ch.QueryRow(ctx, `SELECT event_time FROM deploy_changes WHERE deploy_id = ? AND status = 'rolled_back'`,
		id).Scan(&rolledBack); err != nil {
		t.Fatal(err)
	}
	from := judgedAt.Add(rolledBack.Sub(judgedAt) / 2)
	e := expansion{from: from, to: s.end, interval: time.Minute,
		vars: map[string]variable{"env": single("production"), "service": single(service)}}
	row, ok := rowsBy(t, figureRows(t, s.ch, expand(t, serviceQuery(t, "Recent deploys"), e)))[id]
	if !ok {
		t.Fatalf("Recent deploys from %s does not list %s, rolled back at %s", from, id, rolledBack)
	}
	if row["verdict"] != "bad" || num(t, row, "score") == nil || row["evaluation"] != "final" {
		t.Errorf("deploy %s judged at %s, range from %s: verdict %v, score %s, evaluation %q; want bad, its score, final",
			id, judgedAt, from, row["verdict"], showFigure(num(t, row, "score")), row["evaluation"])
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
	insertVerdict(t, s.ch, recovery)

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

// TestCanaryAgainstBaselineLeavesMetricsWithoutDataEmpty: a metric the
// verdict could not judge (class nodata) has figures 0 and ratio 1 in the
// verdict, which are not measurements: the table shows nothing for it,
// not "0 ms / 0 ms / 1.00×", and the judged metrics beside it as usual.
func TestCanaryAgainstBaselineLeavesMetricsWithoutDataEmpty(t *testing.T) {
	s := seed(t, seedhistory.Config{Services: 2, Days: 3, Seed: 3})
	service := s.sum.Services[0]
	at := s.end.Add(-time.Hour)
	v := schema.Verdict{ID: "deploy-nodata:verdict:1", Type: schema.TypeVerdict, DeployID: "deploy-nodata", Service: service,
		Env: "production", Version: "v9.0.0", PreviousVersion: "v8.0.0", Status: schema.VerdictInconclusive, Score: 50, Final: true,
		Reason: "too few samples to judge error rate and latency", EvaluatedAt: schema.At(at), Comparison: schema.CanaryVsBaseline,
		Metrics: []schema.MetricVerdict{
			{Name: "request_rate", Class: schema.MetricPass, Baseline: schema.Stats{N: 30, Value: 4}, Candidate: schema.Stats{N: 30, Value: 4.4}, Ratio: 1.1, PValue: 0.4},
			// What the judge writes for a metric without enough samples.
			{Name: "error_rate", Class: schema.MetricNoData, Ratio: 1, PValue: 1, Note: "no requests on the baseline"},
			{Name: "latency_p95", Class: schema.MetricNoData, Ratio: 1, PValue: 1, Note: "2 samples, at least 5 needed"},
			{Name: "latency_p99", Class: schema.MetricNoData, Ratio: 1, PValue: 1, Note: "2 samples, at least 5 needed"},
		}}
	insertVerdict(t, s.ch, v)

	e := expansion{from: s.end.Add(-6 * time.Hour), to: s.end, interval: time.Minute,
		vars: map[string]variable{"env": single("production"), "service": single(service)}}
	row, ok := rowsBy(t, figureRows(t, s.ch, expand(t, serviceQuery(t, "Canary against baseline"), e)))[v.DeployID]
	if !ok {
		t.Fatalf("the table does not list deploy %s", v.DeployID)
	}
	for _, m := range []string{"error_rate", "latency_p95", "latency_p99"} {
		for _, col := range []string{m + "_baseline", m + "_candidate", m + "_ratio"} {
			if got := num(t, row, col); got != nil {
				t.Errorf("%s of a metric without data: %v, want null", col, *got)
			}
		}
	}
	for col, want := range map[string]float64{"request_rate_baseline": 4, "request_rate_candidate": 4.4, "request_rate_ratio": 1.1} {
		if got := num(t, row, col); !sameFigure(got, &want) {
			t.Errorf("%s: %s, want %v", col, showFigure(got), want)
		}
	}
	if row["harmful"] != "" {
		t.Errorf("harmful = %q, want nothing", row["harmful"])
	}
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
