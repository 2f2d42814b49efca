package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
)

// TestServeWithExternalNATS runs serve against the distribution's
// nats-server (Debian's is older than the embedded one) with token auth:
// deploys and samples reach ClickHouse, and the impact analysis judges the
// deploy, through the external event log.
func TestServeWithExternalNATS(t *testing.T) {
	const token = "s3cret-nats-token"
	url := testenv.ExternalNATS(t, token)
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.natsURL, c.natsToken = url, token
		c.impact.enabled = true
	})
	deployAt := time.Date(2026, 11, 7, 8, 0, 0, 0, time.UTC)
	status, answer := p.post(t, "/api/v1/deploys", []byte(`{"service":"ledger","env":"production","version":"v3","previous_version":"v2","status":"succeeded",
		"started_at":"2026-11-07T08:00:00Z","finished_at":"2026-11-07T08:01:00Z"}`))
	if status != http.StatusAccepted {
		t.Fatalf("POST deploy: %d %v", status, answer)
	}
	id := answer["ids"].([]any)[0].(string)
	steady := func(time.Time) float64 { return 0.005 }
	v := func(ts time.Time) string {
		if ts.After(deployAt) {
			return "v3"
		}
		return "v2"
	}
	for _, b := range serviceTraffic("ledger", deployAt.Add(-30*time.Minute), deployAt.Add(32*time.Minute), 12, steady, v, 6) {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var got verdictAnswer
		p.getJSON(t, "/api/v1/deploys/"+id, &got)
		if got.Verdict == nil {
			return false, "no verdict yet"
		}
		return got.Verdict.Final && got.Verdict.Status == "healthy", "verdict " + got.Verdict.Status + ": " + got.Verdict.Reason
	})
	if n := p.count(t, "SELECT count() FROM metric_samples FINAL WHERE service = 'ledger'"); n != 62*6*4 {
		t.Errorf("%d samples in ClickHouse, want %d", n, 62*6*4)
	}
}
