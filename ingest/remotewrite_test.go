package ingest_test

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
	"google.golang.org/protobuf/encoding/protowire"
)

// scrape is what Prometheus remote-writes after scraping two pods of
// checkout at ts: request counters by status code and a latency histogram.
// n is the scrape's number; counters grow with it.
func scrape(ts time.Time, n int) []ingest.RWSeries {
	ms := ts.UnixMilli()
	var series []ingest.RWSeries
	for p, pod := range []string{"10.4.0.12:8080", "10.4.0.13:8080"} {
		base := []ingest.RWLabel{{Name: "env", Value: "production"}, {Name: "instance", Value: pod}, {Name: "job", Value: "checkout"}, {Name: "version", Value: "v3.2." + strconv.Itoa(p)}}
		counter := func(code string, v float64) ingest.RWSeries {
			ls := append([]ingest.RWLabel{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: code}}, base...)
			return ingest.RWSeries{Labels: ls, Samples: []ingest.RWSample{{Value: v, TimestampMs: ms}}}
		}
		series = append(series, counter("200", float64(5000+n*(300+p*10))), counter("500", float64(20+n*(3+p))))
		for i, le := range []string{"0.05", "0.25", "1", "+Inf"} {
			ls := append([]ingest.RWLabel{{Name: "__name__", Value: "http_request_duration_seconds_bucket"}, {Name: "le", Value: le}}, base...)
			v := float64((i + 1) * 1000 * (n + 1))
			series = append(series, ingest.RWSeries{Labels: ls, Samples: []ingest.RWSample{{Value: v, TimestampMs: ms}}})
		}
	}
	return series
}

func (h *harness) remoteWrite(body []byte) response {
	h.t.Helper()
	return h.do(http.MethodPost, "/api/v1/write", bytes.NewReader(body),
		"Content-Type", "application/x-protobuf", "Content-Encoding", "snappy", "X-Prometheus-Remote-Write-Version", "0.1.0")
}

// storedSamples decodes every sample of the metrics stream, by instance.
func storedSamples(t *testing.T, h *harness) map[string]schema.Sample {
	t.Helper()
	got := map[string]schema.Sample{}
	for _, m := range h.stored(schema.MetricsStream) {
		var b schema.MetricsBatch
		if err := schema.DecodeMetricsMessage(m.Header.Get(schema.EncodingHeader), m.Data, &b); err != nil {
			t.Fatalf("cannot decode a stored batch: %v", err)
		}
		if b.Service != "checkout" || b.Env != "production" {
			t.Errorf("batch of service %q env %q, want checkout production", b.Service, b.Env)
		}
		for _, s := range b.Samples {
			got[s.Instance] = s
		}
	}
	return got
}

func TestRemoteWriteIsStoredAsSamples(t *testing.T) {
	h := start(t, setup{})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t0, 0))), http.StatusNoContent)
	if n := h.count(schema.MetricsStream); n != 0 {
		t.Fatalf("%d messages after the first scrape, want none: it only primes the series", n)
	}
	t1 := t0.Add(15 * time.Second)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t1, 1))), http.StatusNoContent)

	got := storedSamples(t, h)
	if len(got) != 2 {
		t.Fatalf("stored samples of %d instances, want 2: %+v", len(got), got)
	}
	for p, pod := range []string{"10.4.0.12:8080", "10.4.0.13:8080"} {
		s, ok := got[pod]
		if !ok {
			t.Fatalf("no sample of %s", pod)
		}
		wantReq, wantErr := uint64(300+p*10+3+p), uint64(3+p)
		if s.Requests.Value != wantReq || s.Errors.Value != wantErr {
			t.Errorf("%s: requests %d errors %d, want %d and %d", pod, s.Requests.Value, s.Errors.Value, wantReq, wantErr)
		}
		if s.Version != "v3.2."+strconv.Itoa(p) || !s.Time.Time.Equal(t1) || s.IntervalS.Value != 15 {
			t.Errorf("%s: version %q time %v interval %v, want v3.2.%d %v 15", pod, s.Version, s.Time.Time, s.IntervalS.Value, p, t1)
		}
		h := s.LatencyHistogram
		if h == nil || len(h.BoundsMs) != 3 || h.BoundsMs[0] != 50 || h.BoundsMs[2] != 1000 {
			t.Fatalf("%s: histogram %+v, want bounds 50, 250, 1000 ms", pod, h)
		}
		for i, c := range h.Counts {
			if c.Value != 1000 {
				t.Errorf("%s: count %d is %d, want 1000", pod, i, c.Value)
			}
		}
	}
}

func TestRemoteWriteBadInput(t *testing.T) {
	h := start(t, setup{})
	f := func(name string, body []byte, code int, headers ...string) {
		t.Helper()
		if headers == nil {
			headers = []string{"Content-Type", "application/x-protobuf", "Content-Encoding", "snappy"}
		}
		r := h.do(http.MethodPost, "/api/v1/write", bytes.NewReader(body), headers...)
		if r.code != code {
			t.Errorf("%s: status %d, want %d; body: %s", name, r.code, code, r.body)
		}
	}
	valid := ingest.RemoteWriteBody(scrape(time.Now().Add(-time.Minute), 0))
	// A snappy block claiming 3 GiB in a few bytes.
	bomb := append(protowire.AppendVarint(nil, 3<<30), 0x00, 'x')
	f("snappy bomb", bomb, http.StatusRequestEntityTooLarge)
	f("not snappy", []byte("\x0anot snappy"), http.StatusBadRequest)
	f("truncated body", valid[:len(valid)-9], http.StatusBadRequest)
	f("JSON", []byte(`{"samples":[]}`), http.StatusUnsupportedMediaType, "Content-Type", "application/json")
	f("no snappy", valid, http.StatusUnsupportedMediaType, "Content-Type", "application/x-protobuf")
	if n := h.count(schema.MetricsStream); n != 0 {
		t.Fatalf("%d messages stored from bad input, want none", n)
	}
}

func TestRemoteWriteEventLogUnavailable(t *testing.T) {
	h := start(t, setup{cfg: ingest.Config{RetryAfter: time.Second}})
	ctx := testContext(t)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t0, 0))), http.StatusNoContent)
	if err := h.js.DeleteStream(ctx, schema.MetricsStream); err != nil {
		t.Fatal(err)
	}
	second := ingest.RemoteWriteBody(scrape(t0.Add(15*time.Second), 1))
	wantUnavailable(t, h.remoteWrite(second), "1")

	// Prometheus retries the same request once the event log is back: the
	// failed attempt did not move the series on, so it maps the same.
	if err := eventlog.EnsureStreams(ctx, h.js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	wantCode(t, h.remoteWrite(second), http.StatusNoContent)
	if s := storedSamples(t, h)["10.4.0.12:8080"]; s.Requests.Value != 303 {
		t.Errorf("requests %d after the retry, want 303", s.Requests.Value)
	}
}
