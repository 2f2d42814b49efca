package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/alerts"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// TestRollbackLoopEndToEnd closes the whole loop over real servers: a bad
// deploy → a bad verdict → the built-in rule fires → a rollback signal →
// `deploywatch rollback-agent` runs its command exactly once → it reports the
// deploy rolled_back → the service recovers → the incident the deploy caused
// resolves with its MTTR, all read back over the HTTP API.
func TestRollbackLoopEndToEnd(t *testing.T) {
	natsSrv := testenv.NATS(t)
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.impact.enabled, c.alerts.enabled = true, true
		c.natsURL = natsSrv.ClientURL()
	})

	// The agent, with a script that records its arguments.
	dir := t.TempDir()
	script, runs := filepath.Join(dir, "undo.sh"), filepath.Join(dir, "runs.log")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+alerts.ShellQuote(runs)+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(context.Background())
	var agentErr syncBuffer
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- run(agentCtx, []string{"rollback-agent", "--nats-url", natsSrv.ClientURL(), "--service", "wallet",
			"--name", "loop", "--command", alerts.ShellQuote(script) + " {{.Service}} {{.Env}} {{.PreviousVersion}} {{.SignalID}}"},
			&bytes.Buffer{}, &agentErr)
	}()
	t.Cleanup(func() {
		stopAgent()
		if err := <-agentDone; err != nil {
			t.Errorf("rollback-agent: %v\n%s", err, agentErr.String())
		}
	})
	js := natsJetStream(t, natsSrv)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		_, err := js.Consumer(context.Background(), schema.SignalsStream, alerts.AgentConsumerName("loop"))
		return err == nil, fmt.Sprintf("waiting for the agent: %v %s", err, agentErr.String())
	})

	// 30 minutes of normal traffic, the deploy, 10 minutes of 5x errors.
	deployAt := time.Now().UTC().Add(-45 * time.Minute).Truncate(time.Minute)
	finished := deployAt.Add(time.Minute)
	status, answer := p.post(t, "/api/v1/deploys", []byte(fmt.Sprintf(
		`{"service":"wallet","env":"production","version":"v5","previous_version":"v4","status":"succeeded","started_at":%q,"finished_at":%q}`,
		deployAt.Format(time.RFC3339), finished.Format(time.RFC3339))))
	if status != http.StatusAccepted {
		t.Fatalf("POST deploy: %d %v", status, answer)
	}
	deployID := answer["ids"].([]any)[0].(string)
	bad := func(ts time.Time) float64 {
		if ts.After(finished) {
			return 0.025
		}
		return 0.005
	}
	newVersion := func(ts time.Time) string {
		if ts.After(deployAt) {
			return "v5"
		}
		return "v4"
	}
	for _, b := range serviceTraffic("wallet", deployAt.Add(-30*time.Minute), finished.Add(10*time.Minute), 12, bad, newVersion, 21) {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}

	// The agent rolls it back and reports it.
	var deploy struct {
		Status       string     `json:"status"`
		RolledBackAt *time.Time `json:"rolled_back_at"`
	}
	testenv.Eventually(t, 90*time.Second, func() (bool, string) {
		p.getJSON(t, "/api/v1/deploys/"+deployID, &deploy)
		return deploy.Status == "rolled_back" && deploy.RolledBackAt != nil, "deploy status " + deploy.Status + "; agent: " + agentErr.String()
	})
	rolledBack := *deploy.RolledBackAt

	// The old version serves normally again after the rollback.
	normal := func(time.Time) float64 { return 0.005 }
	old := func(time.Time) string { return "v4" }
	for _, b := range serviceTraffic("wallet", rolledBack.Truncate(10*time.Second), rolledBack.Add(6*time.Minute), 12, normal, old, 22) {
		if status, answer := p.post(t, "/api/v1/metrics", b); status != http.StatusAccepted {
			t.Fatalf("POST metrics: %d %v", status, answer)
		}
	}
	var got struct {
		Incidents []schema.IncidentState `json:"incidents"`
	}
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		got.Incidents = nil
		p.getJSON(t, "/api/v1/incidents?service=wallet&since="+deployAt.Add(-time.Hour).Format(time.RFC3339), &got)
		if len(got.Incidents) == 0 {
			return false, "no incident yet"
		}
		return got.Incidents[0].Status == schema.IncidentStateResolved, "incident " + got.Incidents[0].Status
	})
	in := got.Incidents[0]
	if len(got.Incidents) != 1 || in.DeployID != deployID || in.MTTRS == nil || in.TimeToDetectS == nil || in.TimeToRollbackS == nil {
		t.Fatalf("incidents %+v", got.Incidents)
	}
	if *in.TimeToDetectS > 90 || *in.MTTRS < *in.TimeToRollbackS {
		t.Errorf("detected after %.0fs (want within 90 s of the deploy), rolled back after %.0fs, recovered after %.0fs",
			*in.TimeToDetectS, *in.TimeToRollbackS, *in.MTTRS)
	}
	t.Logf("incident %s: detected %.0fs after the deploy, rolled back %.0fs after, recovered %.0fs after (MTTR)",
		in.ID, *in.TimeToDetectS, *in.TimeToRollbackS, *in.MTTRS)

	// The command ran exactly once.
	data, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "wallet production v4 ") {
		t.Errorf("the rollback command ran %d times: %q", len(lines), data)
	}
}
