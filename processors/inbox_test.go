package processors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats-server/v2/server"
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
	return newInboxEnvOn(t, testenv.NATS(t))
}

// newInboxEnvOn is an inboxEnv on the NATS server srv.
func newInboxEnvOn(t *testing.T, srv *server.Server) *inboxEnv {
	t.Helper()
	nc := testenv.NATSConn(t, srv)
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

// withSampleService gives sample i of a batch from inboxMetrics its own service.
func withSampleService(batch []byte, i int, service string) []byte {
	parts := strings.Split(string(batch), `{"time":`)
	var b strings.Builder
	b.WriteString(parts[0])
	for j, sample := range parts[1:] {
		b.WriteString(`{`)
		if j == i {
			b.WriteString(`"service":` + strconv.Quote(service) + `,`)
		}
		b.WriteString(`"time":` + sample)
	}
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
	// A sample's own service is what the sink stores: a publisher allowed
	// deploywatch.in.metrics.search-api only must not write billing's metrics.
	otherSample := withSampleService(inboxMetrics("search-api", now, 5), 3, "billing")
	var binary schema.MetricsBatch
	if err := schema.DecodeMetricsMessage("", otherSample, &binary); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, subject string
		data          []byte
		reason        string
		headers       []string
	}{
		{"bad field", schema.InboxSubject(schema.TypeDeploy, "search-api"),
			[]byte(strings.Replace(good, `"status":"succeeded"`, `"status":"done"`, 1)), "status:", nil},
		{"unknown type in the body", schema.InboxSubject(schema.TypeDeploy, "search-api"),
			[]byte(strings.Replace(good, `"type":"deploy"`, `"type":"rollout"`, 1)), "type:", nil},
		{"unknown type in the subject", "deploywatch.in.rollout.search-api", []byte(good), "subject:", nil},
		{"no service in the subject", "deploywatch.in.deploy", []byte(good), "subject:", nil},
		{"another service's subject", schema.InboxSubject(schema.TypeDeploy, "billing"), []byte(good), "service:", nil},
		{"garbage", schema.InboxSubject(schema.TypeDeploy, "search-api"), []byte("\x8b\x1f\x00not json"), "body:", nil},
		{"garbage metrics", schema.InboxSubject(schema.TypeMetrics, "search-api"), []byte("\x00DWMB\x01\xff\xff\xff"), "body:", nil},
		{"negative count", schema.InboxSubject(schema.TypeMetrics, "search-api"),
			[]byte(strings.Replace(string(inboxMetrics("search-api", now, 3)), `"requests":1274`, `"requests":-5`, 1)), "samples[2].requests:", nil},
		{"unknown encoding", schema.InboxSubject(schema.TypeDeploy, "search-api"), []byte(good), "encoding", []string{schema.EncodingHeader, "protobuf"}},
		{"a sample of another service", schema.InboxSubject(schema.TypeMetrics, "search-api"), otherSample, `samples[3].service: is "billing"`, nil},
		{"a sample of another service, binary", schema.InboxSubject(schema.TypeMetrics, "search-api"), binary.AppendBinary(nil), `samples[3].service: is "billing"`,
			[]string{schema.EncodingHeader, schema.MetricsBinaryEncoding}},
	}
	for i, c := range cases {
		e.publish(t, c.subject, fmt.Sprintf("bad-%d", i), c.data, c.headers...)
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

// squashedDeploy is a deploy of checkout as a CI job publishes it (JSON as
// Python's json.dumps writes it, '<', '>' and '&' unescaped) with as many
// squash-merged commits as fit in size bytes; their messages quote code.
func squashedDeploy(t *testing.T, finished time.Time, size int) []byte {
	t.Helper()
	var msg strings.Builder
	msg.WriteString("checkout: render the new payment form (#5120)\n\n")
	for i := 0; msg.Len() < 3800; i++ {
		fmt.Fprintf(&msg, "* <PaymentForm step=%d> renders only when capture && authorize succeed; amount >= 0\n", i+1)
	}
	msg.WriteString("\nCo-authored-by: Ana Souza <ana.souza@acme.example>\n")
	type commit struct {
		SHA     string `json:"sha"`
		Time    string `json:"time"`
		Author  string `json:"author"`
		Message string `json:"message"`
	}
	deploy := map[string]any{
		"type": "deploy", "id": "checkout-20261122-1140", "service": "checkout", "env": "production",
		"version": "v2.15.0", "previous_version": "v2.14.3", "status": "succeeded", "strategy": "rolling",
		"started_at":  finished.Add(-6 * time.Minute).UTC().Format(time.RFC3339),
		"finished_at": finished.UTC().Format(time.RFC3339),
	}
	var commits []commit
	var body []byte
	for {
		next := append(commits, commit{SHA: fmt.Sprintf("%040x", 0x9f2c1e7b4a+len(commits)), Author: "Jonas Berg",
			Time: finished.Add(-time.Duration(len(commits)+30) * time.Minute).UTC().Format(time.RFC3339), Message: msg.String()})
		deploy["commits"] = next
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(deploy); err != nil {
			t.Fatal(err)
		}
		if buf.Len() > size {
			return body
		}
		commits, body = next, bytes.Clone(buf.Bytes())
	}
}

// An event too large for one event log message is dead-lettered with the
// reason, its size and the limit, and the valid messages fetched with it
// are moved at once: before, it failed the batch's publish with "maximum
// payload exceeded" and the whole batch was delivered again, for ever.
func TestInboxDeadLettersEventsTooLargeForTheEventLog(t *testing.T) {
	// A NATS with its default max_payload, as an external one has, and the
	// limit serve derives from it.
	const maxPayload = 1 << 20
	const limit = maxPayload - 16<<10
	srv, err := eventlog.StartEmbedded(eventlog.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), MaxPayload: maxPayload})
	if err != nil {
		t.Fatalf("cannot start embedded NATS: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	e := newInboxEnvOn(t, srv)
	now := time.Now().Add(-time.Minute)
	// The deploy fits the inbox, but not the event log once encoded as it
	// is stored there ('<' becomes \u003c).
	large := squashedDeploy(t, now, maxPayload-64<<10)
	ev, err := schema.DecodeEvent(large, "")
	if err != nil {
		t.Fatalf("the large deploy is not valid: %v", err)
	}
	if stored, err := json.Marshal(ev); err != nil || len(stored) <= maxPayload {
		t.Fatalf("the large deploy is %d bytes as published and %d as stored (%v), want more than %d stored", len(large), len(stored), err, maxPayload)
	}
	// Published before the processor starts, so that one fetch takes all three.
	e.publish(t, schema.InboxSubject(schema.TypeDeploy, "search-api"), "ci-run-7710", inboxDeploy("search-api-20261122-1138", "search-api", now))
	e.publish(t, schema.InboxSubject(schema.TypeDeploy, "checkout"), "ci-run-7711", large)
	e.publish(t, schema.InboxSubject(schema.TypeMetrics, "checkout"), "scrape-30551", inboxMetrics("checkout", now, 20))
	e.run(t, InboxConfig{MaxMessageBytes: limit})
	e.waitCounts(t, map[string]uint64{schema.ChangesStream: 1, schema.MetricsStream: 1, schema.DeadLetterStream: 1, schema.InboxStream: 0})

	dead := e.stored(t, schema.DeadLetterStream)[0]
	reason := dead.Header.Get(schema.DeadLetterReasonHeader)
	for _, want := range []string{"deploy event checkout-20261122-1140:succeeded", fmt.Sprintf("above the event log's limit of %d bytes", limit), "commits"} {
		if !strings.Contains(reason, want) {
			t.Errorf("dead-lettered because %q, which does not say %q", reason, want)
		}
	}
	if dead.Header.Get(schema.DeadLetterMsgIDHeader) != "ci-run-7711" || !bytes.Equal(dead.Data, large) {
		t.Errorf("dead-lettered message %q of %d bytes, want ci-run-7711 as published", dead.Header.Get(schema.DeadLetterMsgIDHeader), len(dead.Data))
	}
	if m := e.stored(t, schema.ChangesStream)[0]; m.Header.Get(jetstream.MsgIDHeader) != "search-api-20261122-1138:succeeded" {
		t.Errorf("the event log holds %s, want the valid deploy", m.Header.Get(jetstream.MsgIDHeader))
	}
	if r, a, d := e.counter("retried"), e.counter("accepted"), e.counter("dead_lettered"); r != 0 || a != 2 || d != 1 {
		t.Errorf("retried %d, accepted %d, dead-lettered %d messages; want 0, 2 and 1", r, a, d)
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
