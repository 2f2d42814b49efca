package schema

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// verdictJSON is a final verdict as the impact processor publishes it.
const verdictJSON = `{
  "id": "gha-checkout-8123456789-1:verdict:1772460900",
  "type": "verdict",
  "deploy_id": "gha-checkout-8123456789-1",
  "service": "checkout", "env": "production",
  "version": "v2.14.0", "previous_version": "v2.13.2",
  "status": "bad", "score": 40, "final": true, "early": true,
  "reason": "error rate 2.4x the baseline's after v2.14.0 (p < 0.001)",
  "evaluated_at": "2026-03-02T14:15:00Z",
  "comparison": "canary_vs_baseline",
  "baseline_window": {"from": "2026-03-02T14:05:00Z", "to": "2026-03-02T14:15:00Z"},
  "candidate_window": {"from": "2026-03-02T14:05:00Z", "to": "2026-03-02T14:15:00Z"},
  "metrics": [
    {"name": "error_rate", "class": "high", "harm": "increase", "critical": true, "weight": 3,
     "baseline": {"n": 48211, "value": 0.0021, "requests": 48211, "errors": 101},
     "candidate": {"n": 12040, "value": 0.0051, "requests": 12040, "errors": 61},
     "test": "poisson_rate_ratio", "p_value": 0.00002, "shift": 0.003, "ratio": 2.43, "effect": 1.43, "tolerance": 0.25},
    {"name": "latency_p95", "class": "pass", "harm": "increase", "weight": 2,
     "baseline": {"n": 60, "value": 121.5}, "candidate": {"n": 60, "value": 124.1},
     "test": "mann_whitney", "p_value": 0.41, "shift": 2.2, "ratio": 1.021, "effect": 0.021, "tolerance": 0.1}
  ],
  "overlapping_deploys": [{"id": "argo-search-551", "service": "search", "env": "production", "version": "2026.03.02-1", "started_at": "2026-03-02T14:07:00Z"}]
}`

func TestDecodeVerdict(t *testing.T) {
	ev, err := DecodeSignal([]byte(verdictJSON))
	if err != nil {
		t.Fatalf("cannot decode a verdict: %v", err)
	}
	v, ok := ev.(*Verdict)
	if !ok {
		t.Fatalf("decoded a %T, want *Verdict", ev)
	}
	if v.EventID() != "gha-checkout-8123456789-1:verdict:1772460900" || v.EventType() != TypeVerdict || v.EventService() != "checkout" ||
		v.EventTime().Unix() != 1772460900 || !v.Final || !v.Early || v.Score != 40 || len(v.Metrics) != 2 ||
		v.Metrics[0].Baseline.Errors != 101 || len(v.Overlapping) != 1 || v.Candidate.From.IsZero() {
		t.Fatalf("decoded %+v", v)
	}
	// Round trip: what the API serves decodes to the same verdict.
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	again, err := DecodeVerdict(data)
	if err != nil {
		t.Fatalf("cannot decode the verdict encoded again: %v\n%s", err, data)
	}
	if again.Reason != v.Reason || !again.EvaluatedAt.Equal(v.EvaluatedAt.Time) || again.Metrics[1].PValue != 0.41 {
		t.Fatalf("round trip changed the verdict: %+v", again)
	}

	// A field of a newer processor is ignored, not refused.
	if _, err := DecodeVerdict([]byte(strings.Replace(verdictJSON, `"early": true,`, `"early": true, "confidence": 0.97,`, 1))); err != nil {
		t.Fatalf("a verdict with an extra field: %v", err)
	}
}

func TestDecodeVerdictProblems(t *testing.T) {
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
	f(``, "body")
	f(`not json`, "body")
	f(`{"id":"x"}`, "type")
	f(`{"type":"forecast","id":"x"}`, "type")
	f(`{"type":"verdict"}`, "id", "service", "env", "status", "evaluated_at")
	f(`{"type":"verdict","id":"d:verdict:1","service":"checkout","env":"production","status":"great","score":140,
		"comparison":"vibes","evaluated_at":"yesterday","candidate_window":{"from":"soon","to":null},"metrics":[{"class":"pass"}]}`,
		"status", "score", "comparison", "evaluated_at", "candidate_window.from", "metrics[0].name")
	f(`{"type":"verdict","id":"d:verdict:1","deploy_id":"has spaces","service":"checkout","env":"production","status":"pending",
		"evaluated_at":"2026-03-02T14:15:00Z"} {}`, "body")
	f(`{"type":"verdict","id":"d:verdict:1","deploy_id":"has spaces","service":"checkout","env":"production","status":"pending",
		"evaluated_at":"2026-03-02T14:15:00Z"}`, "deploy_id")

	// The unknown type's reason says what to do.
	_, err := DecodeSignal([]byte(`{"type":"forecast","id":"x"}`))
	if err == nil || !strings.Contains(err.Error(), "upgrade") || !strings.Contains(err.Error(), `"forecast"`) {
		t.Fatalf("unknown type: %v, want the type named and what to do", err)
	}
}
