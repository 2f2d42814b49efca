package processors

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
)

// TestSinkBinaryMetrics projects batches in the binary encoding, as the API
// publishes them, next to JSON ones from an outside publisher, and
// dead-letters a binary message that is corrupt or invalid, or that lacks
// its encoding header.
func TestSinkBinaryMetrics(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	start := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute)
	batch := schema.MetricsBatch{Service: "binary", Env: "production"}
	var total uint64
	for i := range 3000 {
		s := schema.Sample{
			Time: schema.At(start.Add(time.Duration(i/6) * 10 * time.Second)), IntervalS: schema.NumberOf(10),
			Version: "v" + fmt.Sprint(1+i%2), Instance: fmt.Sprintf("web-%d", i%6),
			Requests: schema.CountOf(uint64(100 + i%13)), Errors: schema.CountOf(uint64(i % 3)),
		}
		switch i % 3 {
		case 0:
			s.LatencyMs = &schema.LatencyQuantiles{P50: schema.NumberOf(21.5), P99: schema.NumberOf(180)}
		case 1:
			s.LatencyHistogram = &schema.LatencyHistogram{BoundsMs: []float64{10, 50, 250},
				Counts: []schema.Count{schema.CountOf(s.Requests.Value - 3), schema.CountOf(1), schema.CountOf(1), schema.CountOf(1)}}
		}
		total += s.Requests.Value
		batch.Samples = append(batch.Samples, s)
	}
	batch.Normalize(nil)
	var msgs []schema.Message
	for _, part := range batch.Split(1000) {
		msgs = append(msgs, schema.Message{Subject: schema.Subject(&part), ID: part.ID, Data: part.AppendBinary(nil)})
	}
	if err := e.pub.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	e.publishBatches(t, "binary-json", 2, 50)

	// Bad binary messages: invalid values, cut short, without the header.
	invalid := batch.Split(1000)[0]
	invalid.Samples = append([]schema.Sample(nil), invalid.Samples...)
	invalid.Samples[7].Errors = schema.CountOf(invalid.Samples[7].Requests.Value + 1)
	good := batch.AppendBinary(nil)
	for _, bad := range []struct {
		subject string
		data    []byte
		header  bool
	}{
		{"deploywatch.metrics.bad-values", invalid.AppendBinary(nil), true},
		{"deploywatch.metrics.cut-short", good[:len(good)/2], true},
		{"deploywatch.metrics.no-header", good, false},
	} {
		m := &nats.Msg{Subject: bad.subject, Data: bad.data, Header: nats.Header{}}
		if bad.header {
			m.Header.Set(schema.EncodingHeader, schema.MetricsBinaryEncoding)
		}
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	stop := runSink(t, e, SinkConfig{FlushRows: 1000, FlushInterval: 100 * time.Millisecond})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := e.count(t, "SELECT count() FROM metric_samples FINAL WHERE service IN ('binary', 'binary-json')")
		return n == 3100, fmt.Sprintf("%d of 3100 samples", n)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := e.count(t, "SELECT sum(requests) FROM metric_samples FINAL WHERE service = 'binary'"); got != total {
		t.Errorf("sum(requests) = %d, want %d", got, total)
	}
	for query, want := range map[string]uint64{
		"SELECT count() FROM metric_samples FINAL WHERE service = 'binary' AND latency_p50 = 21.5 AND latency_p99 = 180 AND latency_p90 IS NULL": 1000,
		"SELECT count() FROM metric_samples FINAL WHERE service = 'binary' AND hist_counts[2] = 1 AND hist_bounds_ms[3] = 250":                   1000,
		"SELECT count() FROM metric_samples FINAL WHERE service = 'binary' AND latency_p50 IS NULL AND length(hist_counts) = 0":                  1000,
		"SELECT uniqExact(instance, version) FROM metric_samples FINAL WHERE service = 'binary'":                                                 6,
	} {
		if got := e.count(t, query); got != want {
			t.Errorf("%s: %d, want %d", query, got, want)
		}
	}

	dl, err := e.js.Stream(ctx, schema.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dl.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		raw, err := dl.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		h := nats.Header(raw.Header)
		reasons[h.Get(schema.DeadLetterSubjectHeader)] = h.Get(schema.DeadLetterReasonHeader) + " | " + h.Get(schema.EncodingHeader)
	}
	for subject, want := range map[string]string{
		"deploywatch.metrics.bad-values": "samples[7].errors",
		"deploywatch.metrics.cut-short":  "binary",
		"deploywatch.metrics.no-header":  "JSON",
	} {
		if got, ok := reasons[subject]; !ok || !strings.Contains(got, want) {
			t.Errorf("dead letter from %s: %q, want a reason mentioning %q", subject, got, want)
		}
	}
	if got := reasons["deploywatch.metrics.cut-short"]; !strings.HasSuffix(got, schema.MetricsBinaryEncoding) {
		t.Errorf("the dead letter of a binary message lost its %s header: %q", schema.EncodingHeader, got)
	}
}
