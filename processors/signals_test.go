package processors

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testVerdict is one evaluation of a canary deploy of checkout, evaluated
// minutes after start, as the impact processor would publish it.
func testVerdict(deployID string, start time.Time, minutes int, status schema.VerdictStatus, final bool) *schema.Verdict {
	at := start.Add(time.Duration(minutes) * time.Minute)
	score := map[schema.VerdictStatus]int{schema.VerdictPending: 0, schema.VerdictHealthy: 100, schema.VerdictBad: 40}[status]
	return &schema.Verdict{
		ID: deployID + ":verdict:" + strconv.FormatInt(at.Unix(), 10), Type: schema.TypeVerdict, DeployID: deployID,
		Service: "checkout", Env: "production", Version: "v2.14.0", PreviousVersion: "v2.13.2",
		Status: status, Score: score, Final: final,
		Reason:      fmt.Sprintf("%s after %d minutes of v2.14.0 on 2 of 8 instances", status, minutes),
		EvaluatedAt: schema.At(at), Comparison: schema.CanaryVsBaseline,
		Baseline:  schema.Window{From: schema.At(start), To: schema.At(at)},
		Candidate: schema.Window{From: schema.At(start), To: schema.At(at)},
		Metrics: []schema.MetricVerdict{
			{Name: "error_rate", Class: schema.MetricPass, Harm: "increase", Critical: true, Weight: 3,
				Baseline:  schema.Stats{N: 9000 * minutes, Value: 0.0021, Requests: float64(9000 * minutes), Errors: float64(19 * minutes)},
				Candidate: schema.Stats{N: 3000 * minutes, Value: 0.0023, Requests: float64(3000 * minutes), Errors: float64(7 * minutes)},
				Test:      "poisson_rate_ratio", PValue: 0.62, Shift: 0.0002, Ratio: 1.09, Effect: 0.09, Tolerance: 0.25},
			{Name: "latency_p95", Class: schema.MetricPass, Harm: "increase", Weight: 2,
				Baseline:  schema.Stats{N: 6 * minutes, Value: 121.5},
				Candidate: schema.Stats{N: 6 * minutes, Value: 124.1},
				Test:      "mann_whitney", PValue: 0.41, Shift: 2.2, Ratio: 1.021, Effect: 0.021, Tolerance: 0.1},
		},
	}
}

// publishVerdict publishes v on the signals stream with msgID as Nats-Msg-Id.
func (e *env) publishVerdict(t *testing.T, v *schema.Verdict, msgID string) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: schema.Subject(v), Data: data}, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatalf("cannot publish verdict %s: %v", v.ID, err)
	}
}

// latest reads a deploy's latest verdict from the latest_verdicts view.
func (e *env) latest(t *testing.T, deployID string) (verdictID string, final uint8, evaluations uint64, body string) {
	t.Helper()
	rows, err := e.ch.Query(context.Background(), "SELECT verdict_id, final, evaluations, body FROM latest_verdicts WHERE deploy_id = ?", deployID)
	if err != nil {
		t.Fatalf("cannot read latest_verdicts: %v", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
		if err := rows.Scan(&verdictID, &final, &evaluations, &body); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n > 1 {
		t.Fatalf("latest_verdicts has %d rows for deploy %s, want at most 1", n, deployID)
	}
	return verdictID, final, evaluations, body
}

// TestSinkVerdictPublishedTwiceIsOneRow: a verdict that reaches the sink twice
// (republished after JetStream's duplicate window, or redelivered) is one
// verdict to every reader.
func TestSinkVerdictPublishedTwiceIsOneRow(t *testing.T) {
	e := newEnv(t)
	start := time.Now().UTC().Add(-40 * time.Minute).Truncate(time.Minute)
	v := testVerdict("gha-checkout-8123456789-1", start, 30, schema.VerdictHealthy, true)
	// The same Nats-Msg-Id twice: JetStream keeps one message.
	e.publishVerdict(t, v, v.ID)
	e.publishVerdict(t, v, v.ID)
	// Another message id with the same verdict: both messages reach the sink.
	e.publishVerdict(t, v, v.ID+"-republished")

	stop := runSink(t, e, SinkConfig{FlushInterval: 100 * time.Millisecond})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := e.count(t, "SELECT count() FROM deploy_verdicts")
		return n == 2, fmt.Sprintf("%d of the 2 copies written", n)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, "SELECT count() FROM deploy_verdicts FINAL"); n != 1 {
		t.Errorf("%d verdict rows with FINAL, want 1", n)
	}
	if n := e.count(t, "SELECT count() FROM events FINAL WHERE type = 'verdict' AND event_id = ?", v.ID); n != 1 {
		t.Errorf("%d raw verdict events with FINAL, want 1", n)
	}
	id, final, evaluations, body := e.latest(t, v.DeployID)
	if id != v.ID || final != 1 || evaluations != 1 {
		t.Errorf("latest verdict %s (final %d, %d evaluations), want %s, final, 1 evaluation", id, final, evaluations, v.ID)
	}
	got, err := schema.DecodeVerdict([]byte(body))
	if err != nil {
		t.Fatalf("the stored body is not a verdict: %v", err)
	}
	if got.Reason != v.Reason || len(got.Metrics) != 2 || got.Metrics[1].Candidate.Value != 124.1 {
		t.Errorf("stored verdict %+v, want the published one", got)
	}

	// The typed columns match the body.
	var (
		status, comparison  string
		score, early        uint8
		names, classes      []string
		ratios, pValues     []float64
		evaluatedAt, candTo time.Time
	)
	if err := e.ch.QueryRow(context.Background(), `SELECT status, comparison, score, early, metric_names, metric_classes,
		metric_ratios, metric_p_values, evaluated_at, candidate_to FROM deploy_verdicts FINAL WHERE id = ?`, v.ID).Scan(
		&status, &comparison, &score, &early, &names, &classes, &ratios, &pValues, &evaluatedAt, &candTo); err != nil {
		t.Fatal(err)
	}
	if status != "healthy" || comparison != "canary_vs_baseline" || score != 100 || early != 0 ||
		strings.Join(names, ",") != "error_rate,latency_p95" || strings.Join(classes, ",") != "pass,pass" ||
		ratios[0] != 1.09 || pValues[1] != 0.41 || !evaluatedAt.Equal(v.EvaluatedAt.Time) || !candTo.Equal(v.Candidate.To.Time) {
		t.Errorf("row: %s %s %d %d %v %v %v %v %s %s", status, comparison, score, early, names, classes, ratios, pValues, evaluatedAt, candTo)
	}
}

// TestSinkLatestVerdictPrefersFinal: interim verdicts, then the final one:
// the final one is the deploy's verdict, even against an interim one
// evaluated later (as a replay of an older processor might publish).
func TestSinkLatestVerdictPrefersFinal(t *testing.T) {
	e := newEnv(t)
	start := time.Now().UTC().Add(-50 * time.Minute).Truncate(time.Minute)
	const deploy = "gha-checkout-8123456790-1"
	stop := runSink(t, e, SinkConfig{FlushInterval: 100 * time.Millisecond})
	waitLatest := func(wantID string, wantFinal uint8, wantEvaluations uint64) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() (bool, string) {
			id, final, evaluations, _ := e.latest(t, deploy)
			return id == wantID && final == wantFinal && evaluations == wantEvaluations,
				fmt.Sprintf("latest %q final=%d after %d evaluations; want %q final=%d after %d", id, final, evaluations, wantID, wantFinal, wantEvaluations)
		})
	}

	first := testVerdict(deploy, start, 5, schema.VerdictPending, false)
	e.publishVerdict(t, first, first.ID)
	waitLatest(first.ID, 0, 1)
	second := testVerdict(deploy, start, 10, schema.VerdictPending, false)
	e.publishVerdict(t, second, second.ID)
	waitLatest(second.ID, 0, 2)
	final := testVerdict(deploy, start, 30, schema.VerdictBad, true)
	final.Early = true
	e.publishVerdict(t, final, final.ID)
	waitLatest(final.ID, 1, 3)
	late := testVerdict(deploy, start, 40, schema.VerdictPending, false)
	e.publishVerdict(t, late, late.ID)
	waitLatest(final.ID, 1, 4)

	// Another deploy's verdicts do not mix in.
	other := testVerdict("argo-search-551", start, 10, schema.VerdictHealthy, true)
	other.Service = "search"
	e.publishVerdict(t, other, other.ID)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := e.count(t, "SELECT count() FROM latest_verdicts")
		return n == 2, fmt.Sprintf("%d deploys in latest_verdicts, want 2", n)
	})
	waitLatest(final.ID, 1, 4)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSinkDeadLettersUnknownSignals: a signal of a type this version does not
// know, or a verdict that does not validate, goes to the dead-letter stream
// with the reason; the verdicts after it are written.
func TestSinkDeadLettersUnknownSignals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.js.Publish(ctx, "deploywatch.signals.forecast.checkout", []byte(`{"type":"forecast","id":"a1","service":"checkout"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(ctx, "deploywatch.signals.verdict.broken", []byte(`{"type":"verdict","id":"x:verdict:1","service":"broken","env":"production","status":"great","evaluated_at":"2026-03-02T14:15:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	v := testVerdict("gha-checkout-8123456791-1", time.Now().UTC().Add(-time.Hour), 30, schema.VerdictHealthy, true)
	e.publishVerdict(t, v, v.ID)
	stop := runSink(t, e, SinkConfig{FlushInterval: 100 * time.Millisecond})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := e.count(t, "SELECT count() FROM deploy_verdicts FINAL WHERE id = ?", v.ID)
		return n == 1, "waiting for the verdict after the bad signals"
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dl, err := e.js.Stream(ctx, schema.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dl.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("%d dead letters, want 2", info.State.Msgs)
	}
	for seq, want := range map[uint64]struct{ from, reason string }{
		info.State.FirstSeq:     {"deploywatch.signals.forecast.checkout", `"forecast", which this version of deploywatch does not know`},
		info.State.FirstSeq + 1: {"deploywatch.signals.verdict.broken", "status: must be pending, healthy, marginal, bad or inconclusive"},
	} {
		raw, err := dl.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		h := nats.Header(raw.Header)
		if raw.Subject != schema.DeadLetterSubject(schema.SignalsStream) || h.Get(schema.DeadLetterSubjectHeader) != want.from ||
			!strings.Contains(h.Get(schema.DeadLetterReasonHeader), want.reason) {
			t.Errorf("dead letter %d on %s: from %q reason %q; want from %q and a reason with %q", seq, raw.Subject,
				h.Get(schema.DeadLetterSubjectHeader), h.Get(schema.DeadLetterReasonHeader), want.from, want.reason)
		}
	}
}
