package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The golden files of rendered reports are rewritten with go test -update.
// Another test file of the package may define -update too: package-level
// variables are initialized before init functions run, so this one defines
// the flag only when no other did.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files in testdata/")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if updateGolden() {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cannot read %s (go test -update writes it): %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n%s", path, got)
	}
}

func ptrTime(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func schemaTime(s string) schema.Time { return schema.At(*ptrTime(s)) }

// canaryDeploy is a canary deploy of checkout that the analysis called bad early.
func canaryDeploy() deployView {
	dur := 257.0
	return deployView{
		DeployState: schema.DeployState{
			ID: "gha-checkout-8123456789-1", Service: "checkout", Env: "production", Version: "v2.14.0", PreviousVersion: "v2.13.2",
			Status: schema.DeploySucceeded, StartedAt: ptrTime("2026-03-02T14:01:10Z"), FinishedAt: ptrTime("2026-03-02T14:05:27Z"),
			DurationS: &dur, UpdatedAt: *ptrTime("2026-03-02T14:05:28Z"), Strategy: schema.StrategyCanary, Author: "Ana Souza",
			URL: "https://github.com/acme/checkout/actions/runs/8123456789",
			Commits: []schema.Commit{
				{SHA: "9f2c1e7b4a0d5e8c3b6f1a2d7e9c0b4a5f8e1d3c", Author: "Ana Souza", Message: "Retry card authorisation on 503\n\nThe PSP sheds load with 503s."},
				{SHA: "1b7e4c2d9a8f6e5d4c3b2a1f0e9d8c7b6a5f4e3d", Author: "Kenji Mori", Message: "Bump the PSP client to 4.2"},
			},
			Labels: map[string]string{"team": "payments", "region": "eu-west-1"},
		},
		Verdict: &schema.Verdict{
			ID: "gha-checkout-8123456789-1:verdict:1772461500", Type: schema.TypeVerdict, DeployID: "gha-checkout-8123456789-1",
			Service: "checkout", Env: "production", Version: "v2.14.0", PreviousVersion: "v2.13.2",
			Status: schema.VerdictBad, Score: 40, Final: true, Early: true,
			Reason:      "error rate 2.4x the baseline's on the canary instances of v2.14.0 (p < 0.001)",
			EvaluatedAt: schemaTime("2026-03-02T14:25:00Z"), Comparison: schema.CanaryVsBaseline,
			Baseline:  schema.Window{From: schemaTime("2026-03-02T14:05:00Z"), To: schemaTime("2026-03-02T14:25:00Z")},
			Candidate: schema.Window{From: schemaTime("2026-03-02T14:05:00Z"), To: schemaTime("2026-03-02T14:25:00Z")},
			Metrics: []schema.MetricVerdict{
				{Name: "error_rate", Class: schema.MetricHigh, Harm: "increase", Critical: true, Weight: 3,
					Baseline:  schema.Stats{N: 48211, Value: 0.002095, Requests: 48211, Errors: 101},
					Candidate: schema.Stats{N: 12040, Value: 0.005066, Requests: 12040, Errors: 61},
					Test:      "poisson_rate_ratio", PValue: 0.00002, Shift: 0.00297, Ratio: 2.418, Effect: 1.418, Tolerance: 0.25},
				{Name: "latency_p95", Class: schema.MetricPass, Harm: "increase", Weight: 2,
					Baseline: schema.Stats{N: 120, Value: 121.5}, Candidate: schema.Stats{N: 30, Value: 124.1},
					Test: "mann_whitney", PValue: 0.41, Shift: 2.2, Ratio: 1.0214, Effect: 0.0214, Tolerance: 0.1},
				{Name: "latency_p99", Class: schema.MetricNoData, Harm: "increase", Weight: 1,
					Baseline: schema.Stats{N: 120, Value: 310}, Test: "mann_whitney", SamplesNeeded: 12,
					Note: "the canary instances report no p99"},
				{Name: "request_rate", Class: schema.MetricLow, Harm: "both", Weight: 1,
					Baseline: schema.Stats{N: 120, Value: 30.2}, Candidate: schema.Stats{N: 30, Value: 26.05},
					Test: "mann_whitney", PValue: 0.0021, Ratio: 0.8626, Effect: -0.1374, Tolerance: 0.1},
			},
			Overlapping: []schema.DeployRef{{ID: "argo-search-551", Service: "search", Env: "production", Version: "2026.03.02-1", StartedAt: schemaTime("2026-03-02T14:07:00Z")}},
			Suspects:    []schema.DeployRef{{ID: "gha-payments-gw-77-1", Service: "payments-gw", Env: "production", Version: "v9.1.0", StartedAt: schemaTime("2026-03-02T13:58:30Z")}},
		},
	}
}

func TestRenderDeploy(t *testing.T) {
	var out bytes.Buffer
	if err := renderDeploy(&out, canaryDeploy()); err != nil {
		t.Fatal(err)
	}
	golden(t, "deploys-show.txt", out.Bytes())

	started := canaryDeploy()
	started.Status, started.FinishedAt, started.DurationS, started.Verdict = schema.DeployStarted, nil, nil, nil
	started.Commits, started.Labels, started.URL, started.Author = nil, nil, "", ""
	out.Reset()
	if err := renderDeploy(&out, started); err != nil {
		t.Fatal(err)
	}
	golden(t, "deploys-show-no-verdict.txt", out.Bytes())
}

func TestRenderDeployList(t *testing.T) {
	bad := canaryDeploy()
	interim := canaryDeploy()
	interim.ID, interim.Service, interim.Version, interim.StartedAt = "argo-search-551", "search", "2026.03.02-1", ptrTime("2026-03-02T14:07:00Z")
	v := *interim.Verdict
	v.Status, v.Score, v.Final, v.Early, v.Reason = schema.VerdictHealthy, 100, false, false, "no metric moved beyond its tolerance after 10 of 30 minutes"
	interim.Verdict = &v
	pending := canaryDeploy()
	pending.ID, pending.Service, pending.Version, pending.Status = "gha-cart-5-1", "cart", "v3.0.0", schema.DeployStarted
	p := *pending.Verdict
	p.Status, p.Score, p.Final, p.Early, p.Reason = schema.VerdictPending, 0, false, false, "waiting for 5 minutes of candidate traffic"
	pending.Verdict = &p
	none := canaryDeploy()
	none.ID, none.Service, none.Env, none.Version, none.StartedAt, none.Verdict = "argo-search-550", "search", "staging", "2026.03.02-1", nil, nil

	var out bytes.Buffer
	if err := renderDeployList(&out, []deployView{pending, interim, bad, none}); err != nil {
		t.Fatal(err)
	}
	golden(t, "deploys-list.txt", out.Bytes())

	out.Reset()
	if err := renderDeployList(&out, nil); err != nil || out.String() != "no deploys\n" {
		t.Fatalf("empty list: %q, %v", out.String(), err)
	}
}

// TestDeploysCommands runs deploys list and show against a real serve, with
// verdicts published to the signals stream as the impact processor does.
func TestDeploysCommands(t *testing.T) {
	natsSrv := testenv.NATS(t)
	const token = "s3cret-read-token"
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.natsURL = natsSrv.ClientURL()
		c.apiTokens = token
	})
	cli := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		return out.String(), err
	}

	started := time.Now().UTC().Add(-50 * time.Minute).Truncate(time.Second)
	id, err := cli("mark", "deploy", "--server", p.api, "--token", token, "--service", "checkout", "--env", "production",
		"--version", "v2.14.0", "--previous-version", "v2.13.2", "--status", "succeeded", "--strategy", "canary",
		"--started-at", started.Format(time.RFC3339), "--finished-at", started.Add(4*time.Minute).Format(time.RFC3339))
	id = strings.TrimSpace(id)
	if err != nil || id == "" {
		t.Fatalf("mark deploy: %q, %v", id, err)
	}
	other, err := cli("mark", "deploy", "--server", p.api, "--token", token, "--service", "search", "--env", "staging",
		"--version", "2026.03.02-1", "--status", "started", "--started-at", started.Add(10*time.Minute).Format(time.RFC3339))
	other = strings.TrimSpace(other)
	if err != nil || other == "" {
		t.Fatalf("mark deploy: %q, %v", other, err)
	}

	// Both deploys listed, without verdicts yet. The token comes from the environment.
	t.Setenv("DEPLOYWATCH_TOKEN", token)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		out, err := cli("deploys", "list", "--url", p.api)
		return err == nil && strings.Contains(out, "checkout") && strings.Contains(out, "search"), fmt.Sprintf("deploys list: %v\n%s", err, out)
	})
	out, err := cli("deploys", "show", "--url", p.api, id)
	if err != nil || !strings.Contains(out, "Deploy "+id) || !strings.Contains(out, "Verdict: none yet") {
		t.Fatalf("deploys show before any verdict: %v\n%s", err, out)
	}

	// An interim verdict, then the final one.
	nc, err := nats.Connect(natsSrv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(v *schema.Verdict) {
		t.Helper()
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: schema.Subject(v), Data: data}, jetstream.WithMsgID(v.ID)); err != nil {
			t.Fatalf("cannot publish verdict %s: %v", v.ID, err)
		}
	}
	verdictAt := func(minutes int, status schema.VerdictStatus, final bool) *schema.Verdict {
		v := canaryDeploy().Verdict
		at := started.Add(time.Duration(minutes) * time.Minute)
		v.ID, v.DeployID, v.EvaluatedAt = id+":verdict:"+strconv.FormatInt(at.Unix(), 10), id, schema.At(at)
		v.Status, v.Final, v.Early = status, final, false
		v.Candidate = schema.Window{From: schema.At(started), To: schema.At(at)}
		v.Baseline = v.Candidate
		v.Reason = fmt.Sprintf("%s after %d minutes", status, minutes)
		return v
	}
	publish(verdictAt(10, schema.VerdictPending, false))
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		out, err := cli("deploys", "show", "--url", p.api, id)
		return err == nil && strings.Contains(out, "Verdict: pending (interim: may still change)"), fmt.Sprintf("deploys show: %v\n%s", err, out)
	})
	publish(verdictAt(30, schema.VerdictBad, true))
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		out, err = cli("deploys", "show", "--url", p.api, id)
		return err == nil && strings.Contains(out, "Verdict: bad (final), score 40/100"), fmt.Sprintf("deploys show: %v\n%s", err, out)
	})
	for _, want := range []string{"reason      bad after 30 minutes", "comparison  canary vs baseline", "error_rate", "0.21%", "→", "+142%", "<0.0001",
		"Overlapping deploys", "argo-search-551", "Suspects", "gha-payments-gw-77-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploys show has no %q:\n%s", want, out)
		}
	}

	// The list: filtered, as a table and as JSON.
	out, err = cli("deploys", "list", "--url", p.api, "--service", "checkout", "--limit", "5")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "STARTED (UTC)") || !strings.Contains(lines[1], "checkout") ||
		!strings.Contains(lines[1], "bad") || !strings.Contains(lines[1], " 40 ") || strings.Contains(out, "search") {
		t.Fatalf("deploys list --service checkout:\n%s", out)
	}
	out, err = cli("deploys", "list", "--url", p.api, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Deploys []deployView `json:"deploys"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Deploys) != 2 {
		t.Fatalf("deploys list --json: %v\n%s", err, out)
	}
	for _, d := range list.Deploys {
		switch d.ID {
		case id:
			if d.Verdict == nil || d.Verdict.Status != schema.VerdictBad || !d.Verdict.Final || len(d.Verdict.Metrics) != 4 {
				t.Errorf("listed verdict of %s: %+v", id, d.Verdict)
			}
		case other:
			if d.Verdict != nil {
				t.Errorf("listed verdict of %s, which has none: %+v", other, d.Verdict)
			}
		}
	}
	out, err = cli("deploys", "show", "--url", p.api, "--json", id)
	var one deployView
	if err != nil || json.Unmarshal([]byte(out), &one) != nil || one.Verdict == nil || one.Verdict.ID != verdictAt(30, schema.VerdictBad, true).ID {
		t.Fatalf("deploys show --json: %v\n%s", err, out)
	}

	// Errors name what went wrong and what to do.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"deploys", "show", "--url", p.api, "gha-unknown-1"}, `404 Not Found: no deploy with id "gha-unknown-1"`},
		{[]string{"deploys", "show", "--url", p.api}, "deploys show takes one deploy id"},
		{[]string{"deploys", "list", "--url", p.api, "--limit", "0"}, "--limit must be from 1 to 1000"},
		{[]string{"deploys", "list", "--url", p.api, "--token", "wrong"}, "401 Unauthorized: missing or wrong API token"},
		{[]string{"deploys", "list", "--url", "http://127.0.0.1:1"}, "check --url"},
	} {
		if _, err := cli(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("deploywatch %s: %v, want an error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
