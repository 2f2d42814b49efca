package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/alerts"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/processors/impact"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runCLI runs deploywatch with args and returns what it printed.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), err
}

// TestRulesCheck: `rules check` names every problem with its rule, line and
// field, and exits non-zero; a valid file lists its rules.
func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`rules:
  - name: bad-in-prod
    match: {env: production}
    condition: verdict.status == "bad" && metric("error_rate").ratoi > 2
    actions: [rollback, page]
  - name: slow
    condition: metric("latency_p99").class == "high"
    for: soon
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "rules", "check", bad)
	if err == nil || !strings.Contains(err.Error(), "1 of 1 rules files are invalid") {
		t.Errorf("rules check of a bad file: err %v", err)
	}
	for _, want := range []string{
		bad + ": 3 problems:",
		`rule "slow" (line 8): for: must be a duration such as 90s, 5m or 1h30m; got "soon"`,
		`rule "bad-in-prod" (line 4): condition: metric(...) has no field ratoi (it has present, name, class`,
		`rule "bad-in-prod" (line 5): actions: must be rollback or notify; got "page"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rules check output lacks %q:\n%s", want, out)
		}
	}

	out, err = runCLI(t, "rules", "check", "../../deployments/rules.example.yaml")
	if err != nil || !strings.Contains(out, "6 rules, valid") || !strings.Contains(out, "payments-error-spike") || !strings.Contains(out, "rollback,notify (dry run)") {
		t.Errorf("rules check of the example: err %v\n%s", err, out)
	}
	out, err = runCLI(t, "rules", "defaults")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alerts.ParseRules([]byte(out), "defaults"); err != nil || !strings.Contains(out, "bad-deploy-in-production") {
		t.Errorf("rules defaults printed rules that do not parse: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "rules", "check"); err == nil {
		t.Error("rules check without a file succeeded")
	}
}

// judgedVerdict runs the impact analysis' Judge over 30 minutes of baseline
// and 10 minutes of candidate traffic at 40 requests/s from 4 instances,
// with the candidate's error rate, median latency and tail latency (p95,
// p99) scaled, and stamps it as the impact processor would.
func judgedVerdict(t *testing.T, env string, errScale, p50Scale, tailScale float64, final bool, seed uint64) *schema.Verdict {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed*7+1))
	deployAt := time.Now().UTC().Add(-45 * time.Minute).Truncate(time.Minute)
	points := func(from, to time.Time, version string, errRate, p50Scale, tailScale float64) []impact.Point {
		var out []impact.Point
		for ts := from.Add(10 * time.Second); !ts.After(to); ts = ts.Add(10 * time.Second) {
			for inst := range 4 {
				reqs := math.Round(100 + rng.NormFloat64()*10)
				errs := math.Max(0, math.Round(reqs*errRate+rng.NormFloat64()*math.Sqrt(reqs*errRate)))
				noise := math.Exp(rng.NormFloat64() * 0.05)
				out = append(out, impact.Point{Time: ts, Interval: 10 * time.Second, Version: version, Instance: "i" + strconv.Itoa(inst),
					Requests: reqs, Errors: errs, P50: 45 * p50Scale * noise, P95: 45 * 2.3 * tailScale * noise, P99: 45 * 3.6 * tailScale * noise})
			}
		}
		return out
	}
	base := schema.Window{From: schema.At(deployAt.Add(-30 * time.Minute)), To: schema.At(deployAt)}
	cand := schema.Window{From: schema.At(deployAt.Add(time.Minute)), To: schema.At(deployAt.Add(11 * time.Minute))}
	v := impact.Judge(impact.Input{
		Comparison: schema.BeforeVsAfter,
		Baseline:   impact.Group{Window: base, Points: points(base.From.Time, base.To.Time, "v1", 0.005, 1, 1)},
		Candidate:  impact.Group{Window: cand, Points: points(cand.From.Time, cand.To.Time, "v2", 0.005*errScale, p50Scale, tailScale)},
		Version:    "v2", Final: final,
	}, impact.DefaultPolicy())
	v.Type, v.DeployID, v.Service, v.Env, v.Version, v.PreviousVersion = schema.TypeVerdict, "d-"+strconv.FormatUint(seed, 10), "checkout", env, "v2", "v1"
	v.EvaluatedAt = cand.To
	v.ID = v.DeployID + ":verdict:" + strconv.FormatInt(v.EvaluatedAt.Unix(), 10)
	if err := v.Validate(); err != nil {
		t.Fatalf("the judged verdict does not validate: %v", err)
	}
	return &v
}

// TestRulesOnJudgedVerdicts: the built-in rules and a few written ones
// against verdicts the impact analysis really gives.
func TestRulesOnJudgedVerdicts(t *testing.T) {
	custom, err := alerts.ParseRules([]byte(`rules:
  - name: errors-doubled
    condition: metric("error_rate").class == "high" && metric("error_rate").ratio > 2 && metric("error_rate").p_value < 0.001
  - name: p99-up-half
    condition: metric("latency_p99").class == "high" && metric("latency_p99").effect > 0.5
  - name: any-metric-high
    condition: any(verdict.metrics, .class == "high")
  - name: labelled
    match: {labels: {team: payments}}
    condition: deploy.known && deploy.labels.team == "payments" && verdict.score < 100
`), "custom")
	if err != nil {
		t.Fatal(err)
	}
	defaults := alerts.DefaultRules()
	fired := func(rs *alerts.Rules, v *schema.Verdict, d *schema.Deploy) []string {
		t.Helper()
		var names []string
		for _, r := range rs.List {
			ok, err := r.EvalVerdict(v, d)
			if err != nil {
				t.Fatalf("rule %s: %v", r.Name, err)
			}
			if ok {
				names = append(names, r.Name)
			}
		}
		return names
	}
	f := func(v *schema.Verdict, d *schema.Deploy, wantStatus schema.VerdictStatus, wantDefaults, wantCustom string) {
		t.Helper()
		if v.Status != wantStatus {
			t.Fatalf("the analysis judged %s (%s), the test expects %s", v.Status, v.Reason, wantStatus)
		}
		if got := strings.Join(fired(defaults, v, d), ","); got != wantDefaults {
			t.Errorf("%s verdict in %s (%s): built-in rules fired [%s], want [%s]", v.Status, v.Env, v.Reason, got, wantDefaults)
		}
		if got := strings.Join(fired(custom, v, d), ","); got != wantCustom {
			t.Errorf("%s verdict in %s (%s): custom rules fired [%s], want [%s]", v.Status, v.Env, v.Reason, got, wantCustom)
		}
	}
	payments := &schema.Deploy{ID: "d-1", Type: schema.TypeDeploy, Service: "checkout", Env: "production", Version: "v2",
		Status: schema.DeploySucceeded, FinishedAt: schema.At(time.Now().Add(-time.Hour)), Labels: map[string]string{"team": "payments"}}
	// Five times the errors: bad, at the end of the window and before it.
	f(judgedVerdict(t, "production", 5, 1, 1, true, 1), payments, schema.VerdictBad, "bad-deploy-in-production", "errors-doubled,any-metric-high,labelled")
	early := judgedVerdict(t, "production", 5, 1, 1, false, 1)
	if !early.Early {
		t.Fatalf("want an early call: %+v", early)
	}
	f(early, nil, schema.VerdictBad, "bad-deploy-in-production", "errors-doubled,any-metric-high")
	f(judgedVerdict(t, "staging", 5, 1, 1, true, 1), nil, schema.VerdictBad, "bad-deploy", "errors-doubled,any-metric-high")
	// Latency 1.8x everywhere: p99 is critical.
	f(judgedVerdict(t, "production", 1, 1.8, 1.8, true, 2), nil, schema.VerdictBad, "bad-deploy-in-production", "p99-up-half,any-metric-high")
	// Only the median 1.4x slower: not critical, the score drops: marginal.
	f(judgedVerdict(t, "production", 1, 1.4, 1, true, 4), payments, schema.VerdictMarginal, "marginal-deploy", "any-metric-high,labelled")
	// Nothing changed: no rule fires.
	f(judgedVerdict(t, "production", 1, 1, 1, true, 3), payments, schema.VerdictHealthy, "", "")
	// An interim verdict of the same (pending: the window is not over): still nothing.
	f(judgedVerdict(t, "production", 1, 1, 1, false, 3), nil, schema.VerdictPending, "", "")
}

// signalsOn lists the events the signals stream holds on subjects starting with prefix.
func signalsOn(t *testing.T, js jetstream.JetStream, prefix string) []schema.Event {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, schema.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []schema.Event
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil || !strings.HasPrefix(m.Subject, prefix) {
			continue
		}
		ev, err := schema.DecodeSignal(m.Data)
		if err != nil {
			t.Fatalf("a signal on %s does not decode: %v", m.Subject, err)
		}
		out = append(out, ev)
	}
	return out
}

func natsJetStream(t *testing.T, srv *server.Server) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(testenv.NATSConn(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publishSignal publishes ev to the event log as deploywatch's processes do.
func publishSignal(t *testing.T, js jetstream.JetStream, ev schema.Event) {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: schema.Subject(ev), Data: data}, jetstream.WithMsgID(ev.EventID())); err != nil {
		t.Fatal(err)
	}
}

// badVerdict is a final bad verdict of a deploy at, as the impact processor publishes it.
func badVerdict(deployID, service, env string, at time.Time) *schema.Verdict {
	return &schema.Verdict{
		ID: deployID + ":verdict:" + strconv.FormatInt(at.Unix(), 10), Type: schema.TypeVerdict, DeployID: deployID,
		Service: service, Env: env, Version: "v9", PreviousVersion: "v8", Status: schema.VerdictBad, Score: 33, Final: true, Early: true,
		Reason: "error rate 4.2x the baseline's after v9 (p < 0.001), called before the window ended", EvaluatedAt: schema.At(at),
		Comparison: schema.BeforeVsAfter, Metrics: []schema.MetricVerdict{{Name: "error_rate", Class: schema.MetricHigh, Harm: "increase",
			Critical: true, Weight: 2, Test: "poisson_rate_ratio", PValue: 0.00001, Ratio: 4.2, Effect: 3.2, Tolerance: 0.5}},
	}
}

type alertsAnswer struct {
	Alerts []schema.AlertState `json:"alerts"`
}

// TestAlertsEndToEnd: through the real serve wiring, a deploy whose errors
// jump is judged bad, the built-in rules fire an alert and publish a
// rollback signal on deploywatch.signals.rollback.checkout, both land in
// ClickHouse, the CLI lists and acknowledges the alert, and the deploy's
// rolled_back event resolves it. A service silenced with the CLI gets its
// alert recorded as silenced and no rollback signal.
func TestAlertsEndToEnd(t *testing.T) {
	natsSrv := testenv.NATS(t)
	dsn := testenv.ClickHouse(t)
	p := startServe(t, dsn, func(c *serveConfig) {
		c.impact.enabled = true
		c.alerts.enabled = true
		c.natsURL = natsSrv.ClientURL()
	})
	js := natsJetStream(t, natsSrv)
	rollbacks, err := js.OrderedConsumer(context.Background(), schema.SignalsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{schema.RollbackSubject("checkout")},
	})
	if err != nil {
		t.Fatal(err)
	}

	deployAt := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Minute)
	finished := deployAt.Add(time.Minute)
	body := fmt.Sprintf(`{"service":"checkout","env":"production","version":"v2.0.1","previous_version":"v2.0.0","status":"succeeded","started_at":%q,"finished_at":%q,"labels":{"team":"payments"}}`,
		deployAt.Format(time.RFC3339), finished.Format(time.RFC3339))
	status, answer := p.post(t, "/api/v1/deploys", []byte(body))
	if status != http.StatusAccepted {
		t.Fatalf("POST deploy: %d %v", status, answer)
	}
	deployID := answer["ids"].([]any)[0].(string)
	versionAt := func(ts time.Time) string {
		if ts.After(deployAt.Add(30 * time.Second)) {
			return "v2.0.1"
		}
		return "v2.0.0"
	}
	errorsAt := func(ts time.Time) float64 {
		if ts.After(finished) {
			return 0.025
		}
		return 0.005
	}
	for _, b := range serviceTraffic("checkout", deployAt.Add(-30*time.Minute), finished.Add(10*time.Minute), 12, errorsAt, versionAt, 11) {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}

	// The rollback signal, on the service's subject.
	msg, err := rollbacks.Next(jetstream.FetchMaxWait(90 * time.Second))
	if err != nil {
		t.Fatalf("no rollback signal on %s: %v", schema.RollbackSubject("checkout"), err)
	}
	var signal schema.RollbackSignal
	if err := json.Unmarshal(msg.Data(), &signal); err != nil {
		t.Fatal(err)
	}
	if signal.ID != deployID+":rollback" || signal.DeployID != deployID || signal.Version != "v2.0.1" || signal.PreviousVersion != "v2.0.0" ||
		signal.Rule != "bad-deploy-in-production" || signal.Labels["team"] != "payments" || msg.Headers().Get(nats.MsgIdHdr) != signal.ID {
		t.Errorf("rollback signal %+v (Nats-Msg-Id %q)", signal, msg.Headers().Get(nats.MsgIdHdr))
	}
	t.Logf("rollback signal %s: %s", signal.ID, signal.Reason)

	// Both in ClickHouse.
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		a := p.count(t, "SELECT count() FROM alert_events FINAL WHERE deploy_id = ? AND status = 'firing' AND rollback_id = ?", deployID, signal.ID)
		r := p.count(t, "SELECT count() FROM rollback_signals FINAL WHERE deploy_id = ? AND alert_id = ?", deployID, signal.AlertID)
		return a == 1 && r == 1, fmt.Sprintf("%d firing alert rows, %d rollback signal rows", a, r)
	})
	var verdictStatus string
	var score uint8
	if err := p.ch.QueryRow(context.Background(), "SELECT verdict_status, verdict_score FROM alert_events FINAL WHERE alert_id = ?", signal.AlertID).Scan(&verdictStatus, &score); err != nil {
		t.Fatal(err)
	}
	if verdictStatus != "bad" {
		t.Errorf("the alert's verdict status is %q", verdictStatus)
	}

	// The API and the CLI show it; the CLI acknowledges it.
	var list alertsAnswer
	if code := p.getJSON(t, "/api/v1/alerts?service=checkout&status=firing", &list); code != http.StatusOK || len(list.Alerts) != 1 ||
		list.Alerts[0].AlertID != signal.AlertID || list.Alerts[0].Severity != "critical" || list.Alerts[0].RollbackID != signal.ID {
		t.Fatalf("GET /api/v1/alerts: %d %+v", code, list)
	}
	out, err := runCLI(t, "alerts", "list", "--url", p.api, "--service", "checkout")
	if err != nil || !strings.Contains(out, "firing (rollback)") || !strings.Contains(out, signal.AlertID) || !strings.Contains(out, "bad-deploy-in-production") {
		t.Errorf("alerts list: err %v\n%s", err, out)
	}
	ackID, err := runCLI(t, "ack", "--url", p.api, "--by", "ana", "--comment", "watching the rollback", signal.AlertID)
	if err != nil || strings.TrimSpace(ackID) == "" {
		t.Fatalf("ack: %q %v", ackID, err)
	}
	if _, err := runCLI(t, "ack", "--url", p.api, "--by", "ana", "no-such-alert"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("ack of an unknown alert: %v", err)
	}
	// The rollback agent reports the deploy rolled back: the alert resolves.
	rolledBack := fmt.Sprintf(`{"id":%q,"service":"checkout","env":"production","version":"v2.0.1","previous_version":"v2.0.0","status":"rolled_back","finished_at":%q}`,
		deployID, finished.Add(12*time.Minute).Format(time.RFC3339))
	if status, answer := p.post(t, "/api/v1/deploys", []byte(rolledBack)); status != http.StatusAccepted {
		t.Fatalf("POST rolled_back: %d %v", status, answer)
	}
	var got schema.AlertState
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		got = schema.AlertState{}
		code := p.getJSON(t, "/api/v1/alerts/"+signal.AlertID, &got)
		return code == http.StatusOK && got.Status == schema.AlertResolved && len(got.Acks) == 1,
			fmt.Sprintf("alert %s (%s), %d acks", got.Status, got.Resolution, len(got.Acks))
	})
	if got.Resolution != schema.ResolvedRolledBack || got.Acks[0].By != "ana" || got.Acks[0].Comment != "watching the rollback" || got.Acks[0].ID != strings.TrimSpace(ackID) {
		t.Errorf("alert after the rollback: %+v", got)
	}

	// A silence from the CLI: cart's bad deploy alerts, silenced, with no rollback.
	silenceID, err := runCLI(t, "silence", "--url", p.api, "--service", "cart", "--for", "2h", "--by", "bo", "--comment", "load test on cart")
	silenceID = strings.TrimSpace(silenceID)
	if err != nil || silenceID == "" {
		t.Fatalf("silence: %q %v", silenceID, err)
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		out, err = runCLI(t, "silence", "list", "--url", p.api)
		return err == nil && strings.Contains(out, silenceID), fmt.Sprintf("silence list: %v\n%s", err, out)
	})
	if !strings.Contains(out, "load test on cart") || !strings.Contains(out, "cart") {
		t.Errorf("silence list:\n%s", out)
	}
	if _, err := runCLI(t, "silence", "--url", p.api, "--for", "1h"); err == nil {
		t.Error("a silence of nothing in particular was accepted")
	}
	cart := badVerdict("cart-77", "cart", "production", time.Now().UTC().Add(5*time.Second).Truncate(time.Second))
	publishSignal(t, js, cart)
	var silenced schema.AlertState
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		var l alertsAnswer
		p.getJSON(t, "/api/v1/alerts?service=cart", &l)
		if len(l.Alerts) == 0 {
			return false, "no alert for cart yet"
		}
		silenced = l.Alerts[0]
		return true, ""
	})
	if !silenced.Silenced || silenced.SilenceID != silenceID || silenced.RollbackID != "" || silenced.DeployID != "cart-77" {
		t.Errorf("cart's alert: %+v", silenced)
	}
	if evs := signalsOn(t, js, schema.RollbackSubject("cart")); len(evs) != 0 {
		t.Errorf("%d rollback signals for silenced cart", len(evs))
	}
	if evs := signalsOn(t, js, "deploywatch.signals.rollback."); len(evs) != 1 {
		t.Errorf("%d rollback signals in all, want checkout's only", len(evs))
	}
}

// metricSample reads one sample of serve's /metrics.
func metricSample(t *testing.T, p *pipeline, name string) string {
	t.Helper()
	resp, err := http.Get(p.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// firingAlerts returns the firing alerts on the stream, "rule deploy" each, once there are n.
func firingAlerts(t *testing.T, js jetstream.JetStream, n int) []string {
	t.Helper()
	var got []string
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		got = nil
		for _, ev := range signalsOn(t, js, "deploywatch.signals.alert.") {
			if a := ev.(*schema.Alert); a.Status == schema.AlertFiring {
				got = append(got, a.Rule+" "+a.DeployID)
			}
		}
		return len(got) >= n, fmt.Sprintf("%d firing alerts, want %d: %v", len(got), n, got)
	})
	return got
}

// BenchmarkServeBadVerdictToRollbackSignal measures, through the real serve
// wiring (the sink projecting the same stream meanwhile), the time from
// publishing a bad verdict to receiving its rollback signal on
// deploywatch.signals.rollback.<service>.
func BenchmarkServeBadVerdictToRollbackSignal(b *testing.B) {
	natsSrv := testenv.NATS(b)
	startServe(b, testenv.ClickHouse(b), func(c *serveConfig) {
		c.alerts.enabled = true
		c.natsURL = natsSrv.ClientURL()
	})
	nc := testenv.NATSConn(b, natsSrv)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	sub, err := nc.SubscribeSync(schema.RollbackSubject("checkout"))
	if err != nil {
		b.Fatal(err)
	}
	at := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	var worst time.Duration
	for i := 0; b.Loop(); i++ {
		v := badVerdict("bench-"+strconv.Itoa(i), "checkout", "production", at)
		data, _ := json.Marshal(v)
		t0 := time.Now()
		if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: schema.Subject(v), Data: data}, jetstream.WithMsgID(v.ID)); err != nil {
			b.Fatal(err)
		}
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			b.Fatalf("no rollback signal for %s: %v", v.DeployID, err)
		}
		worst = max(worst, time.Since(t0))
		if !bytes.Contains(m.Data, []byte(`"deploy_id":"`+v.DeployID+`"`)) {
			b.Fatalf("got %s, want the rollback of %s", m.Data, v.DeployID)
		}
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
