package alerts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/alerts"
	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// engineEnv is a real embedded JetStream with deploywatch's streams and an
// alert engine running on it.
type engineEnv struct {
	t      testing.TB
	nc     *nats.Conn
	js     jetstream.JetStream
	pub    *eventlog.Publisher
	engine *alerts.Engine
	stop   func()
}

func newEngineEnv(t testing.TB, rulesYAML string) *engineEnv {
	t.Helper()
	return newEngineEnvOn(t, testenv.NATSConn(t, testenv.NATS(t)), rulesYAML)
}

// newEngineEnvOn runs the engine on the NATS server nc is connected to.
func newEngineEnvOn(t testing.TB, nc *nats.Conn, rulesYAML string) *engineEnv {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventlog.EnsureStreams(context.Background(), js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	pub, err := eventlog.NewPublisher(nc, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &engineEnv{t: t, nc: nc, js: js, pub: pub}
	e.start(rulesYAML, pub)
	return e
}

// start runs a new engine (the previous one must be stopped).
func (e *engineEnv) start(rulesYAML string, pub alerts.SignalPublisher) {
	e.t.Helper()
	rules := alerts.DefaultRules()
	if rulesYAML != "" {
		var err error
		if rules, err = alerts.ParseRules([]byte(rulesYAML), "test rules"); err != nil {
			e.t.Fatal(err)
		}
	}
	engine, err := alerts.NewEngine(context.Background(), e.js, pub, alerts.EngineConfig{Rules: rules})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- engine.Run(ctx) }()
	var once sync.Once
	e.engine = engine
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("the engine stopped with an error: %v", err)
			}
		})
	}
	e.t.Cleanup(e.stop)
}

// publish puts ev on its subject with msgID as Nats-Msg-Id.
func (e *engineEnv) publish(ev schema.Event, msgID string) {
	e.t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if msgID == "" {
		msgID = ev.EventID()
	}
	if _, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: schema.Subject(ev), Data: data}, jetstream.WithMsgID(msgID)); err != nil {
		e.t.Fatalf("cannot publish %s: %v", ev.EventID(), err)
	}
}

// derived returns the alerts and rollback signals on the signals stream, in order.
func (e *engineEnv) derived() (alertEvents []*schema.Alert, rollbacks []*schema.RollbackSignal) {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, schema.SignalsStream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if !strings.HasPrefix(m.Subject, "deploywatch.signals.alert.") && !strings.HasPrefix(m.Subject, "deploywatch.signals.rollback.") {
			continue
		}
		ev, err := schema.DecodeSignal(m.Data)
		if err != nil {
			e.t.Fatalf("the engine published a signal that does not decode: %v\n%s", err, m.Data)
		}
		if m.Header.Get(nats.MsgIdHdr) != ev.EventID() {
			e.t.Errorf("%s was published with Nats-Msg-Id %q", ev.EventID(), m.Header.Get(nats.MsgIdHdr))
		}
		switch ev := ev.(type) {
		case *schema.Alert:
			alertEvents = append(alertEvents, ev)
		case *schema.RollbackSignal:
			rollbacks = append(rollbacks, ev)
		}
	}
	return alertEvents, rollbacks
}

// waitFor polls until there are at least n alert events and r rollback
// signals, and fails when there are more.
func (e *engineEnv) waitFor(n, r int) ([]*schema.Alert, []*schema.RollbackSignal) {
	e.t.Helper()
	var as []*schema.Alert
	var rs []*schema.RollbackSignal
	testenv.Eventually(e.t, 10*time.Second, func() (bool, string) {
		as, rs = e.derived()
		return len(as) >= n && len(rs) >= r, fmt.Sprintf("%d alert events and %d rollback signals, want %d and %d", len(as), len(rs), n, r)
	})
	if len(as) != n || len(rs) != r {
		e.t.Fatalf("%d alert events and %d rollback signals, want exactly %d and %d:\n%s", len(as), len(rs), n, r, describe(as, rs))
	}
	return as, rs
}

// settled waits until the engine has judged everything published, then
// returns what it derived: for checking that nothing (more) came of it.
func (e *engineEnv) settled() ([]*schema.Alert, []*schema.RollbackSignal) {
	e.t.Helper()
	testenv.Eventually(e.t, 10*time.Second, func() (bool, string) {
		c, err := e.js.Consumer(context.Background(), schema.SignalsStream, "alerts-signals")
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return info.NumPending == 0 && info.NumAckPending == 0, fmt.Sprintf("%d verdicts waiting, %d being judged", info.NumPending, info.NumAckPending)
	})
	return e.derived()
}

func describe(as []*schema.Alert, rs []*schema.RollbackSignal) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "  alert %s %s (%s) silenced=%v dry_run=%v: %s\n", a.Status, a.AlertID, a.Resolution, a.Silenced, a.DryRun, a.Summary)
	}
	for _, r := range rs {
		fmt.Fprintf(&b, "  rollback %s of %s\n", r.ID, r.DeployID)
	}
	return b.String()
}

// testBase is a recent minute: event times must not lie in the future.
func testBase() time.Time { return time.Now().UTC().Add(-50 * time.Minute).Truncate(time.Minute) }

// testDeploy is a deploy of service to env that finished at start+1m.
func testDeploy(id, service, env string, start time.Time, status schema.DeployStatus, labels map[string]string) *schema.Deploy {
	return &schema.Deploy{
		ID: id, Type: schema.TypeDeploy, Service: service, Env: env, Version: "v2.14.0", PreviousVersion: "v2.13.2",
		Status: status, StartedAt: schema.At(start), FinishedAt: schema.At(start.Add(time.Minute)), Labels: labels,
	}
}

// testVerdict is an evaluation of deploy id at start+minutes, as the impact
// processor publishes it; errorRatio is the error rate's candidate over
// baseline (above 1.5 it is classed high).
func testVerdict(id, service, env string, start time.Time, seconds int, status schema.VerdictStatus, final bool, errorRatio float64) *schema.Verdict {
	at := start.Add(time.Minute + time.Duration(seconds)*time.Second)
	score := map[schema.VerdictStatus]int{schema.VerdictPending: 0, schema.VerdictHealthy: 100, schema.VerdictMarginal: 80, schema.VerdictBad: 40}[status]
	class, p := schema.MetricPass, 0.4
	if errorRatio > 1.5 {
		class, p = schema.MetricHigh, 0.00002
	}
	requests := 2000.0 + float64(seconds)*20
	reason := fmt.Sprintf("error rate %.1fx the baseline's after v2.14.0", errorRatio)
	return &schema.Verdict{
		ID: id + ":verdict:" + strconv.FormatInt(at.Unix(), 10), Type: schema.TypeVerdict, DeployID: id,
		Service: service, Env: env, Version: "v2.14.0", PreviousVersion: "v2.13.2",
		Status: status, Score: score, Final: final, Early: final && status == schema.VerdictBad,
		Reason: reason, EvaluatedAt: schema.At(at), Comparison: schema.BeforeVsAfter,
		Baseline:  schema.Window{From: schema.At(start.Add(-30 * time.Minute)), To: schema.At(start)},
		Candidate: schema.Window{From: schema.At(start.Add(time.Minute)), To: schema.At(at)},
		Metrics: []schema.MetricVerdict{
			{Name: "error_rate", Class: class, Harm: "increase", Critical: true, Weight: 2,
				Baseline:  schema.Stats{N: 36000, Value: 0.005, Requests: 36000, Errors: 180},
				Candidate: schema.Stats{N: int(requests), Value: 0.005 * errorRatio, Requests: requests, Errors: requests * 0.005 * errorRatio},
				Test:      "poisson_rate_ratio", PValue: p, Shift: 0.005 * (errorRatio - 1), Ratio: errorRatio, Effect: errorRatio - 1, Tolerance: 0.5},
			{Name: "latency_p95", Class: schema.MetricPass, Harm: "increase", Weight: 1,
				Baseline:  schema.Stats{N: 720, Value: 121.5},
				Candidate: schema.Stats{N: 40, Value: 124.1},
				Test:      "mann_whitney", PValue: 0.41, Shift: 2.2, Ratio: 1.021, Effect: 0.021, Tolerance: 0.25},
		},
	}
}

// TestEngineBadDeployRolledBack: with the built-in rules, a bad early
// verdict of a production deploy fires an alert and publishes one rollback
// signal; the deploy's rolled_back event resolves the alert.
func TestEngineBadDeployRolledBack(t *testing.T) {
	e := newEngineEnv(t, "")
	start := testBase()
	d := testDeploy("gha-checkout-8123456789-1", "checkout", "production", start, schema.DeploySucceeded, map[string]string{"team": "payments"})
	e.publish(d, "")
	e.publish(testVerdict(d.ID, "checkout", "production", start, 10, schema.VerdictPending, false, 1.1), "")
	e.publish(testVerdict(d.ID, "checkout", "production", start, 20, schema.VerdictHealthy, false, 1.2), "")
	bad := testVerdict(d.ID, "checkout", "production", start, 30, schema.VerdictBad, true, 5.1)
	e.publish(bad, "")

	as, rs := e.waitFor(1, 1)
	a, r := as[0], rs[0]
	wantAlertID := d.ID + ":alert:bad-deploy-in-production:" + strconv.FormatInt(bad.EvaluatedAt.Unix(), 10)
	if a.AlertID != wantAlertID || a.ID != wantAlertID+":firing" || a.Status != schema.AlertFiring || a.Rule != "bad-deploy-in-production" ||
		a.Severity != "critical" || a.DryRun || a.Silenced || a.VerdictID != bad.ID || a.VerdictStatus != schema.VerdictBad ||
		a.VerdictScore != 40 || !a.StartsAt.Equal(bad.EvaluatedAt.Time) || a.Summary != bad.Reason || a.Labels["team"] != "payments" ||
		a.RollbackID != r.ID || a.Version != "v2.14.0" || a.PreviousVersion != "v2.13.2" || a.Condition == "" {
		t.Errorf("alert %+v", a)
	}
	if r.ID != d.ID+":rollback" || r.DeployID != d.ID || r.Service != "checkout" || r.Env != "production" || r.Version != "v2.14.0" ||
		r.PreviousVersion != "v2.13.2" || r.AlertID != a.AlertID || r.VerdictID != bad.ID || r.Reason != bad.Reason || !r.At.Equal(bad.EvaluatedAt.Time) {
		t.Errorf("rollback signal %+v", r)
	}

	// The rollback agent reports back: the alert resolves.
	rolled := testDeploy(d.ID, "checkout", "production", start, schema.DeployRolledBack, nil)
	rolled.FinishedAt = schema.At(bad.EvaluatedAt.Add(40 * time.Second))
	e.publish(rolled, "")
	as, _ = e.waitFor(2, 1)
	res := as[1]
	if res.ID != wantAlertID+":resolved" || res.Status != schema.AlertResolved || res.Resolution != schema.ResolvedRolledBack ||
		!res.EndsAt.Equal(rolled.FinishedAt.Time) || !strings.Contains(res.Summary, "rolled back to v2.13.2") || !res.StartsAt.Equal(a.StartsAt.Time) {
		t.Errorf("resolved alert %+v", res)
	}
	// A verdict of the rolled-back deploy is no news.
	e.publish(testVerdict(d.ID, "checkout", "production", start, 50, schema.VerdictBad, true, 5.3), "")
	if as, rs := e.settled(); len(as) != 2 || len(rs) != 1 {
		t.Errorf("after the rollback:\n%s", describe(as, rs))
	}
}

// TestEngineWithDebianNATS: the engine on the distribution's nats-server,
// older than the embedded one (one filter subject per consumer): a bad
// production deploy still gets its alert and its rollback signal.
func TestEngineWithDebianNATS(t *testing.T) {
	const token = "engine-test-token"
	nc, err := eventlog.Connect(eventlog.ConnectOptions{URL: testenv.ExternalNATS(t, token), Token: token, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e := newEngineEnvOn(t, nc, "")
	start := testBase()
	e.publish(testDeploy("deb-1", "ledger", "production", start, schema.DeploySucceeded, map[string]string{"team": "core"}), "")
	e.publish(testVerdict("deb-1", "ledger", "production", start, 30, schema.VerdictBad, true, 4), "")
	as, rs := e.waitFor(1, 1)
	if as[0].Labels["team"] != "core" || rs[0].ID != "deb-1:rollback" {
		t.Errorf("alert %+v, rollback %+v", as[0], rs[0])
	}
	e.publish(testDeploy("deb-1", "ledger", "production", start, schema.DeployRolledBack, nil), "")
	e.waitFor(2, 1)
	e.stop()
	e.start("", e.pub) // the consumers and the state bucket open again
	e.publish(testVerdict("deb-1", "ledger", "production", start, 90, schema.VerdictBad, true, 4), "")
	if as, rs := e.settled(); len(as) != 2 || len(rs) != 1 {
		t.Errorf("after a restart:\n%s", describe(as, rs))
	}
}

// TestEngineIdempotent: the same verdict reaching the engine twice (under
// two message ids, so JetStream keeps both), and a publish that reached
// JetStream but reported a failure and was retried, give one alert and one
// rollback signal. A verdict judged before is not judged again even after
// its alert resolved: the engine does not even try to publish anything.
func TestEngineIdempotent(t *testing.T) {
	rules := `rules:
  - name: bad-in-production
    match: {env: production}
    condition: verdict.status == "bad"
    severity: critical
    actions: [rollback, notify]
`
	e := newEngineEnv(t, rules)
	e.stop()
	flaky := &flakyPublisher{pub: e.pub}
	flaky.fail.Store(1)
	e.start(rules, flaky)
	start := testBase()
	bad := testVerdict("deploy-7", "cart", "production", start, 30, schema.VerdictBad, false, 4)
	e.publish(bad, "")
	e.publish(bad, bad.ID+"-again")
	e.publish(bad, "") // dropped by JetStream: same Nats-Msg-Id
	e.waitFor(1, 1)
	if as, rs := e.settled(); len(as) != 1 || len(rs) != 1 {
		t.Errorf("want one alert and one rollback signal:\n%s", describe(as, rs))
	}
	e.publish(testVerdict("deploy-7", "cart", "production", start, 40, schema.VerdictHealthy, false, 1), "")
	e.waitFor(2, 1)
	e.publish(bad, bad.ID+"-late") // older than the last verdict judged
	e.settled()
	// The first publish failed after JetStream took it and was retried; then
	// the resolve. Nothing for the late copy.
	want := [][]string{
		{bad.DeployID + ":alert:bad-in-production:" + strconv.FormatInt(bad.EvaluatedAt.Unix(), 10) + ":firing", "deploy-7:rollback"},
		{bad.DeployID + ":alert:bad-in-production:" + strconv.FormatInt(bad.EvaluatedAt.Unix(), 10) + ":firing", "deploy-7:rollback"},
		{bad.DeployID + ":alert:bad-in-production:" + strconv.FormatInt(bad.EvaluatedAt.Unix(), 10) + ":resolved"},
	}
	if got := flaky.published(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the engine published\n  %v\nwant\n  %v", got, want)
	}
}

// flakyPublisher publishes, then reports failure while fail > 0: as when
// the acks of a publish that went through are lost. It records the ids of
// every call.
type flakyPublisher struct {
	pub  alerts.SignalPublisher
	fail atomic.Int32

	mu    sync.Mutex
	calls [][]string
}

func (f *flakyPublisher) Publish(ctx context.Context, msgs []schema.Message) error {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	f.mu.Lock()
	f.calls = append(f.calls, ids)
	f.mu.Unlock()
	if err := f.pub.Publish(ctx, msgs); err != nil {
		return err
	}
	if f.fail.Add(-1) >= 0 {
		return errors.New("no acknowledgement for 2 of 2 messages (injected)")
	}
	return nil
}

func (f *flakyPublisher) published() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// TestEngineFor: a rule with `for` fires only once its condition held over
// verdicts spanning that much event time; a verdict that breaks the streak
// starts it again; a final verdict fires at once; the alert resolves when a
// later verdict no longer meets the condition.
func TestEngineFor(t *testing.T) {
	e := newEngineEnv(t, `rules:
  - name: errors-doubled
    match: {service: "search*"}
    condition: metric("error_rate").ratio > 2
    for: 1m
    severity: critical
    actions: [notify]
`)
	start := testBase()
	id := "argo-search-551"
	v := func(sec int, ratio float64) *schema.Verdict {
		return testVerdict(id, "search", "staging", start, sec, schema.VerdictPending, false, ratio)
	}
	for sec := 10; sec <= 40; sec += 10 { // doubled for 30 s
		e.publish(v(sec, 3), "")
	}
	e.publish(v(50, 1.1), "")              // broken: the timer starts again
	for sec := 60; sec <= 110; sec += 10 { // 50 s: not yet
		e.publish(v(sec, 3), "")
	}
	if as, _ := e.settled(); len(as) != 0 {
		t.Fatalf("fired before its `for` passed:\n%s", describe(as, nil))
	}
	e.publish(v(120, 2.5), "") // 60 s since 60
	as, _ := e.waitFor(1, 0)
	pendingSince := start.Add(time.Minute + 60*time.Second)
	if a := as[0]; !a.PendingSince.Equal(pendingSince) || !a.StartsAt.Equal(start.Add(time.Minute+120*time.Second)) || a.For != "1m0s" ||
		a.AlertID != id+":alert:errors-doubled:"+strconv.FormatInt(pendingSince.Unix(), 10) || len(a.Actions) != 1 {
		t.Errorf("alert %+v", a)
	}
	e.publish(v(130, 1.0), "")
	as, _ = e.waitFor(2, 0)
	if a := as[1]; a.Status != schema.AlertResolved || a.Resolution != schema.ResolvedCleared || !a.EndsAt.Equal(start.Add(time.Minute+130*time.Second)) {
		t.Errorf("resolved %+v", a)
	}

	// Another deploy: the final verdict is the last word, `for` or not.
	other := "argo-search-552"
	e.publish(testVerdict(other, "search", "staging", start, 300, schema.VerdictPending, false, 3), "")
	e.publish(testVerdict(other, "search", "staging", start, 310, schema.VerdictBad, true, 3), "")
	as, _ = e.waitFor(3, 0)
	if a := as[2]; a.DeployID != other || a.Status != schema.AlertFiring || !a.PendingSince.Equal(start.Add(time.Minute+300*time.Second)) {
		t.Errorf("final verdict: %+v", a)
	}
}

// TestEngineDryRunAndSilence: a dry-run rule records its alert and sends no
// rollback signal; a silenced service's alert is recorded silenced and
// sends none either; another service still rolls back.
func TestEngineDryRunAndSilence(t *testing.T) {
	rules := `rules:
  - name: trial
    match: {env: staging}
    condition: verdict.status == "bad"
    actions: [rollback, notify]
    dry_run: true
  - name: bad-in-production
    match: {env: production}
    condition: verdict.status == "bad" && verdict.final
    severity: critical
    actions: [rollback, notify]
  - name: errors-doubled
    match: {service: cart}
    condition: metric("error_rate").ratio > 2
    actions: [rollback]
`
	e := newEngineEnv(t, rules)
	e.stop()
	recorder := &flakyPublisher{pub: e.pub}
	e.start(rules, recorder)
	start := testBase()
	now := time.Now().UTC().Truncate(time.Second)
	sil := &schema.Silence{Type: schema.TypeSilence, Service: "checkout", StartsAt: schema.At(start), EndsAt: schema.At(start.Add(2 * time.Hour)),
		CreatedBy: "ana", Comment: "migrating the orders table", CreatedAt: schema.At(now)}
	sil.ID = schema.NewSilenceID(sil)
	e.publish(sil, "")
	// A silence of the rule elsewhere and of another time changes nothing.
	late := &schema.Silence{Type: schema.TypeSilence, Rule: "bad-in-production", StartsAt: schema.At(start.Add(3 * time.Hour)),
		EndsAt: schema.At(start.Add(4 * time.Hour)), CreatedBy: "ana", CreatedAt: schema.At(now)}
	late.ID = schema.NewSilenceID(late)
	e.publish(late, "")

	e.publish(testVerdict("d-staging", "search", "staging", start, 30, schema.VerdictBad, true, 4), "")
	e.publish(testVerdict("d-checkout", "checkout", "production", start, 30, schema.VerdictBad, true, 4), "")
	e.publish(testVerdict("d-cart", "cart", "production", start, 30, schema.VerdictBad, true, 4), "")
	as, rs := e.waitFor(4, 1)
	byDeploy := map[string]*schema.Alert{}
	for _, a := range as {
		if a.Rule != "errors-doubled" {
			byDeploy[a.DeployID] = a
		} else if a.RollbackID != "d-cart:rollback" {
			t.Errorf("the second rule to roll back d-cart does not name its rollback: %+v", a)
		}
	}
	if a := byDeploy["d-staging"]; a == nil || !a.DryRun || a.Silenced || a.RollbackID != "" || a.Rule != "trial" || len(a.Actions) != 2 {
		t.Errorf("dry-run alert %+v", a)
	}
	if a := byDeploy["d-checkout"]; a == nil || !a.Silenced || a.SilenceID != sil.ID || a.DryRun || a.RollbackID != "" {
		t.Errorf("silenced alert %+v", a)
	}
	if a := byDeploy["d-cart"]; a == nil || a.Silenced || a.RollbackID != "d-cart:rollback" {
		t.Errorf("alert %+v", a)
	}
	if rs[0].DeployID != "d-cart" {
		t.Errorf("rolled back %s, want only d-cart", rs[0].DeployID)
	}
	// Two rules asked to roll d-cart back: one signal was ever sent.
	sent := 0
	for _, call := range recorder.published() {
		for _, id := range call {
			if strings.HasSuffix(id, ":rollback") {
				sent++
			}
		}
	}
	if sent != 1 {
		t.Errorf("%d rollback signals published, want 1", sent)
	}
}

// TestEngineReloadKeepsState: new rules take over without losing the
// alerts in flight: a firing alert of a rule that stays does not fire
// again, and resolves later; a pending `for` goes on.
func TestEngineReloadKeepsState(t *testing.T) {
	e := newEngineEnv(t, `rules:
  - name: bad-in-production
    match: {env: production}
    condition: verdict.status == "bad"
    actions: [rollback, notify]
  - name: errors-doubled
    condition: metric("error_rate").ratio > 2
    for: 30s
`)
	start := testBase()
	e.publish(testVerdict("d1", "checkout", "production", start, 10, schema.VerdictBad, false, 3), "")
	as, _ := e.waitFor(1, 1) // bad-in-production fires; errors-doubled is pending
	if as[0].Rule != "bad-in-production" {
		t.Fatalf("fired %s", as[0].Rule)
	}

	next, err := alerts.ParseRules([]byte(`rules:
  - name: bad-in-production
    match: {env: production}
    condition: verdict.status == "bad" && verdict.score < 50
    actions: [rollback, notify]
  - name: errors-doubled
    condition: metric("error_rate").ratio > 2
    for: 30s
  - name: new-rule
    condition: verdict.score < 10
`), "reloaded")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.engine.Reload(next); err != nil {
		t.Fatal(err)
	}
	if e.engine.Rules().Source != "reloaded" {
		t.Fatalf("rules in use: %s", e.engine.Rules().Source)
	}
	e.publish(testVerdict("d1", "checkout", "production", start, 20, schema.VerdictBad, false, 3), "")
	if as, rs := e.settled(); len(as) != 1 || len(rs) != 1 {
		t.Fatalf("after the reload, the firing alert fired again or the pending one fired early:\n%s", describe(as, rs))
	}
	// 30 s since the first verdict: the `for` timer kept from before the reload.
	e.publish(testVerdict("d1", "checkout", "production", start, 40, schema.VerdictBad, false, 3), "")
	as, _ = e.waitFor(2, 1)
	if as[1].Rule != "errors-doubled" || !as[1].PendingSince.Equal(start.Add(70*time.Second)) {
		t.Errorf("second alert %+v", as[1])
	}
	e.publish(testVerdict("d1", "checkout", "production", start, 50, schema.VerdictHealthy, false, 1), "")
	as, _ = e.waitFor(4, 1)
	for _, a := range as[2:] {
		if a.Status != schema.AlertResolved {
			t.Errorf("want both resolved: %+v", a)
		}
	}

	// Rules that do not validate are refused; the engine keeps its own.
	if err := e.engine.Reload(&alerts.Rules{Source: "broken", List: []*alerts.Rule{{Name: "x", Condition: "verdict.nope"}}}); err == nil ||
		!strings.Contains(err.Error(), `rule "x"`) || e.engine.Rules().Source != "reloaded" {
		t.Errorf("Reload(broken) = %v; rules in use %s", err, e.engine.Rules().Source)
	}
}

// TestEngineSurvivesRestart: the state lives in the key-value bucket: after
// a restart a firing alert resolves with its own id, a verdict seen before
// is not judged again, and a `for` timer goes on.
func TestEngineSurvivesRestart(t *testing.T) {
	rules := `rules:
  - name: bad-in-production
    match: {env: production}
    condition: verdict.status == "bad"
    actions: [rollback, notify]
  - name: slow-burn
    condition: metric("error_rate").ratio > 1.5
    for: 1m
`
	e := newEngineEnv(t, rules)
	start := testBase()
	bad := testVerdict("d1", "checkout", "production", start, 10, schema.VerdictBad, false, 2)
	e.publish(bad, "")
	first, _ := e.waitFor(1, 1)
	e.stop()

	e.start(rules, e.pub)
	e.publish(testVerdict("d1", "checkout", "production", start, 70, schema.VerdictMarginal, false, 2), "")
	as, _ := e.waitFor(3, 1)
	var resolved, slowBurn bool
	for _, a := range as[1:] {
		resolved = resolved || (a.AlertID == first[0].AlertID && a.Status == schema.AlertResolved && a.Resolution == schema.ResolvedCleared)
		slowBurn = slowBurn || (a.Rule == "slow-burn" && a.Status == schema.AlertFiring && a.PendingSince.Equal(bad.EvaluatedAt.Time))
	}
	if !resolved || !slowBurn {
		t.Errorf("after the restart, want %s resolved and slow-burn firing since the first verdict:\n%s", first[0].AlertID, describe(as, nil))
	}
}

// TestEngineJudgesKnowingTheDeploy: deploys and their verdicts waiting in
// the streams when the engine starts: every verdict is judged with its
// deploy's labels, whichever stream's messages come first.
func TestEngineJudgesKnowingTheDeploy(t *testing.T) {
	rules := `rules:
  - name: tier-1-bad
    match:
      labels: {tier: "1"}
    condition: verdict.status == "bad"
`
	e := newEngineEnv(t, rules)
	e.stop()
	start := testBase()
	const n = 30
	for i := range n {
		e.publish(testDeploy("d"+strconv.Itoa(i), "svc"+strconv.Itoa(i), "production", start, schema.DeploySucceeded, map[string]string{"tier": "1"}), "")
	}
	for i := range n {
		e.publish(testVerdict("d"+strconv.Itoa(i), "svc"+strconv.Itoa(i), "production", start, 30, schema.VerdictBad, false, 4), "")
	}
	e.start(rules, e.pub)
	as, _ := e.waitFor(n, 0)
	for _, a := range as {
		if a.Labels["tier"] != "1" {
			t.Errorf("alert without its deploy's labels: %+v", a)
		}
	}
}

// TestEngineLabelsSupersedeRegression: rules match the deploy's labels
// (from its deploy event, read before the verdict is judged); a newer
// deploy that succeeded resolves the older one's alert; a regression without
// a deploy alerts but has nothing to roll back.
func TestEngineLabelsSupersedeRegression(t *testing.T) {
	e := newEngineEnv(t, `rules:
  - name: payments-bad
    match:
      labels: {team: payments}
    condition: verdict.status == "bad" && deploy.known && deploy.labels.tier == "1"
    severity: critical
    actions: [rollback, notify]
  - name: regression
    condition: verdict.comparison == "recent_vs_earlier" && len(verdict.suspects) > 0
    actions: [rollback, notify]
`)
	start := testBase()
	e.publish(testDeploy("pay-1", "payments-api", "production", start, schema.DeploySucceeded, map[string]string{"team": "payments", "tier": "1"}), "")
	e.publish(testDeploy("search-1", "search", "production", start, schema.DeploySucceeded, map[string]string{"team": "discovery"}), "")
	e.publish(testVerdict("pay-1", "payments-api", "production", start, 30, schema.VerdictBad, false, 4), "")
	e.publish(testVerdict("search-1", "search", "production", start, 30, schema.VerdictBad, false, 4), "")
	as, rs := e.waitFor(1, 1)
	if as[0].DeployID != "pay-1" || as[0].Labels["tier"] != "1" || rs[0].Labels["team"] != "payments" || rs[0].Severity != "critical" {
		t.Errorf("alert %+v, rollback %+v", as[0], rs[0])
	}

	// Fixed forward: a newer deploy succeeded.
	e.publish(testDeploy("pay-2", "payments-api", "production", start.Add(5*time.Minute), schema.DeploySucceeded, map[string]string{"team": "payments"}), "")
	as, _ = e.waitFor(2, 1)
	if a := as[1]; a.AlertID != as[0].AlertID || a.Resolution != schema.ResolvedSuperseded || !strings.Contains(a.Summary, "pay-2") {
		t.Errorf("superseded: %+v", a)
	}
	// A late verdict of the superseded deploy is no news.
	e.publish(testVerdict("pay-1", "payments-api", "production", start, 400, schema.VerdictBad, true, 4), "")

	reg := testVerdict("", "orders", "production", start, 600, schema.VerdictBad, true, 3)
	reg.ID = "regression:orders:production:" + strconv.FormatInt(reg.EvaluatedAt.Unix(), 10)
	reg.Comparison = schema.RecentVsEarlier
	reg.Suspects = []schema.DeployRef{{ID: "pay-2", Service: "payments-api", Env: "production", Version: "v2.14.0", StartedAt: schema.At(start.Add(5 * time.Minute))}}
	e.publish(reg, "")
	as, _ = e.waitFor(3, 1)
	if a := as[2]; a.Rule != "regression" || a.DeployID != "" || a.RollbackID != "" ||
		a.AlertID != "orders@production:alert:regression:"+strconv.FormatInt(reg.EvaluatedAt.Unix(), 10) {
		t.Errorf("regression alert %+v", a)
	}
	if as, rs := e.settled(); len(as) != 3 || len(rs) != 1 {
		t.Errorf("at the end:\n%s", describe(as, rs))
	}
}

// BenchmarkBadVerdictToRollbackSignal measures, per bad verdict, the time
// from publishing it to JetStream to receiving its rollback signal on
// deploywatch.signals.rollback.<service>, through the engine with the
// built-in rules and its state saved before the ack.
func BenchmarkBadVerdictToRollbackSignal(b *testing.B) {
	e := newEngineEnv(b, "")
	sub, err := e.nc.SubscribeSync(schema.RollbackSubject("checkout"))
	if err != nil {
		b.Fatal(err)
	}
	start := testBase()
	var worst time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := "bench-" + strconv.Itoa(i)
		v := testVerdict(id, "checkout", "production", start, 30, schema.VerdictBad, true, 4)
		t0 := time.Now()
		e.publish(v, "")
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			b.Fatalf("no rollback signal for %s: %v", id, err)
		}
		if d := time.Since(t0); d > worst {
			worst = d
		}
		var r schema.RollbackSignal
		if err := json.Unmarshal(m.Data, &r); err != nil || r.DeployID != id {
			b.Fatalf("got %s, want the rollback of %s (%v)", m.Data, id, err)
		}
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
