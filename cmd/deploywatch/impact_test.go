package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
)

// serviceTraffic makes metric batches of one service in production: four
// instances reporting every 10 s in (from, to], with Poisson-like noise,
// per-instance spread and the given error rate; instances run version(t).
func serviceTraffic(service string, from, to time.Time, rps float64, errorRate func(time.Time) float64, version func(time.Time) string, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed*31+7))
	const instances = 4
	var batches [][]byte
	var samples []map[string]any
	for ts := from.Add(10 * time.Second); !ts.After(to); ts = ts.Add(10 * time.Second) {
		for inst := 0; inst < instances; inst++ {
			spread := 0.85 + 0.1*float64(inst)
			mean := rps * 10 * spread
			reqs := uint64(max(0, math.Round(mean+rng.NormFloat64()*math.Sqrt(mean))))
			expectedErrs := float64(reqs) * errorRate(ts)
			errs := uint64(max(0, math.Round(expectedErrs+rng.NormFloat64()*math.Sqrt(expectedErrs))))
			p50 := ms(45 * spread * math.Exp(rng.NormFloat64()*0.08))
			p95 := ms(p50 * 2.4 * math.Exp(math.Abs(rng.NormFloat64())*0.1))
			p99 := ms(p95 * 1.6 * math.Exp(math.Abs(rng.NormFloat64())*0.12))
			samples = append(samples, map[string]any{
				"time": ts.Format(time.RFC3339), "interval_s": 10, "version": version(ts),
				"instance": fmt.Sprintf("%s-%d", service, inst), "requests": reqs, "errors": min(errs, reqs),
				"latency_ms": map[string]float64{"p50": p50, "p95": p95, "p99": p99},
			})
		}
		if len(samples) >= 240 {
			body, _ := json.Marshal(map[string]any{"service": service, "env": "production", "samples": samples})
			batches = append(batches, body)
			samples = nil
		}
	}
	if len(samples) > 0 {
		body, _ := json.Marshal(map[string]any{"service": service, "env": "production", "samples": samples})
		batches = append(batches, body)
	}
	return batches
}

type verdictAnswer struct {
	ID      string `json:"id"`
	Verdict *struct {
		Status     string `json:"status"`
		Final      bool   `json:"final"`
		Early      bool   `json:"early"`
		Score      int    `json:"score"`
		Reason     string `json:"reason"`
		Comparison string `json:"comparison"`
		Metrics    []struct {
			Name  string `json:"name"`
			Class string `json:"class"`
		} `json:"metrics"`
	} `json:"verdict"`
}

// TestImpactEndToEnd backfills two services over HTTP: one whose deploy
// brings five times the errors, one whose deploy changes nothing. The first
// must read bad, the second healthy once its window has passed.
func TestImpactEndToEnd(t *testing.T) {
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) { c.impact.enabled = true })
	deployAt := time.Date(2026, 11, 2, 14, 0, 0, 0, time.UTC)
	finished := deployAt.Add(time.Minute)
	versionAt := func(ts time.Time) string {
		if ts.After(deployAt.Add(30 * time.Second)) {
			return "v2.0.1"
		}
		return "v2.0.0"
	}

	deployIDs := map[string]string{}
	for _, service := range []string{"checkout", "search"} {
		for _, body := range []string{
			fmt.Sprintf(`{"service":%q,"env":"production","version":"v2.0.1","previous_version":"v2.0.0","status":"started","started_at":%q}`, service, deployAt.Format(time.RFC3339)),
			fmt.Sprintf(`{"service":%q,"env":"production","version":"v2.0.1","previous_version":"v2.0.0","status":"succeeded","started_at":%q,"finished_at":%q}`, service, deployAt.Format(time.RFC3339), finished.Format(time.RFC3339)),
		} {
			status, answer := p.post(t, "/api/v1/deploys", []byte(body))
			if status != http.StatusAccepted {
				t.Fatalf("POST deploy: %d %v", status, answer)
			}
			deployIDs[service] = answer["ids"].([]any)[0].(string)
		}
	}

	// checkout: 30 minutes at 0.5% errors, then 10 minutes at 2.5%.
	checkoutErrors := func(ts time.Time) float64 {
		if ts.After(finished) {
			return 0.025
		}
		return 0.005
	}
	for _, b := range serviceTraffic("checkout", deployAt.Add(-30*time.Minute), finished.Add(10*time.Minute), 12, checkoutErrors, versionAt, 1) {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}
	// search: the same traffic before and 35 minutes after.
	steady := func(time.Time) float64 { return 0.005 }
	for _, b := range serviceTraffic("search", deployAt.Add(-30*time.Minute), finished.Add(35*time.Minute), 12, steady, versionAt, 2) {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}

	waitVerdict := func(service, want string) verdictAnswer {
		t.Helper()
		var got verdictAnswer
		testenv.Eventually(t, 60*time.Second, func() (bool, string) {
			got = verdictAnswer{}
			p.getJSON(t, "/api/v1/deploys/"+deployIDs[service], &got)
			if got.Verdict == nil {
				return false, service + ": no verdict yet"
			}
			return got.Verdict.Final, service + ": latest verdict " + got.Verdict.Status + ": " + got.Verdict.Reason
		})
		if got.Verdict.Status != want {
			t.Fatalf("%s: verdict %s (%s), want %s; metrics %+v", service, got.Verdict.Status, got.Verdict.Reason, want, got.Verdict.Metrics)
		}
		return got
	}
	bad := waitVerdict("checkout", "bad")
	if !bad.Verdict.Early || bad.Verdict.Comparison != "before_vs_after" {
		t.Errorf("checkout: want an early before/after verdict, got early=%v comparison=%s", bad.Verdict.Early, bad.Verdict.Comparison)
	}
	t.Logf("checkout: %s (score %d): %s", bad.Verdict.Status, bad.Verdict.Score, bad.Verdict.Reason)
	healthy := waitVerdict("search", "healthy")
	t.Logf("search: %s (score %d): %s", healthy.Verdict.Status, healthy.Verdict.Score, healthy.Verdict.Reason)
}
