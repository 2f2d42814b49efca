package processors

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// inboxEnv is a real JetStream with deploywatch's streams and an inbox
// processor that the test starts and stops.
type inboxEnv struct {
	js  jetstream.JetStream
	pub *eventlog.Publisher
	set *metrics.Set
}

func newInboxEnv(t *testing.T) *inboxEnv {
	t.Helper()
	nc := testenv.NATSConn(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventlog.EnsureStreams(context.Background(), js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	pub, err := eventlog.NewPublisher(nc, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &inboxEnv{js: js, pub: pub, set: metrics.NewSet()}
}

// run starts the inbox processor; it is stopped when the test ends, or by
// the returned function, which returns RunInbox's error.
func (e *inboxEnv) run(t *testing.T, cfg InboxConfig) (stop func() error) {
	t.Helper()
	cfg.Metrics = e.set
	if cfg.AckWait == 0 {
		cfg.AckWait = time.Second
	}
	cfg.RetryDelay = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunInbox(ctx, e.js, e.pub, cfg) }()
	var stopped bool
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// publish publishes data on subject as an outside publisher does, with
// msgID as Nats-Msg-Id, and fails unless the inbox acknowledged it.
func (e *inboxEnv) publish(t *testing.T, subject, msgID string, data []byte, headers ...string) *jetstream.PubAck {
	t.Helper()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	for i := 0; i+1 < len(headers); i += 2 {
		msg.Header.Set(headers[i], headers[i+1])
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := e.js.PublishMsg(context.Background(), msg, opts...)
	if err != nil {
		t.Fatalf("cannot publish on %s: %v", subject, err)
	}
	if ack.Stream != schema.InboxStream {
		t.Fatalf("%s was acknowledged by stream %s, want %s", subject, ack.Stream, schema.InboxStream)
	}
	return ack
}

func (e *inboxEnv) count(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatalf("cannot look up stream %s: %v", stream, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatalf("cannot read stream %s: %v", stream, err)
	}
	return info.State.Msgs
}

// stored returns every message of stream.
func (e *inboxEnv) stored(t *testing.T, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := e.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// waitCounts polls until the streams hold the given numbers of messages.
func (e *inboxEnv) waitCounts(t *testing.T, want map[string]uint64) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		got := map[string]uint64{}
		for stream := range want {
			got[stream] = e.count(t, stream)
		}
		for stream, n := range want {
			if got[stream] != n {
				return false, fmt.Sprintf("streams hold %v, want %v", got, want)
			}
		}
		return true, ""
	})
}

func (e *inboxEnv) counter(result string) uint64 {
	return e.set.GetOrCreateCounter(`deploywatch_inbox_messages_total{result="` + result + `"}`).Get()
}

func inboxDeploy(id, service string, finished time.Time) []byte {
	started := finished.Add(-3*time.Minute - 41*time.Second)
	return fmt.Appendf(nil, `{"type":"deploy","id":%q,"service":%q,"env":"production","version":"v3.8.1",`+
		`"previous_version":"v3.8.0","status":"succeeded","started_at":%q,"finished_at":%q,"strategy":"rolling",`+
		`"author":"ci-bot","labels":{"team":"search","pipeline":"argo-workflows"}}`,
		id, service, started.UTC().Format(time.RFC3339Nano), finished.UTC().Format(time.RFC3339Nano))
}

func inboxMetrics(service string, end time.Time, n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"type":"metrics","service":%q,"env":"production","samples":[`, service)
	for i := range n {
		at := end.Add(-time.Duration(n-1-i) * 15 * time.Second).UTC().Truncate(time.Second)
		if i > 0 {
			b.WriteByte(',')
		}
		requests := 1200 + 37*i%211
		fmt.Fprintf(&b, `{"time":%q,"interval_s":15,"version":"v3.8.1","instance":"%s-0%d","requests":%d,"errors":%d,"latency_ms":{"p50":%d.5,"p95":%d,"p99":%d}}`,
			at.Format(time.RFC3339), service, i%3, requests, i%4, 31+i%7, 88+i%13, 140+i%29)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// Valid events published on the inbox reach their streams once each: a
// re-sent message (same Nats-Msg-Id) is dropped by the inbox, and the same
// event sent under another id is dropped by the event log, because the
// inbox processor publishes it with its event id.
func TestInboxMovesValidEventsOnce(t *testing.T) {
	e := newInboxEnv(t)
	// 40 samples in parts of at most 16, as the API splits a large batch.
	e.run(t, InboxConfig{MaxSamplesPerMessage: 16})
	now := time.Now().Add(-time.Minute)
	deploy := inboxDeploy("search-api-20261122-0812", "search-api", now)
	batch := inboxMetrics("search.api", now, 40)

	first := e.publish(t, schema.InboxSubject(schema.TypeDeploy, "search-api"), "ci-run-5521", deploy)
	if again := e.publish(t, schema.InboxSubject(schema.TypeDeploy, "search-api"), "ci-run-5521", deploy); !again.Duplicate || again.Sequence != first.Sequence {
		t.Errorf("re-sent message acked as %+v, want the duplicate of %+v", again, first)
	}
	e.publish(t, schema.InboxSubject(schema.TypeDeploy, "search-api"), "ci-run-5521-retry", deploy)
	e.publish(t, schema.InboxSubject(schema.TypeMetrics, "search.api"), "batch-1", batch)
	e.publish(t, schema.InboxSubject(schema.TypeMetrics, "search.api"), "batch-1", batch)
	e.waitCounts(t, map[string]uint64{schema.ChangesStream: 1, schema.MetricsStream: 3, schema.InboxStream: 0})

	changes := e.stored(t, schema.ChangesStream)
	if m := changes[0]; m.Subject != "deploywatch.changes.deploy.search-api" || m.Header.Get(jetstream.MsgIDHeader) != "search-api-20261122-0812:succeeded" {
		t.Errorf("deploy stored on %s with Nats-Msg-Id %q", m.Subject, m.Header.Get(jetstream.MsgIDHeader))
	}
	ev, err := schema.DecodeEvent(changes[0].Data, "")
	if err != nil {
		t.Fatalf("stored deploy does not decode: %v", err)
	}
	if d := ev.(*schema.Deploy); d.Version != "v3.8.1" || d.Labels["team"] != "search" {
		t.Errorf("stored deploy %+v", d)
	}
	var want schema.MetricsBatch
	if err := schema.DecodeMetricsMessage("", batch, &want); err != nil {
		t.Fatal(err)
	}
	var samples []schema.Sample
	for i, m := range e.stored(t, schema.MetricsStream) {
		if m.Subject != "deploywatch.metrics.search_api" || m.Header.Get(schema.EncodingHeader) != schema.MetricsBinaryEncoding {
			t.Errorf("metrics stored on %s in encoding %q, want the binary encoding on deploywatch.metrics.search_api", m.Subject, m.Header.Get(schema.EncodingHeader))
		}
		var got schema.MetricsBatch
		if err := schema.DecodeMetricsMessage(m.Header.Get(schema.EncodingHeader), m.Data, &got); err != nil {
			t.Fatalf("stored part %d does not decode: %v", i, err)
		}
		if wantID := fmt.Sprintf("%s.%dof3", want.ID, i+1); got.ID != wantID || m.Header.Get(jetstream.MsgIDHeader) != wantID {
			t.Errorf("part %d stored as %s with Nats-Msg-Id %q, want %s", i, got.ID, m.Header.Get(jetstream.MsgIDHeader), wantID)
		}
		samples = append(samples, got.Samples...)
	}
	if len(samples) != 40 || samples[39].Requests != want.Samples[39].Requests || samples[39].Instance != want.Samples[39].Instance {
		t.Errorf("stored %d samples, want the batch's 40", len(samples))
	}
	if n := e.counter("accepted"); n != 3 {
		t.Errorf("accepted %d messages, want 3 (the inbox dropped the two re-sends)", n)
	}
}

// A processor that stops after publishing and before acking (a crash)
// publishes again when it restarts, and the event log keeps one copy.
func TestInboxRestartMidway(t *testing.T) {
	e := newInboxEnv(t)
	now := time.Now().Add(-time.Minute)
	e.publish(t, schema.InboxSubject(schema.TypeDeploy, "billing"), "", inboxDeploy("billing-7781", "billing", now))
	e.publish(t, schema.InboxSubject(schema.TypeMetrics, "billing"), "", inboxMetrics("billing", now, 12))
	crash := errors.New("crashed after publishing")
	stop := e.run(t, InboxConfig{afterPublish: func() error { return crash }})
	e.waitCounts(t, map[string]uint64{schema.ChangesStream: 1, schema.MetricsStream: 1})
	if err := stop(); !errors.Is(err, crash) {
		t.Fatalf("RunInbox returned %v, want the crash", err)
	}
	if n := e.count(t, schema.InboxStream); n != 2 {
		t.Fatalf("the inbox holds %d messages after the crash, want the 2 unacked", n)
	}

	e.run(t, InboxConfig{})
	e.waitCounts(t, map[string]uint64{schema.InboxStream: 0})
	if c, m := e.count(t, schema.ChangesStream), e.count(t, schema.MetricsStream); c != 1 || m != 1 {
		t.Fatalf("after the restart the event log holds %d changes and %d metrics, want 1 and 1", c, m)
	}
}

// Invalid messages go to the dead-letter stream with a reason naming the
// field, and nothing of them reaches the event log.
func TestInboxDeadLettersInvalid(t *testing.T) {
	e := newInboxEnv(t)
	e.run(t, InboxConfig{})
	now := time.Now().Add(-time.Minute)
	good := string(inboxDeploy("search-api-1", "search-api", now))
	cases := []struct {
		name, subject string
		data          []byte
		reason        string
	}{
		{"bad field", schema.InboxSubject(schema.TypeDeploy, "search-api"),
			[]byte(strings.Replace(good, `"status":"succeeded"`, `"status":"done"`, 1)), "status:"},
		{"unknown type in the body", schema.InboxSubject(schema.TypeDeploy, "search-api"),
			[]byte(strings.Replace(good, `"type":"deploy"`, `"type":"rollout"`, 1)), "type:"},
		{"unknown type in the subject", "deploywatch.in.rollout.search-api", []byte(good), "subject:"},
		{"no service in the subject", "deploywatch.in.deploy", []byte(good), "subject:"},
		{"another service's subject", schema.InboxSubject(schema.TypeDeploy, "billing"), []byte(good), "service:"},
		{"garbage", schema.InboxSubject(schema.TypeDeploy, "search-api"), []byte("\x8b\x1f\x00not json"), "body:"},
		{"garbage metrics", schema.InboxSubject(schema.TypeMetrics, "search-api"), []byte("\x00DWMB\x01\xff\xff\xff"), "body:"},
		{"negative count", schema.InboxSubject(schema.TypeMetrics, "search-api"),
			[]byte(strings.Replace(string(inboxMetrics("search-api", now, 3)), `"requests":1274`, `"requests":-5`, 1)), "samples[2].requests:"},
		{"unknown encoding", schema.InboxSubject(schema.TypeDeploy, "search-api"), []byte(good), "encoding"},
	}
	for i, c := range cases {
		var headers []string
		if c.name == "unknown encoding" {
			headers = []string{schema.EncodingHeader, "protobuf"}
		}
		e.publish(t, c.subject, fmt.Sprintf("bad-%d", i), c.data, headers...)
	}
	e.waitCounts(t, map[string]uint64{schema.DeadLetterStream: uint64(len(cases)), schema.InboxStream: 0})
	for i, m := range e.stored(t, schema.DeadLetterStream) {
		c := cases[i]
		h := m.Header
		if m.Subject != schema.DeadLetterSubject(schema.InboxStream) || h.Get(schema.DeadLetterSubjectHeader) != c.subject ||
			h.Get(schema.DeadLetterMsgIDHeader) != fmt.Sprintf("bad-%d", i) || !strings.Contains(h.Get(schema.DeadLetterReasonHeader), c.reason) {
			t.Errorf("%s: dead-lettered on %s from %q (msg id %q) because %q; want from %q because of %q",
				c.name, m.Subject, h.Get(schema.DeadLetterSubjectHeader), h.Get(schema.DeadLetterMsgIDHeader), h.Get(schema.DeadLetterReasonHeader), c.subject, c.reason)
		}
		if string(m.Data) != string(c.data) {
			t.Errorf("%s: dead-lettered body %q, want the message as published", c.name, m.Data)
		}
	}
	if c, m := e.count(t, schema.ChangesStream), e.count(t, schema.MetricsStream); c != 0 || m != 0 {
		t.Fatalf("the event log holds %d changes and %d metrics from invalid messages, want none", c, m)
	}
	if n := e.counter("dead_lettered"); n != uint64(len(cases)) {
		t.Errorf("dead_lettered counter %d, want %d", n, len(cases))
	}
}

// While the event log cannot take a write, the message stays in the inbox
// and is retried; once the stream is back it arrives.
func TestInboxRetriesWhileEventLogUnavailable(t *testing.T) {
	e := newInboxEnv(t)
	ctx := context.Background()
	if err := e.js.DeleteStream(ctx, schema.ChangesStream); err != nil {
		t.Fatal(err)
	}
	e.run(t, InboxConfig{})
	e.publish(t, schema.InboxSubject(schema.TypeDeploy, "search-api"), "", inboxDeploy("search-api-2", "search-api", time.Now().Add(-time.Minute)))
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return e.counter("retried") >= 2, fmt.Sprintf("retried %d times, want 2", e.counter("retried"))
	})
	if n := e.count(t, schema.InboxStream); n != 1 {
		t.Fatalf("the inbox holds %d messages while the event log is down, want 1", n)
	}
	if err := eventlog.EnsureStreams(ctx, e.js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	e.waitCounts(t, map[string]uint64{schema.ChangesStream: 1, schema.InboxStream: 0})
	if n := e.counter("dead_lettered"); n != 0 {
		t.Errorf("dead-lettered %d messages of an unavailable event log, want none", n)
	}
}
