package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema/chschema"
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
	natsSrv := testenv.NATS(t)
	dsn := testenv.ClickHouse(t)
	p := startServe(t, dsn, func(c *serveConfig) {
		c.impact.enabled = true
		c.natsURL = natsSrv.ClientURL()
	})
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

	// Replaying the recorded event log into fresh tables gives the very same
	// verdicts, interim ones included.
	live := verdictRows(t, p, "")
	liveDB, err := chschema.DatabaseFromDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	err = replay(context.Background(), replayConfig{
		nats: natsClientFlags{url: natsSrv.ClientURL()}, clickhouseDSN: dsn, intoDatabase: liveDB + "_replay", quiet: true,
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("replay: %v (%s)", err, errOut.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	replayed := verdictRows(t, p, liveDB+"_replay.")
	if len(live) < 10 {
		t.Fatalf("only %d verdicts recorded live", len(live))
	}
	if !slices.Equal(live, replayed) {
		t.Errorf("replay gave other verdicts: %d live, %d replayed; first difference:\n%s", len(live), len(replayed), firstDifference(live, replayed))
	}
	// A replay refuses to write over tables that exist.
	err = replay(context.Background(), replayConfig{
		nats: natsClientFlags{url: natsSrv.ClientURL()}, clickhouseDSN: dsn, intoDatabase: liveDB + "_replay", quiet: true,
	}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "already has") {
		t.Errorf("a second replay into the same database: got %v, want a refusal", err)
	}
}

// verdictRows lists every verdict in a database as comparable lines.
func verdictRows(t *testing.T, p *pipeline, db string) []string {
	t.Helper()
	rows, err := p.ch.Query(context.Background(), "SELECT id, status, score, final, reason, body FROM "+db+"deploy_verdicts FINAL ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, status, reason, body string
		var score, final uint8
		if err := rows.Scan(&id, &status, &score, &final, &reason, &body); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %d %d %s %s", id, status, score, final, reason, body))
	}
	return out
}

func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return "live:     " + a[i] + "\nreplayed: " + b[i]
		}
	}
	return "one is a prefix of the other"
}

// TestImpactSurvivesRestart stops serve halfway through a deploy's window
// and starts it again: the analysis goes on from where it was, with the
// samples from before the restart, and no evaluation is lost or doubled.
func TestImpactSurvivesRestart(t *testing.T) {
	natsSrv := testenv.NATS(t)
	dsn := testenv.ClickHouse(t)
	tweak := func(c *serveConfig) {
		c.impact.enabled = true
		c.natsURL = natsSrv.ClientURL()
	}
	p := startServe(t, dsn, tweak)
	deployAt := time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)
	finished := deployAt.Add(time.Minute)
	versionAt := func(ts time.Time) string {
		if ts.After(deployAt) {
			return "v7"
		}
		return "v6"
	}
	body := fmt.Sprintf(`{"service":"cart","env":"production","version":"v7","previous_version":"v6","status":"succeeded","started_at":%q,"finished_at":%q}`,
		deployAt.Format(time.RFC3339), finished.Format(time.RFC3339))
	status, answer := p.post(t, "/api/v1/deploys", []byte(body))
	if status != http.StatusAccepted {
		t.Fatalf("POST deploy: %d %v", status, answer)
	}
	id := answer["ids"].([]any)[0].(string)
	steady := func(time.Time) float64 { return 0.004 }
	batches := serviceTraffic("cart", deployAt.Add(-30*time.Minute), finished.Add(32*time.Minute), 15, steady, versionAt, 3)
	half := len(batches) * 3 / 4 // 30 min before, then part of the after window
	for _, b := range batches[:half] {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var got verdictAnswer
		p.getJSON(t, "/api/v1/deploys/"+id, &got)
		return got.Verdict != nil, "waiting for an interim verdict before the restart"
	})
	p.stop()

	p = startServe(t, dsn, tweak)
	for _, b := range batches[half:] {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}
	var got verdictAnswer
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		got = verdictAnswer{}
		p.getJSON(t, "/api/v1/deploys/"+id, &got)
		if got.Verdict == nil {
			return false, "no verdict"
		}
		return got.Verdict.Final, "latest verdict " + got.Verdict.Status + ": " + got.Verdict.Reason
	})
	if got.Verdict.Status != "healthy" {
		t.Fatalf("after the restart: %s (%s), want healthy", got.Verdict.Status, got.Verdict.Reason)
	}
	// Every 10 s of event time from the first evaluation to the final one
	// has exactly one verdict.
	var n, first, last uint64
	if err := p.ch.QueryRow(context.Background(), `SELECT count(), toUInt64(min(evaluated_at)), toUInt64(max(evaluated_at))
FROM deploy_verdicts FINAL WHERE deploy_id = ?`, id).Scan(&n, &first, &last); err != nil {
		t.Fatal(err)
	}
	if want := (last-first)/10 + 1; n != want {
		t.Errorf("%d verdicts from %d to %d, want one every 10 s: %d", n, first, last, want)
	}
}

// TestBadDeployIncident follows a bad deploy through serve: the bad verdict
// opens an incident linked to the deploy; once the deploy is rolled back and
// the service's samples are back within the baseline, the incident resolves.
func TestBadDeployIncident(t *testing.T) {
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) { c.impact.enabled = true })
	deployAt := time.Date(2026, 11, 6, 16, 0, 0, 0, time.UTC)
	finished := deployAt.Add(time.Minute)
	rolledBack := finished.Add(4 * time.Minute)
	versionAt := func(ts time.Time) string {
		if ts.After(deployAt) && !ts.After(rolledBack) {
			return "v9"
		}
		return "v8"
	}
	errorsAt := func(ts time.Time) float64 {
		if ts.After(finished) && !ts.After(rolledBack.Add(30*time.Second)) {
			return 0.04
		}
		return 0.004
	}
	deploy := fmt.Sprintf(`{"service":"basket","env":"production","version":"v9","previous_version":"v8","status":"succeeded","started_at":%q,"finished_at":%q}`,
		deployAt.Format(time.RFC3339), finished.Format(time.RFC3339))
	status, answer := p.post(t, "/api/v1/deploys", []byte(deploy))
	if status != http.StatusAccepted {
		t.Fatalf("POST deploy: %d %v", status, answer)
	}
	id := answer["ids"].([]any)[0].(string)
	for _, b := range serviceTraffic("basket", deployAt.Add(-30*time.Minute), rolledBack, 12, errorsAt, versionAt, 4) {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}
	incidentOf := func(status string) (time.Time, bool) {
		var at time.Time
		err := p.ch.QueryRow(context.Background(), `SELECT time FROM incident_changes FINAL WHERE deploy_id = ? AND status = ?`, id, status).Scan(&at)
		return at, err == nil
	}
	var opened time.Time
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var ok bool
		opened, ok = incidentOf("opened")
		return ok, "waiting for the bad deploy's incident"
	})
	if !opened.After(finished) || opened.After(finished.Add(2*time.Minute)) {
		t.Errorf("incident opened at %s, want within 2 minutes of the deploy finishing at %s", opened, finished)
	}
	rollback := fmt.Sprintf(`{"id":%q,"service":"basket","env":"production","version":"v9","previous_version":"v8","status":"rolled_back","started_at":%q,"finished_at":%q}`,
		id, deployAt.Format(time.RFC3339), rolledBack.Format(time.RFC3339))
	if status, answer := p.post(t, "/api/v1/deploys", []byte(rollback)); status != http.StatusAccepted {
		t.Fatalf("POST rolled_back: %d %v", status, answer)
	}
	for _, b := range serviceTraffic("basket", rolledBack, rolledBack.Add(8*time.Minute), 12, errorsAt, versionAt, 5) {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}
	var resolved time.Time
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var ok bool
		resolved, ok = incidentOf("resolved")
		return ok, "waiting for the incident to resolve after the rollback"
	})
	if !resolved.After(rolledBack.Add(30*time.Second)) || resolved.After(rolledBack.Add(8*time.Minute)) {
		t.Errorf("incident resolved at %s; the errors ended at %s", resolved, rolledBack.Add(30*time.Second))
	}
	t.Logf("incident: opened %s after the deploy, resolved %s after the rollback (MTTR %s)",
		opened.Sub(finished), resolved.Sub(rolledBack), resolved.Sub(opened))
}
