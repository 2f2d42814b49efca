package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/deploywatch/deploywatch/schema/chschema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// env is a real JetStream with deploywatch's streams and a migrated ClickHouse database.
type env struct {
	js  jetstream.JetStream
	pub *eventlog.Publisher
	ch  driver.Conn
}

func newEnv(t *testing.T) *env {
	t.Helper()
	nc := testenv.NATSConn(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := eventlog.EnsureStreams(ctx, js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	pub, err := eventlog.NewPublisher(nc, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	dsn := testenv.ClickHouse(t)
	ch, err := chschema.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	db, _ := chschema.DatabaseFromDSN(dsn)
	if _, err := chschema.Migrate(ctx, ch, db, nil); err != nil {
		t.Fatal(err)
	}
	return &env{js: js, pub: pub, ch: ch}
}

// publishBatches publishes n batches of size samples of service and returns
// the total requests.
func (e *env) publishBatches(t *testing.T, service string, n, size int) uint64 {
	t.Helper()
	var total uint64
	start := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Minute)
	var msgs []schema.Message
	for i := 0; i < n; i++ {
		b := schema.MetricsBatch{Service: service, Env: "production"}
		for j := 0; j < size; j++ {
			req := uint64(100 + (i*size+j)%37)
			total += req
			b.Samples = append(b.Samples, schema.Sample{
				Time:      schema.At(start.Add(time.Duration(i*size+j) * time.Second)),
				IntervalS: schema.NumberOf(1), Version: "v2", Instance: "i-1",
				Requests: schema.CountOf(req), Errors: schema.CountOf(req / 50),
				LatencyMs: &schema.LatencyQuantiles{P50: schema.NumberOf(12), P99: schema.NumberOf(80)},
			})
		}
		b.Normalize(nil)
		data, err := json.Marshal(&b)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, schema.Message{Subject: schema.Subject(&b), ID: b.EventID(), Data: data})
	}
	if err := e.pub.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	return total
}

func (e *env) count(t *testing.T, query string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := e.ch.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// runSink runs the sink until the returned stop is called, and returns what RunSink returned.
func runSink(t *testing.T, e *env, cfg SinkConfig) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunSink(ctx, e.js, e.ch, cfg) }()
	stopped := false
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-done
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// TestSinkCrashBetweenInsertAndAck kills the sink after ClickHouse accepted a
// batch and before it acked: JetStream redelivers the messages to the next
// sink, they are written again, and no query sees a duplicate.
func TestSinkCrashBetweenInsertAndAck(t *testing.T) {
	e := newEnv(t)
	total := e.publishBatches(t, "crashy", 5, 400)

	crashed := errors.New("crashed between insert and ack")
	first := runSink(t, e, SinkConfig{FlushRows: 100_000, FlushInterval: 300 * time.Millisecond, AckWait: time.Second,
		afterWrite: func() error { return crashed }})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := e.count(t, "SELECT count() FROM metric_samples WHERE service = 'crashy'")
		return n == 2000, fmt.Sprintf("%d of 2000 rows written before the crash", n)
	})
	if err := first(); !errors.Is(err, crashed) {
		t.Fatalf("the first sink returned %v, want the crash", err)
	}

	// The next sink gets the unacked messages again after AckWait.
	second := runSink(t, e, SinkConfig{FlushRows: 100_000, FlushInterval: 300 * time.Millisecond, AckWait: time.Second})
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		n := e.count(t, "SELECT count() FROM metric_samples WHERE service = 'crashy'")
		return n == 4000, fmt.Sprintf("%d raw rows; waiting for the redelivered 2000", n)
	})
	if n := e.count(t, "SELECT count() FROM metric_samples FINAL WHERE service = 'crashy'"); n != 2000 {
		t.Errorf("%d samples visible with FINAL, want 2000", n)
	}
	if err := second(); err != nil {
		t.Fatalf("the second sink stopped with %v", err)
	}
	// Stopped, so every insert it made has returned, rollup included.
	if got := e.count(t, "SELECT sum(requests) FROM metrics_1m FINAL WHERE service = 'crashy'"); got != total {
		t.Errorf("rollup sum(requests) = %d, want %d (a redelivered message must not count twice)", got, total)
	}
	// Everything is acked now: a third sink finds nothing to do.
	cons, err := e.js.Consumer(context.Background(), schema.MetricsStream, "clickhouse-sink-"+schema.MetricsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("after a clean stop: %d messages unacked, %d pending, want 0 and 0", info.NumAckPending, info.NumPending)
	}
}

// TestSinkDeadLetters moves a message that can never be decoded to the
// dead-letter stream with the reason, and goes on with the next ones.
func TestSinkDeadLetters(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.js.Publish(ctx, "deploywatch.metrics.broken", []byte(`{"service":"broken","samples":"not a list"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(ctx, "deploywatch.changes.deploy.broken", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	e.publishBatches(t, "after-broken", 1, 10)
	stop := runSink(t, e, SinkConfig{FlushInterval: 100 * time.Millisecond})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := e.count(t, "SELECT count() FROM metric_samples FINAL WHERE service = 'after-broken'")
		return n == 10, fmt.Sprintf("%d of 10 samples after the broken message", n)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ subject, from, reason string }{
		{schema.DeadLetterSubject(schema.MetricsStream), "deploywatch.metrics.broken", "samples"},
		{schema.DeadLetterSubject(schema.ChangesStream), "deploywatch.changes.deploy.broken", "JSON"},
	} {
		msg, err := e.js.Stream(ctx, schema.DeadLetterStream)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := msg.GetLastMsgForSubject(ctx, want.subject)
		if err != nil {
			t.Fatalf("nothing dead-lettered on %s: %v", want.subject, err)
		}
		h := nats.Header(raw.Header)
		if h.Get(schema.DeadLetterSubjectHeader) != want.from || !strings.Contains(h.Get(schema.DeadLetterReasonHeader), want.reason) {
			t.Errorf("dead letter on %s: from %q reason %q; want from %q and a reason mentioning %q",
				want.subject, h.Get(schema.DeadLetterSubjectHeader), h.Get(schema.DeadLetterReasonHeader), want.from, want.reason)
		}
	}
}
