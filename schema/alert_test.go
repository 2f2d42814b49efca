package schema

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// alertJSON is an alert as the alert engine publishes it when a rule fires.
const alertJSON = `{
  "id": "gha-checkout-8123456789-1:alert:bad-deploy-in-production:1772461500:firing",
  "type": "alert",
  "alert_id": "gha-checkout-8123456789-1:alert:bad-deploy-in-production:1772461500",
  "status": "firing", "rule": "bad-deploy-in-production", "severity": "critical",
  "actions": ["rollback", "notify"],
  "service": "checkout", "env": "production", "deploy_id": "gha-checkout-8123456789-1",
  "version": "v2.14.0", "previous_version": "v2.13.2",
  "summary": "error rate 2.4x the baseline's on the canary instances of v2.14.0 (p < 0.001)",
  "verdict_id": "gha-checkout-8123456789-1:verdict:1772461500", "verdict_status": "bad", "verdict_score": 40,
  "starts_at": "2026-03-02T14:25:00Z", "pending_since": "2026-03-02T14:25:00Z",
  "condition": "verdict.status == \"bad\" && (verdict.final || verdict.early)",
  "rollback_id": "gha-checkout-8123456789-1:rollback",
  "labels": {"team": "payments"}
}`

func TestDecodeAlertSignals(t *testing.T) {
	ev, err := DecodeSignal([]byte(alertJSON))
	if err != nil {
		t.Fatalf("cannot decode an alert: %v", err)
	}
	a, ok := ev.(*Alert)
	if !ok {
		t.Fatalf("decoded a %T, want *Alert", ev)
	}
	if a.EventTime().Unix() != 1772461500 || a.Labels["team"] != "payments" || a.RollbackID == "" || len(a.Actions) != 2 {
		t.Fatalf("decoded %+v", a)
	}
	if got := NewAlertID("bad-deploy-in-production", "gha-checkout-8123456789-1", "checkout", "production", time.Unix(1772461500, 0)); got != a.AlertID {
		t.Errorf("NewAlertID = %q, want %q", got, a.AlertID)
	}
	if got := NewAlertID("r", "", "checkout", "production", time.Unix(1, 0)); got != "checkout@production:alert:r:1" {
		t.Errorf("NewAlertID of a regression = %q", got)
	}

	resolved := *a
	resolved.Status, resolved.ID = AlertResolved, AlertEventID(a.AlertID, AlertResolved)
	resolved.EndsAt, resolved.Resolution = At(time.Unix(1772462100, 0)), ResolvedRolledBack
	if resolved.EventTime().Unix() != 1772462100 {
		t.Errorf("a resolved alert's event time is %v, want its ends_at", resolved.EventTime())
	}
	roundTrip(t, &resolved)

	start := time.Now().UTC().Truncate(time.Second)
	roundTrip(t, &RollbackSignal{ID: RollbackSignalID("d1"), Type: TypeRollback, Service: "checkout", Env: "production",
		DeployID: "d1", Version: "v2", PreviousVersion: "v1", Rule: "r", AlertID: "d1:alert:r:1", Reason: "bad", At: At(start)})
	s := &Silence{Type: TypeSilence, Service: "checkout", StartsAt: At(start), EndsAt: At(start.Add(24 * time.Hour)),
		CreatedBy: "ana", Comment: "migrating the database", CreatedAt: At(start)}
	s.ID = NewSilenceID(s)
	roundTrip(t, s)
	if !s.Matches("any-rule", "checkout", "staging", start) || s.Matches("r", "search", "production", start) ||
		s.Matches("r", "checkout", "production", start.Add(24*time.Hour)) || s.Matches("r", "checkout", "production", start.Add(-time.Second)) {
		t.Error("Silence.Matches: wrong scope or span")
	}
	roundTrip(t, &Acknowledgement{ID: NewAckID("a1", "ana", ""), Type: TypeAck, AlertID: "a1", Service: "checkout", Env: "production", By: "ana", At: At(start)})
}

// roundTrip encodes ev and decodes it back as a signal.
func roundTrip(t *testing.T, ev Event) {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeSignal(data)
	if err != nil {
		t.Fatalf("cannot decode the %s encoded: %v\n%s", ev.EventType(), err, data)
	}
	if back.EventID() != ev.EventID() || back.EventType() != ev.EventType() {
		t.Fatalf("round trip gave %s %s, want %s %s", back.EventType(), back.EventID(), ev.EventType(), ev.EventID())
	}
}

func TestDecodeAlertSignalProblems(t *testing.T) {
	f := func(body string, wantFields ...string) {
		t.Helper()
		_, err := DecodeSignal([]byte(body))
		var verr *ValidationError
		if !errors.As(err, &verr) {
			t.Fatalf("%s: err %v, want a ValidationError", body, err)
		}
		var got []string
		for _, fe := range verr.Fields {
			got = append(got, fe.Field)
		}
		if strings.Join(got, ",") != strings.Join(wantFields, ",") {
			t.Fatalf("%s: problems %v, want fields %v", body, verr.Fields, wantFields)
		}
	}
	f(`{"type":"alert"}`, "id", "alert_id", "status", "rule", "severity", "service", "env", "starts_at")
	f(`{"type":"alert","id":"a:firing","alert_id":"b","status":"firing","rule":"has space","severity":"page",
		"service":"checkout","env":"production","verdict_score":101,"starts_at":"2026-03-02T14:25:00Z"}`,
		"id", "rule", "severity", "verdict_score")
	f(`{"type":"alert","id":"a:resolved","alert_id":"a","status":"resolved","rule":"r","severity":"info",
		"service":"checkout","env":"production","starts_at":"2026-03-02T14:25:00Z"}`, "ends_at")
	f(`{"type":"rollback","id":"d:rollback","service":"checkout","env":"production","rule":"r","alert_id":"a","at":"2026-03-02T14:25:00Z"}`, "deploy_id")
	f(`{"type":"silence","id":"s1","created_at":"2026-03-02T14:25:00Z","starts_at":"2026-03-02T14:25:00Z","ends_at":"2026-03-02T14:00:00Z"}`,
		"service", "ends_at", "created_by")
	f(`{"type":"ack","id":"k","alert_id":"a","service":"checkout","env":"production","at":"2026-03-02T14:25:00Z"}`, "by")
}
