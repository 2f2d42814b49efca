package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// roundTrip encodes b in the binary encoding and decodes it as a consumer of
// the event log does.
func binaryRoundTrip(t testing.TB, b *MetricsBatch) (*MetricsBatch, []byte) {
	t.Helper()
	data := b.AppendBinary(nil)
	if enc := EncodingOf(data); enc != MetricsBinaryEncoding {
		t.Fatalf("EncodingOf the binary batch = %q", enc)
	}
	var got MetricsBatch
	if err := DecodeMetricsMessage(MetricsBinaryEncoding, data, &got); err != nil {
		t.Fatalf("cannot decode the binary batch: %v", err)
	}
	return &got, data
}

func TestMetricsBinaryRoundTrip(t *testing.T) {
	f := func(b *MetricsBatch) {
		t.Helper()
		b.Normalize(nil)
		if err := b.Validate(); err != nil {
			t.Fatalf("the test batch is invalid: %v", err)
		}
		got, _ := binaryRoundTrip(t, b)
		// The JSON of the decoded batch is the JSON of the batch: every field
		// and every absent one came through.
		if want, have := b.AppendJSON(nil), got.AppendJSON(nil); !bytes.Equal(want, have) {
			t.Fatalf("the binary round trip changed the batch:\nwant %.400s\ngot  %.400s", want, have)
		}
		for i := range got.Samples {
			if got.Samples[i].Time.Time != b.Samples[i].Time.Time.UTC() {
				t.Fatalf("sample %d: time %#v, want %#v", i, got.Samples[i].Time.Time, b.Samples[i].Time.Time)
			}
		}
	}
	f(realisticBatch(1000))
	f(realisticBatch(1))

	// Samples out of order, overriding service and env, with sub-second
	// times, changing intervals, some quantiles, an empty latency_ms, no
	// latency at all, histograms with other bounds.
	at := time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)
	f(&MetricsBatch{ID: "upload-7", Service: "checkout", Env: "prod", Samples: []Sample{
		{Time: At(at.Add(time.Minute)), IntervalS: NumberOf(60), Requests: CountOf(1 << 40), Errors: CountOf(3),
			LatencyMs: &LatencyQuantiles{P99: NumberOf(310.25)}},
		{Time: At(at.Add(1500 * time.Millisecond)), IntervalS: NumberOf(0.5), Service: "search", Env: "staging",
			Version: "v2", Instance: "pod-ü", Requests: CountOf(0), Errors: CountOf(0), LatencyMs: &LatencyQuantiles{}},
		{Time: At(at), IntervalS: NumberOf(0.5), Requests: CountOf(10), Errors: CountOf(10)},
		{Time: At(at.Add(time.Nanosecond)), IntervalS: NumberOf(10), Requests: CountOf(7), Errors: CountOf(0),
			LatencyHistogram: &LatencyHistogram{BoundsMs: []float64{0, 0.5}, Counts: []Count{CountOf(1), CountOf(2), CountOf(4)}}},
		{Time: At(at.Add(2 * time.Nanosecond)), IntervalS: NumberOf(10), Requests: CountOf(7), Errors: CountOf(0),
			LatencyHistogram: &LatencyHistogram{BoundsMs: []float64{1, 2, 3}, Counts: []Count{CountOf(1), CountOf(2), CountOf(4), CountOf(0)}},
			LatencyMs:        &LatencyQuantiles{P50: NumberOf(1.5), P90: NumberOf(2), P95: NumberOf(2.5), P99: NumberOf(2.9), Max: NumberOf(9)}},
	}})
}

// TestMetricsBinaryIsCompact keeps the point of the encoding in view.
func TestMetricsBinaryIsCompact(t *testing.T) {
	b := realisticBatch(1000)
	b.Normalize(nil)
	_, data := binaryRoundTrip(t, b)
	js := b.AppendJSON(nil)
	if len(data)*3 > len(js) {
		t.Errorf("the binary batch is %d bytes, its JSON %d: want a third or less", len(data), len(js))
	}
}

// TestMetricsBinaryIsValidated: anyone who can publish to NATS can write a
// binary batch, so its values are checked as the API checks JSON.
func TestMetricsBinaryIsValidated(t *testing.T) {
	f := func(change func(b *MetricsBatch), field string) {
		t.Helper()
		b := realisticBatch(3)
		b.Normalize(nil)
		change(b)
		var got MetricsBatch
		err := DecodeMetricsMessage(MetricsBinaryEncoding, b.AppendBinary(nil), &got)
		var verr *ValidationError
		if !errors.As(err, &verr) {
			t.Fatalf("decoding a batch with a bad %s: %v, want a validation error", field, err)
		}
		for _, fe := range verr.Fields {
			if fe.Field == field {
				return
			}
		}
		t.Fatalf("decoding a batch with a bad %s: %v, want it named", field, err)
	}
	f(func(b *MetricsBatch) { b.Service = "no spaces" }, "service")
	f(func(b *MetricsBatch) { b.Env = "" }, "env")
	f(func(b *MetricsBatch) { b.ID = "bad id" }, "id")
	f(func(b *MetricsBatch) { b.Samples = nil }, "samples")
	f(func(b *MetricsBatch) { b.Samples[1].Errors = CountOf(b.Samples[1].Requests.Value + 1) }, "samples[1].errors")
	f(func(b *MetricsBatch) { b.Samples[2].Time = At(time.Now().Add(2 * time.Hour)) }, "samples[2].time")
	f(func(b *MetricsBatch) { b.Samples[2].Time = Time{} }, "samples[2].time")
	f(func(b *MetricsBatch) { b.Samples[0].IntervalS = NumberOf(0) }, "samples[0].interval_s")
	f(func(b *MetricsBatch) { b.Samples[0].Env = "a b" }, "samples[0].env")
	f(func(b *MetricsBatch) { b.Samples[0].Version = strings.Repeat("v", 257) }, "samples[0].version")
	f(func(b *MetricsBatch) {
		b.Samples[0].LatencyMs = &LatencyQuantiles{P50: NumberOf(10), P99: NumberOf(5)}
	}, "samples[0].latency_ms.p99")
	f(func(b *MetricsBatch) {
		b.Samples[1].LatencyHistogram = &LatencyHistogram{BoundsMs: []float64{5, 1}, Counts: []Count{CountOf(1), CountOf(1), CountOf(1)}}
	}, "samples[1].latency_histogram.bounds_ms[1]")
	f(func(b *MetricsBatch) {
		b.Samples[1].LatencyHistogram = &LatencyHistogram{BoundsMs: []float64{5}, Counts: []Count{CountOf(1)}}
	}, "samples[1].latency_histogram.counts")

	// A batch without an id gets one from its bytes, as a JSON one does.
	b := realisticBatch(3)
	got, data := binaryRoundTrip(t, b)
	again, _ := binaryRoundTrip(t, b)
	if got.ID == "" || got.ID != again.ID || got.Type != TypeMetrics {
		t.Fatalf("a binary batch without an id decoded with id %q, then %q, type %q", got.ID, again.ID, got.Type)
	}
	if other, _ := binaryRoundTrip(t, realisticBatch(4)); other.ID == got.ID {
		t.Fatal("two different batches got the same id")
	}
	_ = data
}

// TestMetricsBinaryCorrupt: whatever the bytes, decoding returns an error or
// a valid batch, and never panics or allocates more than the bytes justify.
func TestMetricsBinaryCorrupt(t *testing.T) {
	b := realisticBatch(50)
	b.Normalize(nil)
	data := b.AppendBinary(nil)
	for n := range len(data) {
		var got MetricsBatch
		if err := DecodeMetricsMessage(MetricsBinaryEncoding, data[:n], &got); err == nil {
			t.Fatalf("the first %d of %d bytes decoded without an error", n, len(data))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		bad := bytes.Clone(data)
		for range 1 + rng.IntN(4) {
			bad[rng.IntN(len(bad))] = byte(rng.Uint32())
		}
		var got MetricsBatch
		if err := DecodeMetricsMessage(MetricsBinaryEncoding, bad, &got); err == nil {
			if err := got.Validate(); err != nil {
				t.Fatalf("a corrupt batch decoded without an error but does not validate: %v", err)
			}
		}
	}
	// A huge sample count in a short message is refused before allocating.
	huge := append([]byte(metricsMagic), 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f)
	var got MetricsBatch
	if err := DecodeMetricsMessage(MetricsBinaryEncoding, huge, &got); err == nil {
		t.Fatal("a batch claiming 4 billion samples in a few bytes decoded")
	}
}

func TestDecodeMetricsMessageEncodings(t *testing.T) {
	b := realisticBatch(10)
	b.Normalize(nil)
	js, _ := json.Marshal(b)
	var fromJSON, fromBinary MetricsBatch
	if err := DecodeMetricsMessage("", js, &fromJSON); err != nil {
		t.Fatalf("cannot decode a JSON message: %v", err)
	}
	if EncodingOf(js) != "" {
		t.Fatalf("EncodingOf JSON = %q, want \"\"", EncodingOf(js))
	}
	if err := DecodeMetricsMessage(MetricsBinaryEncoding, b.AppendBinary(nil), &fromBinary); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromJSON.AppendJSON(nil), fromBinary.AppendJSON(nil)) {
		t.Fatal("the JSON and the binary message decode differently")
	}
	// The header decides: JSON said to be binary, binary said to be JSON,
	// and unknown encodings are refused.
	for _, c := range []struct {
		enc  string
		data []byte
	}{{MetricsBinaryEncoding, js}, {"", b.AppendBinary(nil)}, {"metrics-protobuf", js}} {
		var got MetricsBatch
		if err := DecodeMetricsMessage(c.enc, c.data, &got); err == nil {
			t.Errorf("a message of %.10q with the encoding %q decoded", c.data, c.enc)
		}
	}
}

// BenchmarkDecodeMetricsMessage decodes 1000 samples from the event log as
// each of its consumers does, per encoding.
func BenchmarkDecodeMetricsMessage(b *testing.B) {
	const samples = 1000
	batch := realisticBatch(samples)
	batch.Normalize(nil)
	js, _ := json.Marshal(batch)
	for _, bc := range []struct {
		name, enc string
		data      []byte
	}{{"JSON", "", js}, {"binary", MetricsBinaryEncoding, batch.AppendBinary(nil)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			for b.Loop() {
				var m MetricsBatch
				if err := DecodeMetricsMessage(bc.enc, bc.data, &m); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*samples/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// BenchmarkEncodeMetricsBatch encodes 1000 samples as the API publishes them.
func BenchmarkEncodeMetricsBatch(b *testing.B) {
	const samples = 1000
	batch := realisticBatch(samples)
	batch.Normalize(nil)
	for _, bc := range []struct {
		name   string
		encode func([]byte) []byte
	}{{"JSON", batch.AppendJSON}, {"binary", batch.AppendBinary}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf = bc.encode(buf[:0])
			}
			b.ReportMetric(float64(b.N)*samples/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
