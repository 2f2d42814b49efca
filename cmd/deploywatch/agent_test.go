package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/alerts"
	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// syncBuffer is a log both the agent and the test touch.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRollbackAgentCommand runs `deploywatch rollback-agent` as a user
// would, against an embedded NATS with deploywatch's streams: a rollback
// signal runs the script once, and the rolled_back deploy arrives on the
// changes stream.
func TestRollbackAgentCommand(t *testing.T) {
	checkAgentRollsBack(t, testenv.NATS(t).ClientURL(), "", "checkout,search")
}

// TestRollbackAgentWithDebianNATS runs the agent against the distribution's
// older nats-server, with token auth.
func TestRollbackAgentWithDebianNATS(t *testing.T) {
	const token = "agent-nats-token"
	checkAgentRollsBack(t, testenv.ExternalNATS(t, token), token, "search")
}

// checkAgentRollsBack runs the agent for services against the NATS at
// natsURL: a rollback signal for search runs the script once, and the
// rolled_back deploy arrives on the changes stream.
func checkAgentRollsBack(t *testing.T, natsURL, token, services string) {
	nc, err := eventlog.Connect(eventlog.ConnectOptions{URL: natsURL, Token: token, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := eventlog.EnsureStreams(ctx, js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "undo.sh")
	runs := filepath.Join(dir, "runs.log")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+alerts.ShellQuote(runs)+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	agentCtx, stop := context.WithCancel(ctx)
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		args := []string{"rollback-agent", "--nats-url", natsURL, "--service", services,
			"--name", "cmd-test", "--command", alerts.ShellQuote(script) + " {{.Service}} {{.Env}} {{.PreviousVersion}} {{.SignalID}}"}
		if token != "" {
			args = append(args, "--nats-token", token)
		}
		done <- run(agentCtx, args, &bytes.Buffer{}, &stderr)
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("rollback-agent: %v\n%s", err, stderr.String())
		}
	}()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		_, err := js.Consumer(ctx, schema.SignalsStream, alerts.AgentConsumerName("cmd-test"))
		return err == nil, fmt.Sprintf("%v\n%s", err, stderr.String())
	})

	at := time.Now().UTC().Add(-time.Minute)
	sig := &schema.RollbackSignal{
		ID: schema.RollbackSignalID("gha-search-77"), Type: schema.TypeRollback, Service: "search", Env: "production",
		DeployID: "gha-search-77", Version: "2026.03.02-1", PreviousVersion: "2026.03.01-4", Rule: "bad-deploy-in-production",
		AlertID: schema.NewAlertID("bad-deploy-in-production", "gha-search-77", "search", "production", at),
		Reason:  "p99 latency 1.8x the baseline's", At: schema.At(at),
	}
	data, _ := json.Marshal(sig)
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: schema.Subject(sig), Data: data}, jetstream.WithMsgID(sig.ID)); err != nil {
		t.Fatal(err)
	}
	var deploy schema.Deploy
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		stream, err := js.Stream(ctx, schema.ChangesStream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.GetLastMsgForSubject(ctx, "deploywatch.changes.deploy.search")
		if err != nil {
			return false, fmt.Sprintf("%v\n%s", err, stderr.String())
		}
		return json.Unmarshal(m.Data, &deploy) == nil, string(m.Data)
	})
	if deploy.ID != "gha-search-77" || deploy.Status != schema.DeployRolledBack || deploy.PreviousVersion != "2026.03.01-4" {
		t.Errorf("deploy event %+v", deploy)
	}
	got, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	if want := "search production 2026.03.01-4 gha-search-77:rollback\n"; string(got) != want {
		t.Errorf("the script ran with %q, want %q", got, want)
	}
}

func TestRollbackAgentFlagsAreChecked(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"rollback-agent", "--command", `echo "{{.Reason}}"`}, &bytes.Buffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--service is required") || !strings.Contains(err.Error(), "inside \" quotes") {
		t.Fatalf("err %v, want it to name the missing --service and the quoted placeholder", err)
	}
}

// TestReceiversExample: the example file loads with its secrets in the environment.
func TestReceiversExample(t *testing.T) {
	t.Setenv("INCIDENT_BOT_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	t.Setenv("ALERT_ROUTER_AUTHORIZATION", "Bearer x")
	t.Setenv("SLACK_DEPLOYS_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/XYZ")
	rs, err := loadReceivers(deliveryFlags{receivers: "../../deployments/receivers.example.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Receivers) != 3 || rs.Receivers[1].Format != alerts.FormatAlertmanager || rs.Retry != alerts.DefaultRetry() {
		t.Fatalf("receivers %+v", rs)
	}
	os.Unsetenv("SLACK_DEPLOYS_WEBHOOK_URL")
	if _, err := loadReceivers(deliveryFlags{receivers: "../../deployments/receivers.example.yaml"}); err == nil ||
		!strings.Contains(err.Error(), `receiver "slack-deploys": url: the environment variable SLACK_DEPLOYS_WEBHOOK_URL is not set`) {
		t.Fatalf("without its variable: %v", err)
	}
}
