package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
)

// TestPipelineEndToEnd posts a deploy and 10,000 samples over HTTP and reads
// them back from ClickHouse and the API; posting everything again changes
// nothing; an invalid batch is refused whole.
func TestPipelineEndToEnd(t *testing.T) {
	p := startServe(t, testenv.ClickHouse(t), nil)
	end := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)

	started := []byte(fmt.Sprintf(`{"service":"checkout","env":"production","version":"v1.4.2","previous_version":"v1.4.1",
		"status":"started","started_at":%q,"author":"ana","strategy":"canary","labels":{"team":"payments"},
		"commits":[{"sha":"9f1c2e7","time":%q,"author":"ana","message":"speed up the cart"}]}`,
		end.Add(-10*time.Minute).Format(time.RFC3339), end.Add(-2*time.Hour).Format(time.RFC3339)))
	code, answer := p.post(t, "/api/v1/deploys", started)
	if code != http.StatusAccepted {
		t.Fatalf("POST started deploy: %d %v", code, answer)
	}
	id := answer["ids"].([]any)[0].(string)
	succeeded := []byte(fmt.Sprintf(`{"id":%q,"service":"checkout","env":"production","version":"v1.4.2","status":"succeeded","finished_at":%q}`,
		id, end.Add(-7*time.Minute).Format(time.RFC3339)))
	if code, answer := p.post(t, "/api/v1/deploys", succeeded); code != http.StatusAccepted {
		t.Fatalf("POST succeeded deploy: %d %v", code, answer)
	}

	batches, totalRequests := trafficBatches("checkout", 10_000, 2_500, end, 1)
	for _, b := range batches {
		if code, answer := p.post(t, "/api/v1/metrics", b); code != http.StatusAccepted || answer["accepted"] != 2500.0 {
			t.Fatalf("POST metrics: %d %v", code, answer)
		}
	}

	const finalSamples = "SELECT count() FROM metric_samples FINAL WHERE service = 'checkout'"
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		n := p.count(t, finalSamples)
		return n == 10_000, fmt.Sprintf("%d of 10000 samples in ClickHouse", n)
	})
	var deploy map[string]any
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		code := p.getJSON(t, "/api/v1/deploys/"+id, &deploy)
		return code == http.StatusOK && deploy["status"] == "succeeded", fmt.Sprintf("GET deploy: %d %v", code, deploy)
	})
	for field, want := range map[string]any{
		"id": id, "service": "checkout", "env": "production", "version": "v1.4.2", "previous_version": "v1.4.1",
		"strategy": "canary", "duration_s": 180.0, "verdict": nil,
	} {
		if deploy[field] != want {
			t.Errorf("deploy %s = %v, want %v", field, deploy[field], want)
		}
	}
	if commits := deploy["commits"].([]any); len(commits) != 1 || commits[0].(map[string]any)["sha"] != "9f1c2e7" {
		t.Errorf("deploy commits = %v", commits)
	}
	if labels := deploy["labels"].(map[string]any); labels["team"] != "payments" {
		t.Errorf("deploy labels = %v", labels)
	}
	checkSums := func() {
		t.Helper()
		if got := p.count(t, "SELECT sum(requests) FROM metric_samples FINAL WHERE service = 'checkout'"); got != totalRequests {
			t.Errorf("sum(requests) in metric_samples = %d, want %d", got, totalRequests)
		}
		// The rollup is written by the same insert, just after the samples
		// become visible: poll for it rather than race it.
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			got := p.count(t, "SELECT sum(requests) FROM metrics_1m FINAL WHERE service = 'checkout'")
			return got == totalRequests, fmt.Sprintf("sum(requests) in the metrics_1m rollup = %d, want %d", got, totalRequests)
		})
		if got := p.count(t, "SELECT count() FROM deploys WHERE deploy_id = ?", id); got != 1 {
			t.Errorf("%d rows for the deploy in the deploys view, want 1", got)
		}
	}
	checkSums()

	// The same requests again: same ids, and nothing a query can see changes.
	if _, again := p.post(t, "/api/v1/deploys", started); again["ids"].([]any)[0] != id {
		t.Errorf("re-posting the deploy gave id %v, want %s", again["ids"], id)
	}
	p.post(t, "/api/v1/deploys", succeeded)
	for _, b := range batches {
		p.post(t, "/api/v1/metrics", b)
	}
	// The same samples in a different batching reach ClickHouse as new
	// messages; the natural key keeps one copy of each.
	rebatched, _ := trafficBatches("checkout", 10_000, 5_000, end, 1)
	for _, b := range rebatched {
		p.post(t, "/api/v1/metrics", b)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		n := p.count(t, "SELECT count() FROM metric_samples WHERE service = 'checkout'")
		return n >= 20_000, fmt.Sprintf("%d raw rows, waiting for the re-batched 10000", n)
	})
	if n := p.count(t, finalSamples); n != 10_000 {
		t.Errorf("after re-sending, %d samples visible with FINAL, want 10000", n)
	}
	if n := p.count(t, "SELECT count() FROM events WHERE type = 'deploy'"); n != 2 {
		t.Errorf("%d deploy events stored, want 2 (started, succeeded)", n)
	}
	if got := p.count(t, "SELECT sum(requests) FROM metric_samples FINAL WHERE service = 'checkout'"); got != totalRequests {
		t.Errorf("sum(requests) after re-sending = %d, want %d", got, totalRequests)
	}

	// An invalid batch: 400 naming each bad field, and nothing of it stored.
	bad := []byte(`{"service":"cart","env":"production","samples":[
		{"time":"2026-11-01T10:00:00Z","interval_s":10,"requests":5,"errors":0},
		{"time":"2026-11-01T10:00:10Z","interval_s":10,"requests":5,"errors":0},
		{"time":"2026-11-01T10:00:20Z","interval_s":10,"requests":5,"errors":0},
		{"time":"2026-11-01T10:00:30Z","interval_s":10,"errors":0},
		{"time":"2026-11-01T10:00:40Z","interval_s":-1,"requests":5,"errors":9}]}`)
	code, answer = p.post(t, "/api/v1/metrics", bad)
	if code != http.StatusBadRequest {
		t.Fatalf("invalid batch answered %d %v, want 400", code, answer)
	}
	var fields []string
	for _, f := range answer["fields"].([]any) {
		fields = append(fields, f.(map[string]any)["field"].(string))
	}
	if got, want := strings.Join(fields, ","), "samples[3].requests,samples[4].interval_s,samples[4].errors"; got != want {
		t.Errorf("invalid batch named fields %s, want %s", got, want)
	}
	// A valid marker sent after it arrives; the sink keeps order, so the bad
	// batch would have too, had any of it been published.
	marker, _ := json.Marshal(map[string]any{"service": "marker", "env": "production", "samples": []map[string]any{
		{"time": end.Format(time.RFC3339), "interval_s": 10, "requests": 1, "errors": 0}}})
	if code, answer := p.post(t, "/api/v1/metrics", marker); code != http.StatusAccepted {
		t.Fatalf("marker: %d %v", code, answer)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		return p.count(t, "SELECT count() FROM metric_samples WHERE service = 'marker'") == 1, "waiting for the marker"
	})
	if n := p.count(t, "SELECT count() FROM metric_samples WHERE service = 'cart'"); n != 0 {
		t.Errorf("%d samples of the invalid batch stored, want 0", n)
	}
}
