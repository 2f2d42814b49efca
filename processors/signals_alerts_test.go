package processors

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishSignal publishes ev on its subject with msgID as Nats-Msg-Id.
func (e *env) publishSignal(t *testing.T, ev schema.Event, msgID string) {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: schema.Subject(ev), Data: data}, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatalf("cannot publish %s: %v", ev.EventID(), err)
	}
}

// TestSinkProjectsAlertSignals: alerts, rollback signals, silences and
// acknowledgements land in their tables and the raw events, once each to
// every reader even when they reach the sink twice; latest_alerts folds an
// alert into its latest state.
func TestSinkProjectsAlertSignals(t *testing.T) {
	e := newEnv(t)
	at := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Second)
	const deploy = "gha-checkout-8123456789-1"
	alertID := schema.NewAlertID("bad-deploy-in-production", deploy, "checkout", "production", at)
	firing := &schema.Alert{
		ID: schema.AlertEventID(alertID, schema.AlertFiring), Type: schema.TypeAlert, AlertID: alertID, Status: schema.AlertFiring,
		Rule: "bad-deploy-in-production", Severity: schema.SeverityCritical, Actions: []string{"rollback", "notify"},
		Service: "checkout", Env: "production", DeployID: deploy, Version: "v2.14.0", PreviousVersion: "v2.13.2",
		Summary: "error rate 5.1x the baseline's", VerdictID: deploy + ":verdict:1", VerdictStatus: schema.VerdictBad, VerdictScore: 40,
		StartsAt: schema.At(at), PendingSince: schema.At(at), Labels: map[string]string{"team": "payments", "region": "eu"},
		Condition: `verdict.status == "bad"`, RollbackID: schema.RollbackSignalID(deploy),
	}
	resolved := *firing
	resolved.ID, resolved.Status = schema.AlertEventID(alertID, schema.AlertResolved), schema.AlertResolved
	resolved.EndsAt, resolved.Resolution, resolved.Summary = schema.At(at.Add(2*time.Minute)), schema.ResolvedRolledBack, "rolled back to v2.13.2"
	rollback := &schema.RollbackSignal{ID: schema.RollbackSignalID(deploy), Type: schema.TypeRollback, Service: "checkout", Env: "production",
		DeployID: deploy, Version: "v2.14.0", PreviousVersion: "v2.13.2", Rule: firing.Rule, AlertID: alertID, VerdictID: firing.VerdictID,
		Reason: firing.Summary, At: schema.At(at), Severity: "critical", Labels: firing.Labels}
	sil := &schema.Silence{Type: schema.TypeSilence, Service: "search", Rule: "marginal-deploy", StartsAt: schema.At(at),
		EndsAt: schema.At(at.Add(48 * time.Hour)), CreatedBy: "ana", Comment: "known flaky canary", CreatedAt: schema.At(at)}
	sil.ID = schema.NewSilenceID(sil)
	ack := &schema.Acknowledgement{ID: schema.NewAckID(alertID, "bo", "on it"), Type: schema.TypeAck, AlertID: alertID,
		Service: "checkout", Env: "production", Rule: firing.Rule, By: "bo", Comment: "on it", At: schema.At(at.Add(time.Minute))}

	for _, ev := range []schema.Event{firing, rollback, sil, ack, &resolved} {
		e.publishSignal(t, ev, ev.EventID())
		e.publishSignal(t, ev, ev.EventID()+"-again") // kept by JetStream: the sink sees it twice
	}
	stop := runSink(t, e, SinkConfig{FlushInterval: 100 * time.Millisecond})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := e.count(t, "SELECT count() FROM events WHERE type IN ('alert', 'rollback', 'silence', 'ack')")
		return n == 10, fmt.Sprintf("%d of 10 raw signal rows written", n)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for table, want := range map[string]uint64{"alert_events": 2, "rollback_signals": 1, "silences": 1, "alert_acks": 1} {
		if n := e.count(t, "SELECT count() FROM "+table+" FINAL"); n != want {
			t.Errorf("%s has %d rows with FINAL, want %d", table, n, want)
		}
	}
	if n := e.count(t, "SELECT count() FROM events FINAL WHERE type = 'alert' AND env = 'production'"); n != 2 {
		t.Errorf("%d alert events in the raw log, want 2", n)
	}

	var (
		status, rule, resolution, labelKeys, body string
		rank, dryRun, score                       uint8
		startsAt, endsAt, eventTime               time.Time
		actions                                   []string
	)
	if err := e.ch.QueryRow(context.Background(), `SELECT status, rule, resolution, arrayStringConcat(label_keys, ','), body,
		status_rank, dry_run, verdict_score, starts_at, ends_at, time, actions FROM alert_events FINAL WHERE id = ?`, resolved.ID).Scan(
		&status, &rule, &resolution, &labelKeys, &body, &rank, &dryRun, &score, &startsAt, &endsAt, &eventTime, &actions); err != nil {
		t.Fatal(err)
	}
	if status != "resolved" || rule != firing.Rule || resolution != "rolled_back" || labelKeys != "region,team" || rank != 2 || dryRun != 0 ||
		score != 40 || !startsAt.Equal(at) || !endsAt.Equal(at.Add(2*time.Minute)) || !eventTime.Equal(endsAt) || strings.Join(actions, ",") != "rollback,notify" {
		t.Errorf("resolved row: %s %s %s %s %d %d %d %s %s %s %v", status, rule, resolution, labelKeys, rank, dryRun, score, startsAt, endsAt, eventTime, actions)
	}
	if got, err := schema.DecodeSignal([]byte(body)); err != nil || got.EventID() != resolved.ID {
		t.Errorf("the stored body is not the event: %v", err)
	}

	var latestStatus, latestResolution string
	var latestEnds time.Time
	if err := e.ch.QueryRow(context.Background(), "SELECT status, resolution, ends_at FROM latest_alerts WHERE alert_id = ?", alertID).Scan(
		&latestStatus, &latestResolution, &latestEnds); err != nil {
		t.Fatal(err)
	}
	if latestStatus != "resolved" || latestResolution != "rolled_back" || !latestEnds.Equal(at.Add(2*time.Minute)) {
		t.Errorf("latest_alerts: %s %s %s", latestStatus, latestResolution, latestEnds)
	}

	var silService, silRule, by string
	var silEnds time.Time
	if err := e.ch.QueryRow(context.Background(), "SELECT service, rule, ends_at FROM silences FINAL WHERE id = ?", sil.ID).Scan(&silService, &silRule, &silEnds); err != nil {
		t.Fatal(err)
	}
	if silService != "search" || silRule != "marginal-deploy" || !silEnds.Equal(at.Add(48*time.Hour)) {
		t.Errorf("silence row: %s %s %s", silService, silRule, silEnds)
	}
	if err := e.ch.QueryRow(context.Background(), "SELECT acked_by FROM alert_acks FINAL WHERE alert_id = ?", alertID).Scan(&by); err != nil || by != "bo" {
		t.Errorf("ack row: %q %v", by, err)
	}
}
