package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsEnv is a real embedded JetStream with deploywatch's streams.
type natsEnv struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	pub *eventlog.Publisher
}

func newNATSEnv(t *testing.T) *natsEnv {
	t.Helper()
	nc := testenv.NATSConn(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventlog.EnsureStreams(context.Background(), js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	pub, err := eventlog.NewPublisher(nc, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &natsEnv{nc: nc, js: js, pub: pub}
}

// publish puts ev on its subject as JSON with msgID as Nats-Msg-Id, as the
// alert engine does.
func (e *natsEnv) publish(t *testing.T, ev schema.Event, msgID string) {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: schema.Subject(ev), Data: data}, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatalf("cannot publish %s: %v", ev.EventID(), err)
	}
}

// messages returns the bodies of the messages of stream on subjects starting with prefix.
func (e *natsEnv) messages(t *testing.T, stream, prefix string) [][]byte {
	t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m.Data)
		}
	}
	return out
}

// deliveries are the delivery events on the signals stream, in order.
func (e *natsEnv) deliveries(t *testing.T) []schema.Delivery {
	t.Helper()
	var out []schema.Delivery
	for _, data := range e.messages(t, schema.SignalsStream, "deploywatch.signals.delivery.") {
		d, err := schema.DecodeDelivery(data)
		if err != nil {
			t.Fatalf("a delivery event does not decode: %v\n%s", err, data)
		}
		out = append(out, *d)
	}
	return out
}

// settled reports whether the durable consumer has handed out everything on
// its subjects and got an ack for all of it.
func (e *natsEnv) settled(t *testing.T, stream, durable string) (bool, string) {
	t.Helper()
	c, err := e.js.Consumer(context.Background(), stream, durable)
	if err != nil {
		return false, fmt.Sprintf("no consumer %s yet: %v", durable, err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		return false, err.Error()
	}
	return info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0,
		fmt.Sprintf("consumer %s: %d pending, %d awaiting ack, %d redelivered", durable, info.NumPending, info.NumAckPending, info.NumRedelivered)
}

// testAlert is an alert of the bad-deploy rule for a deploy of service, as
// the engine publishes it.
func testAlert(service, deployID string, status schema.AlertStatus) *schema.Alert {
	since := time.Now().UTC().Add(-3 * time.Minute).Truncate(time.Second)
	alertID := schema.NewAlertID("bad-deploy-in-production", deployID, service, "production", since)
	a := &schema.Alert{
		ID: schema.AlertEventID(alertID, status), Type: schema.TypeAlert, AlertID: alertID, Status: status,
		Rule: "bad-deploy-in-production", Severity: schema.SeverityCritical,
		Actions: []string{schema.ActionRollback, schema.ActionNotify},
		Service: service, Env: "production", DeployID: deployID, Version: "v2.14.0", PreviousVersion: "v2.13.2",
		Summary:   "error rate 2.4x the baseline's on the canary instances of v2.14.0 (p < 0.001) & <rising>",
		VerdictID: deployID + ":verdict:1772461500", VerdictStatus: schema.VerdictBad, VerdictScore: 40,
		StartsAt: schema.At(since), PendingSince: schema.At(since),
		Labels: map[string]string{"team": "payments"},
	}
	if status == schema.AlertResolved {
		a.EndsAt = schema.At(since.Add(2 * time.Minute))
		a.Resolution = schema.ResolvedRolledBack
	}
	return a
}

// request is one request a test receiver got.
type request struct {
	header http.Header
	body   []byte
	at     time.Time
}

// testReceiver is a real HTTP server that records what it gets and answers
// what answer says for the n-th request (1-based).
type testReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []request
	answer func(n int, w http.ResponseWriter) int
}

func newTestReceiver(t *testing.T, answer func(n int, w http.ResponseWriter) int) *testReceiver {
	t.Helper()
	r := &testReceiver{answer: answer}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *testReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.got = append(r.got, request{header: req.Header.Clone(), body: body, at: time.Now()})
	n := len(r.got)
	r.mu.Unlock()
	code := http.StatusOK
	if r.answer != nil {
		code = r.answer(n, w)
	}
	w.WriteHeader(code)
	fmt.Fprintf(w, "answer %d to request %d", code, n)
}

func (r *testReceiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.got...)
}

func (r *testReceiver) url() string { return r.srv.URL + "/hooks/deploywatch" }

// fastRetry keeps tests in milliseconds, not minutes.
func fastRetry() Retry {
	return Retry{
		InitialInterval: 20 * time.Millisecond, MaxInterval: 80 * time.Millisecond, MaxElapsedTime: 3 * time.Second,
		Multiplier: 2, Jitter: 0.5, RedeliverAfter: 150 * time.Millisecond,
	}
}

// receiversFile parses a receivers file as cmd does, with env as the environment.
func receiversFile(t *testing.T, yaml string, env map[string]string) *Receivers {
	t.Helper()
	rs, err := ParseReceivers([]byte(yaml), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// runDelivery runs the delivery until the returned stop is called (or the
// test ends) and returns what RunDelivery returned.
func runDelivery(t *testing.T, e *natsEnv, cfg DeliveryConfig) (stop func() error) {
	t.Helper()
	if cfg.AckWait == 0 {
		cfg.AckWait = 2 * time.Second
	}
	if cfg.Backlog == 0 {
		cfg.Backlog = time.Hour
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunDelivery(ctx, e.js, e.pub, cfg) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			result = <-done
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
