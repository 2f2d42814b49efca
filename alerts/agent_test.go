package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go/jetstream"
)

// recorder is a rollback script that appends its arguments to a log, one run
// a line, arguments joined by '|'. It fails while it has run no more than
// fails times, and sleeps pause first.
type recorder struct {
	dir, script, log string
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	dir := t.TempDir()
	r := &recorder{dir: dir, script: filepath.Join(dir, "rollback.sh"), log: filepath.Join(dir, "runs.log")}
	script := `#!/bin/sh
n=$(cat "$RUNS_LOG.count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$RUNS_LOG.count"
(IFS='|'; printf '%s\n' "$*") >> "$RUNS_LOG"
sleep "${PAUSE:-0}"
if [ "$n" -le "${FAILS:-0}" ]; then
  echo "error: the server could not be reached (connection refused), run $n" >&2
  exit 1
fi
echo "deployment.apps/$1 rolled back"
`
	if err := os.WriteFile(r.script, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

// runs are the argument lists the script was run with.
func (r *recorder) runs(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(r.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// config is an agent of checkout running the script, with test timings.
func (r *recorder) config(env ...string) AgentConfig {
	return AgentConfig{
		Name:         "k8s-eu",
		Services:     []string{"checkout"},
		Command:      ShellQuote(r.script) + ` {{.Service}} {{.Env}} {{.Version}} {{.PreviousVersion}} {{.DeployID}} {{.SignalID}} {{.Reason}}`,
		Env:          append([]string{"PATH=" + os.Getenv("PATH"), "RUNS_LOG=" + r.log, "DEPLOYWATCH_NATS_PASSWORD=not-for-the-command"}, env...),
		AckWait:      time.Second,
		StaleAfter:   400 * time.Millisecond,
		RetryInitial: 10 * time.Millisecond,
		RetryMax:     50 * time.Millisecond,
		Timeout:      10 * time.Second,
	}
}

// testSignal asks to roll back a deploy of service, as the alert engine does.
func testSignal(service, deployID, reason string) *schema.RollbackSignal {
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	return &schema.RollbackSignal{
		ID: schema.RollbackSignalID(deployID), Type: schema.TypeRollback, Service: service, Env: "production",
		DeployID: deployID, Version: "v2.14.0", PreviousVersion: "v2.13.2", Rule: "bad-deploy-in-production",
		AlertID:   schema.NewAlertID("bad-deploy-in-production", deployID, service, "production", at),
		VerdictID: deployID + ":verdict:1772461500", Reason: reason, At: schema.At(at), Severity: schema.SeverityCritical,
	}
}

// runningAgent is an agent running in the background.
type runningAgent struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	result error
}

func startAgent(t *testing.T, e *natsEnv, cfg AgentConfig) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &runningAgent{cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- RunAgent(ctx, e.js, e.pub, cfg) }()
	t.Cleanup(func() { _ = a.stop() })
	// Wait for its consumer, so that what the test publishes next is new to it.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		select {
		case err := <-a.done:
			a.done <- err
			t.Fatalf("the agent stopped at once: %v", err)
		default:
		}
		_, err := e.js.Consumer(ctx, schema.SignalsStream, AgentConsumerName(cfg.Name))
		return err == nil, fmt.Sprint(err)
	})
	return a
}

// stop cancels the agent and returns what RunAgent returned.
func (a *runningAgent) stop() error {
	a.once.Do(func() {
		a.cancel()
		a.result = <-a.done
	})
	return a.result
}

// wait waits for the agent to stop by itself.
func (a *runningAgent) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-a.done:
		a.once.Do(func() { a.result = err })
		return err
	case <-time.After(timeout):
		t.Fatalf("the agent did not stop within %s", timeout)
		return nil
	}
}

// rolledBack are the rolled_back deploy events on the changes stream.
func (e *natsEnv) rolledBack(t *testing.T) []schema.Deploy {
	t.Helper()
	var out []schema.Deploy
	for _, data := range e.messages(t, schema.ChangesStream, "deploywatch.changes.deploy.") {
		var d schema.Deploy
		if err := schema.DecodeInto(data, &d, ""); err != nil {
			t.Fatalf("a deploy event on the changes stream does not decode as the sink decodes it: %v\n%s", err, data)
		}
		if d.Status == schema.DeployRolledBack {
			out = append(out, d)
		}
	}
	return out
}

// record reads the agent's record of a signal.
func (e *natsEnv) record(t *testing.T, agent, signalID string) *runRecord {
	t.Helper()
	kv, err := e.js.KeyValue(context.Background(), AgentBucket(agent))
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), recordKey(signalID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var r runRecord
	if err := json.Unmarshal(entry.Value(), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// TestAgentRunsItsCommandOncePerSignal: the same signal published twice with
// different message ids (JetStream keeps both) runs the command once, with
// the values as single arguments however hostile the reason; the rolled
// back deploy is reported on the changes stream.
func TestAgentRunsItsCommandOncePerSignal(t *testing.T) {
	e := newNATSEnv(t)
	rec := newRecorder(t)
	pwned := filepath.Join(rec.dir, "pwned")
	reason := fmt.Sprintf(`error rate 2.4x; $(touch %s) `+"`touch %s`"+` it's "bad" | exit 3 & $HOME`, pwned, pwned)
	startAgent(t, e, rec.config())
	sig := testSignal("checkout", "gha-checkout-8123456789-1", reason)
	e.publish(t, sig, sig.ID)
	e.publish(t, sig, sig.ID+"-sent-again")

	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, schema.SignalsStream, AgentConsumerName("k8s-eu"))
		return ok && len(e.rolledBack(t)) == 1, fmt.Sprintf("%s; %d rolled_back events", status, len(e.rolledBack(t)))
	})
	runs := rec.runs(t)
	want := strings.Join([]string{"checkout", "production", "v2.14.0", "v2.13.2", "gha-checkout-8123456789-1", sig.ID, reason}, "|")
	if len(runs) != 1 || runs[0] != want {
		t.Fatalf("the script ran with %q, want once with %q", runs, want)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("a value from the signal ran a command of its own")
	}
	d := e.rolledBack(t)[0]
	if d.ID != sig.DeployID || d.Service != "checkout" || d.Env != "production" || d.Version != "v2.14.0" ||
		d.PreviousVersion != "v2.13.2" || d.Labels["rollback_signal_id"] != sig.ID || d.Labels["rolled_back_to"] != "v2.13.2" ||
		time.Since(d.FinishedAt.Time) > time.Minute {
		t.Errorf("rolled back deploy: %+v", d)
	}
	r := e.record(t, "k8s-eu", sig.ID)
	if r == nil || r.State != stateDone || r.Attempts != 1 || !strings.Contains(r.Output, "deployment.apps/checkout rolled back") {
		t.Errorf("record: %+v", r)
	}
}

// TestAgentKilledAfterItsCommandRanDoesNotRunItAgain: the agent dies after
// the command succeeded and before it reported and acked; JetStream hands
// the signal to the restarted agent, which finds the record done, reports
// the rollback and acks, without running the command again.
func TestAgentKilledAfterItsCommandRanDoesNotRunItAgain(t *testing.T) {
	e := newNATSEnv(t)
	rec := newRecorder(t)
	errKilled := errors.New("killed after the command ran, before the ack")
	cfg := rec.config()
	cfg.afterRun = func(string) error { return errKilled }
	first := startAgent(t, e, cfg)
	sig := testSignal("checkout", "gha-checkout-8123456789-2", "error rate 2.4x the baseline's")
	e.publish(t, sig, sig.ID)
	if err := first.wait(t, 20*time.Second); !errors.Is(err, errKilled) {
		t.Fatalf("the agent returned %v, want the crash", err)
	}
	if n := len(rec.runs(t)); n != 1 {
		t.Fatalf("the command ran %d times before the crash, want 1", n)
	}
	if n := len(e.rolledBack(t)); n != 0 {
		t.Fatalf("%d rolled_back events before the crash, want none (it died before reporting)", n)
	}

	cfg.afterRun = nil
	startAgent(t, e, cfg)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, schema.SignalsStream, AgentConsumerName("k8s-eu"))
		return ok && len(e.rolledBack(t)) == 1, fmt.Sprintf("%s; %d rolled_back events", status, len(e.rolledBack(t)))
	})
	if n := len(rec.runs(t)); n != 1 {
		t.Fatalf("the command ran %d times, want 1: the restarted agent ran it again", n)
	}
}

// TestAgentKilledWhileItsCommandRan: the agent dies with a run under way.
// Its restart finds the record running with a stale heartbeat: a command
// not declared idempotent is not run again but recorded as interrupted for
// a person; an idempotent one is run again, once.
func TestAgentKilledWhileItsCommandRan(t *testing.T) {
	for _, idempotent := range []bool{false, true} {
		t.Run(fmt.Sprintf("idempotent=%v", idempotent), func(t *testing.T) {
			e := newNATSEnv(t)
			rec := newRecorder(t)
			errKilled := errors.New("killed while the command ran")
			cfg := rec.config()
			cfg.Idempotent = idempotent
			cfg.beforeRun = func(string) error { return errKilled }
			first := startAgent(t, e, cfg)
			sig := testSignal("checkout", "gha-checkout-8123456789-3", "error rate 2.4x the baseline's")
			e.publish(t, sig, sig.ID)
			if err := first.wait(t, 20*time.Second); !errors.Is(err, errKilled) {
				t.Fatalf("the agent returned %v, want the crash", err)
			}
			if r := e.record(t, "k8s-eu", sig.ID); r == nil || r.State != stateRunning {
				t.Fatalf("record after the crash: %+v, want running", r)
			}

			cfg.beforeRun = nil
			startAgent(t, e, cfg)
			testenv.Eventually(t, 20*time.Second, func() (bool, string) {
				ok, status := e.settled(t, schema.SignalsStream, AgentConsumerName("k8s-eu"))
				r := e.record(t, "k8s-eu", sig.ID)
				return ok && r.State != stateRunning, fmt.Sprintf("%s; record %+v", status, r)
			})
			r := e.record(t, "k8s-eu", sig.ID)
			runs, reported := len(rec.runs(t)), len(e.rolledBack(t))
			if idempotent {
				if r.State != stateDone || runs != 1 || reported != 1 {
					t.Fatalf("idempotent: record %s, %d runs, %d reported; want done, 1, 1", r.State, runs, reported)
				}
				return
			}
			if r.State != stateInterrupted || runs != 0 || reported != 0 || !strings.Contains(r.LastError, "not declared idempotent") {
				t.Fatalf("record %+v, %d runs, %d reported; want interrupted, no run, nothing reported", r, runs, reported)
			}
		})
	}
}

// TestAgentRetriesAFailingCommandThenGivesUp: a command that fails twice
// succeeds at the third attempt; one that always fails is run --attempts
// times, recorded as failed, and the signal acked.
func TestAgentRetriesAFailingCommandThenGivesUp(t *testing.T) {
	e := newNATSEnv(t)
	flaky := newRecorder(t)
	cfg := flaky.config("FAILS=2")
	startAgent(t, e, cfg)
	sig := testSignal("checkout", "gha-checkout-8123456789-4", "error rate 2.4x")
	e.publish(t, sig, sig.ID)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, schema.SignalsStream, AgentConsumerName("k8s-eu"))
		return ok && len(e.rolledBack(t)) == 1, status
	})
	if r := e.record(t, "k8s-eu", sig.ID); len(flaky.runs(t)) != 3 || r.State != stateDone || r.Attempts != 3 {
		t.Fatalf("%d runs, record %+v; want 3 runs and done at attempt 3", len(flaky.runs(t)), r)
	}

	broken := newRecorder(t)
	cfg = broken.config("FAILS=100")
	cfg.Name, cfg.Attempts, cfg.Services = "k8s-us", 3, []string{"payments"}
	startAgent(t, e, cfg)
	sig = testSignal("payments", "gha-payments-8123456789-5", "error rate 2.4x")
	e.publish(t, sig, sig.ID)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, schema.SignalsStream, AgentConsumerName("k8s-us"))
		r := e.record(t, "k8s-us", sig.ID)
		return ok && r != nil && r.State == stateFailed, fmt.Sprintf("%s; record %+v", status, r)
	})
	r := e.record(t, "k8s-us", sig.ID)
	if len(broken.runs(t)) != 3 || r.Attempts != 3 || !strings.Contains(r.Output, "connection refused") || !strings.Contains(r.LastError, "3 attempt") {
		t.Fatalf("%d runs, record %+v; want 3 runs, the output and the reason kept", len(broken.runs(t)), r)
	}
	for _, d := range e.rolledBack(t) {
		if d.ID == sig.DeployID {
			t.Fatalf("a failed rollback was reported as rolled back: %+v", d)
		}
	}
}

// TestAgentsOfOneNameShareTheWork: two agents of one name, the signal sent
// twice: each copy may go to a different agent, and the command still runs
// once (the second agent sees the first one's fresh heartbeat, waits, and
// finds the record done).
func TestAgentsOfOneNameShareTheWork(t *testing.T) {
	e := newNATSEnv(t)
	rec := newRecorder(t)
	cfg := rec.config("PAUSE=0.6")
	startAgent(t, e, cfg)
	startAgent(t, e, cfg)
	sig := testSignal("checkout", "gha-checkout-8123456789-6", "error rate 2.4x")
	e.publish(t, sig, sig.ID)
	e.publish(t, sig, sig.ID+"-again")
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, schema.SignalsStream, AgentConsumerName("k8s-eu"))
		return ok && len(e.rolledBack(t)) == 1, status
	})
	if n := len(rec.runs(t)); n != 1 {
		t.Fatalf("the command ran %d times, want 1", n)
	}
}

// TestAgentCallsAnHTTPEndpoint: with --http-url the agent POSTs the signal,
// signed, with the same webhook-id and Idempotency-Key on every attempt.
func TestAgentCallsAnHTTPEndpoint(t *testing.T) {
	e := newNATSEnv(t)
	endpoint := newTestReceiver(t, func(n int, _ http.ResponseWriter) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusAccepted
	})
	key, _ := SecretKey(testSecret)
	startAgent(t, e, AgentConfig{
		Name: "argo", Services: []string{"checkout", "search"}, HTTPURL: endpoint.url(), HTTPSecret: key,
		HTTPHeaders: map[string]string{"Authorization": "Bearer t0ken"},
		AckWait:     time.Second, RetryInitial: 10 * time.Millisecond,
	})
	sig := testSignal("search", "argo-search-551", "p99 latency 1.8x")
	e.publish(t, sig, sig.ID)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		ok, status := e.settled(t, schema.SignalsStream, AgentConsumerName("argo"))
		return ok && len(e.rolledBack(t)) == 1, status
	})
	reqs := endpoint.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2 (503, then 202)", len(reqs))
	}
	for i, r := range reqs {
		if err := verifySignature(testSecret, r.header, r.body); err != nil {
			t.Errorf("request %d: %v", i+1, err)
		}
		if r.header.Get("Idempotency-Key") != sig.ID || r.header.Get("webhook-id") != reqs[0].header.Get("webhook-id") ||
			r.header.Get("Authorization") != "Bearer t0ken" {
			t.Errorf("request %d headers: %v", i+1, r.header)
		}
		var got schema.RollbackSignal
		if err := json.Unmarshal(r.body, &got); err != nil || got.ID != sig.ID || got.DeployID != sig.DeployID {
			t.Errorf("request %d: the body is not the signal: %v %s", i+1, err, r.body)
		}
	}
}

func TestParseCommand(t *testing.T) {
	data := CommandData{Service: "checkout", Env: "production", Version: "v2.14.0", PreviousVersion: "v2.13.2",
		DeployID: "gha-checkout-1", SignalID: "gha-checkout-1:rollback", Reason: `it's $(bad) "x"`}
	ok := func(text, want string) {
		t.Helper()
		tmpl, err := ParseCommand(text)
		if err != nil {
			t.Fatalf("ParseCommand(%q): %v", text, err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, data); err != nil {
			t.Fatal(err)
		}
		if b.String() != want {
			t.Fatalf("ParseCommand(%q) renders\n%s\nwant\n%s", text, b.String(), want)
		}
	}
	ok(`kubectl rollout undo deployment/{{.Service}} -n {{.Env}}`, `kubectl rollout undo deployment/checkout -n production`)
	ok(`notify --reason {{.Reason}}`, `notify --reason 'it'\''s $(bad) "x"'`)
	ok(`helm rollback {{.Service}} {{if eq .Env "production"}}--wait{{end}} # 'done'`, `helm rollback checkout --wait # 'done'`)
	ok(`echo {{.Reason | shellquote}} {{printf "%s@%s" .Service .Version}} {{.AlertID}}`, `echo 'it'\''s $(bad) "x"' checkout@v2.14.0 ''`)
	ok(`echo "$DEPLOYWATCH_SIGNAL_REASON" 'literal' {{.Env}}`, `echo "$DEPLOYWATCH_SIGNAL_REASON" 'literal' production`)
	ok(`echo \"{{.Env}}`, `echo \"production`)

	bad := func(text, want string) {
		t.Helper()
		_, err := ParseCommand(text)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("ParseCommand(%q): %v, want an error saying %q", text, err, want)
		}
	}
	bad(`echo "{{.Reason}}"`, `inside " quotes`)
	bad(`echo '{{.Reason}}'`, `inside ' quotes`)
	bad(`echo {{if .Reason}}"{{end}}x"`, "must be closed")
	bad(`echo {{template "x"}}`, "not supported")
	bad(`echo {{.Nope}}`, "Nope")
	bad(`echo 'open`, "quote open")
	bad(`  `, "empty")
}

func TestAgentConfigValidate(t *testing.T) {
	f := func(c AgentConfig, want ...string) {
		t.Helper()
		_, err := c.Validate()
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v): %v, want it to say %q", c, err, w)
			}
		}
	}
	f(AgentConfig{}, "--service is required", "give --command")
	f(AgentConfig{Name: "a b", Services: []string{"checkout", "bad name"}, Command: "x", HTTPURL: "http://x"},
		"--name", `"bad name" is not a service name`, "not both")
	f(AgentConfig{Services: []string{"checkout"}, Command: `echo "{{.Env}}"`}, "--command:")
	f(AgentConfig{Services: []string{"checkout"}, HTTPURL: "ftp://x"}, "--http-url")
	if _, err := (&AgentConfig{Services: []string{"checkout"}, Command: "true"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCommandEnvDropsTheAgentsOwnSettings(t *testing.T) {
	env := commandEnv([]string{"PATH=/bin", "DEPLOYWATCH_NATS_PASSWORD=x", "KUBECONFIG=/k"}, CommandData{Service: "checkout", Reason: "r"})
	joined := strings.Join(env, "\n")
	if strings.Contains(joined, "NATS_PASSWORD") || !strings.Contains(joined, "KUBECONFIG=/k") ||
		!strings.Contains(joined, "DEPLOYWATCH_SIGNAL_SERVICE=checkout") || !strings.Contains(joined, "DEPLOYWATCH_SIGNAL_REASON=r") {
		t.Fatalf("command env: %v", env)
	}
}
