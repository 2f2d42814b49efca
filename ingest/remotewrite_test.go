package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/klauspost/compress/snappy"
	"github.com/nats-io/nats.go/jetstream"
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
			// Sorted by name, as Prometheus sends them.
			ls := append([]ingest.RWLabel{{Name: "__name__", Value: "http_request_duration_seconds_bucket"}}, base[:3]...)
			ls = append(ls, ingest.RWLabel{Name: "le", Value: le}, base[3])
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

// waitSamples waits until the finisher published n samples, then returns
// them by instance.
func waitSamples(t *testing.T, h *harness, n int) map[string]schema.Sample {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		got := h.count(schema.MetricsStream)
		return got >= uint64(n), fmt.Sprintf("%d messages on %s, want %d", got, schema.MetricsStream, n)
	})
	return storedSamples(t, h)
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

	checkScrapeSamples(t, waitSamples(t, h, 2), t1)
}

// checkScrapeSamples checks the samples of scrape(t1, 1) after scrape(t0, 0).
func checkScrapeSamples(t *testing.T, got map[string]schema.Sample, t1 time.Time) {
	t.Helper()
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
	// f posts body and wants code; headers are Content-Type and
	// Content-Encoding, or (one value) what the answer must say.
	f := func(name string, body []byte, code int, headers ...string) {
		t.Helper()
		var says string
		if len(headers) == 1 {
			says, headers = headers[0], nil
		}
		if headers == nil {
			headers = []string{"Content-Type", "application/x-protobuf", "Content-Encoding", "snappy"}
		}
		r := h.do(http.MethodPost, "/api/v1/write", bytes.NewReader(body), headers...)
		if r.code != code || !strings.Contains(string(r.body), says) {
			t.Errorf("%s: status %d, want %d saying %q; body: %s", name, r.code, code, says, r.body)
		}
	}
	valid := ingest.RemoteWriteBody(scrape(time.Now().Add(-time.Minute), 0))
	// A snappy block claiming 3 GiB in a few bytes.
	bomb := append(protowire.AppendVarint(nil, 3<<30), 0x00, 'x')
	f("snappy bomb", bomb, http.StatusRequestEntityTooLarge)
	f("not snappy", []byte("\x0anot snappy"), http.StatusBadRequest)
	f("truncated body", valid[:len(valid)-9], http.StatusBadRequest)
	f("JSON", []byte(`{"samples":[]}`), http.StatusUnsupportedMediaType, "Content-Type", "application/json")
	// A few bytes claiming 5 MiB, within the limit: more than snappy can
	// expand them to, so refused as corrupt before anything is allocated.
	f("snappy bomb within the limit", append(protowire.AppendVarint(nil, 5<<20), 0x00, 'x'), http.StatusBadRequest)
	pb, err := snappy.Decode(nil, valid)
	if err != nil {
		t.Fatal(err)
	}
	f("truncated protobuf", snappy.Encode(nil, pb[:len(pb)-3]), http.StatusBadRequest)
	// The spec: a series' labels MUST be sorted by name and unique.
	series := scrape(time.Now().Add(-time.Minute), 0)
	unsorted := slices.Clone(series)
	unsorted[1].Labels = slices.Clone(unsorted[1].Labels)
	unsorted[1].Labels[1], unsorted[1].Labels[2] = unsorted[1].Labels[2], unsorted[1].Labels[1]
	f("unsorted labels", ingest.RemoteWriteBody(unsorted), http.StatusBadRequest, "sorted")
	duplicate := slices.Clone(series)
	duplicate[0].Labels = append(slices.Clone(duplicate[0].Labels), duplicate[0].Labels[len(duplicate[0].Labels)-1])
	f("duplicate labels", ingest.RemoteWriteBody(duplicate), http.StatusBadRequest, "twice")
	f("no snappy", valid, http.StatusUnsupportedMediaType, "Content-Type", "application/x-protobuf")
	// A million series of one empty sample, 4 bytes each, would take 64
	// bytes each decoded.
	f("dense series", snappy.Encode(nil, bytes.Repeat([]byte{0x0a, 0x02, 0x12, 0x00}, 1<<20)), http.StatusBadRequest, "no Prometheus request")
	f("empty series", snappy.Encode(nil, bytes.Repeat([]byte{0x0a, 0x00}, 1<<20)), http.StatusNoContent)
	if n := h.count(schema.MetricsStream); n != 0 {
		t.Fatalf("%d messages stored from bad input, want none", n)
	}
}

func TestRemoteWriteEventLogUnavailable(t *testing.T) {
	h := start(t, setup{cfg: ingest.Config{RetryAfter: time.Second}, noFinisher: true})
	ctx := testContext(t)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t0, 0))), http.StatusNoContent)
	if err := h.js.DeleteKeyValue(ctx, "remote_write_parts"); err != nil {
		t.Fatal(err)
	}
	second := ingest.RemoteWriteBody(scrape(t0.Add(15*time.Second), 1))
	wantUnavailable(t, h.remoteWrite(second), "1")

	// Prometheus retries the same request once the event log is back: the
	// failed attempt did not move the series on, so it maps the same.
	if _, err := eventlog.OpenBucket(ctx, h.js, eventlog.BucketConfig{Name: "remote_write_parts", MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, h.remoteWrite(second), http.StatusNoContent)

	// The finisher, when the metrics stream cannot take its samples, keeps
	// the parts and publishes them once it can.
	if err := h.js.DeleteStream(ctx, schema.MetricsStream); err != nil {
		t.Fatal(err)
	}
	h.startFinisher(100 * time.Millisecond)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		failed := h.metrics.GetOrCreateCounter(`deploywatch_remote_write_finish_errors_total`).Get()
		return failed > 0, "the finisher has not tried to publish yet"
	})
	if err := eventlog.EnsureStreams(ctx, h.js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	if s := waitSamples(t, h, 2)["10.4.0.12:8080"]; s.Requests.Value != 303 {
		t.Errorf("requests %d after the retry, want 303", s.Requests.Value)
	}
}

// partsLeft is how many parts wait in the bucket, leaving out the markers
// of finished samples.
func (h *harness) partsLeft() int {
	h.t.Helper()
	n := 0
	for _, k := range h.bucketKeys() {
		if !strings.HasSuffix(k, ".finished") {
			n++
		}
	}
	return n
}

// bucketKeys is the keys of the parts' bucket.
func (h *harness) bucketKeys() []string {
	h.t.Helper()
	kv, err := h.js.KeyValue(testContext(h.t), "remote_write_parts")
	if err != nil {
		h.t.Fatal(err)
	}
	keys, err := kv.Keys(testContext(h.t))
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return keys
}

func (h *harness) pendingSamples() float64 {
	return h.metrics.GetOrCreateGauge(`deploywatch_remote_write_pending_samples`, nil).Get()
}

// splitScrape is scrape(ts, n) in three requests, as Prometheus sends it
// with a small queue_config.max_samples_per_send: the second pod's +Inf
// bucket and two of its buckets come alone.
func splitScrape(ts time.Time, n int) [][]byte {
	s := scrape(ts, n)
	return [][]byte{ingest.RemoteWriteBody(s[:4]), ingest.RemoteWriteBody(s[4:9]), ingest.RemoteWriteBody(s[9:])}
}

func TestRemoteWriteSplitScrapeIsOneSample(t *testing.T) {
	h := start(t, setup{finishDelay: 500 * time.Millisecond})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, body := range splitScrape(t0, 0) {
		wantCode(t, h.remoteWrite(body), http.StatusNoContent)
	}
	t1 := t0.Add(15 * time.Second)
	parts := splitScrape(t1, 1)
	for _, i := range []int{2, 0, 1} {
		wantCode(t, h.remoteWrite(parts[i]), http.StatusNoContent)
	}
	checkScrapeSamples(t, waitSamples(t, h, 2), t1)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		left, pending := h.partsLeft(), h.pendingSamples()
		return left == 0 && pending == 0, fmt.Sprintf("%d parts in the bucket, %v samples pending", left, pending)
	})
	if n := h.count(schema.MetricsStream); n != 2 {
		t.Fatalf("%d messages once every part was finished, want 2: one complete sample per instance", n)
	}
	// Prometheus sends a request again when it did not see the answer.
	wantCode(t, h.remoteWrite(parts[1]), http.StatusNoContent)
	if left := h.partsLeft(); left != 0 {
		t.Errorf("a request sent again stored %d parts, want none", left)
	}
}

func TestRemoteWriteFinisherRestartFinishesFromTheBucket(t *testing.T) {
	h := start(t, setup{noFinisher: true})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t0, 0))), http.StatusNoContent)
	t1 := t0.Add(15 * time.Second)
	s := scrape(t1, 1)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(s[:9])), http.StatusNoContent)

	// A finisher takes the first part of both pods' samples, then stops
	// before their delay passed.
	stop := h.startFinisher(time.Hour)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return h.pendingSamples() == 2, fmt.Sprintf("%v samples pending, want 2", h.pendingSamples())
	})
	stop()
	// The rest of the scrape arrives while no finisher runs.
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(s[9:])), http.StatusNoContent)
	if n := h.count(schema.MetricsStream); n != 0 {
		t.Fatalf("%d messages before any finisher finished, want none", n)
	}

	// The next finisher reads both parts back from the bucket.
	h.startFinisher(100 * time.Millisecond)
	checkScrapeSamples(t, waitSamples(t, h, 2), t1)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return h.partsLeft() == 0, fmt.Sprintf("%d parts left in the bucket", h.partsLeft())
	})
	if n := h.count(schema.MetricsStream); n != 2 {
		t.Fatalf("%d messages, want 2: one complete sample per instance", n)
	}
}

func TestRemoteWriteLatePartIsDropped(t *testing.T) {
	h := start(t, setup{finishDelay: 200 * time.Millisecond})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t0, 0))), http.StatusNoContent)
	parts := splitScrape(t0.Add(15*time.Second), 1)
	wantCode(t, h.remoteWrite(parts[0]), http.StatusNoContent)
	wantCode(t, h.remoteWrite(parts[1]), http.StatusNoContent)
	before := waitSamples(t, h, 2)["10.4.0.13:8080"]

	// The second pod's last buckets come after its sample was finished:
	// published, they would replace it with a partial one.
	wantCode(t, h.remoteWrite(parts[2]), http.StatusNoContent)
	late := h.metrics.GetOrCreateCounter(`deploywatch_remote_write_late_parts_total`)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return late.Get() == 1 && h.partsLeft() == 0, fmt.Sprintf("%d late parts, %d parts in the bucket; want 1 and 0", late.Get(), h.partsLeft())
	})
	if n := h.count(schema.MetricsStream); n != 2 {
		t.Fatalf("%d messages after a late part, want 2", n)
	}
	if after := storedSamples(t, h)["10.4.0.13:8080"]; after.Requests.Value != before.Requests.Value {
		t.Errorf("requests %d after a late part, %d before", after.Requests.Value, before.Requests.Value)
	}
}

func TestRemoteWrite2IsRefused(t *testing.T) {
	h := start(t, setup{})
	body := ingest.RemoteWriteBody(scrape(time.Now().Add(-time.Minute), 0))
	post := func(contentType string) response {
		return h.do(http.MethodPost, "/api/v1/write", bytes.NewReader(body), "Content-Type", contentType, "Content-Encoding", "snappy")
	}
	// Prometheus 3 with protobuf_message: io.prometheus.write.v2.Request.
	r := post("application/x-protobuf;proto=io.prometheus.write.v2.Request")
	if r.code != http.StatusUnsupportedMediaType || !strings.Contains(string(r.body), "protobuf_message: prometheus.WriteRequest") {
		t.Errorf("remote_write 2.0: status %d, want 415 naming protobuf_message: prometheus.WriteRequest; body: %s", r.code, r.body)
	}
	wantCode(t, post("application/x-protobuf;proto=prometheus.WriteRequest"), http.StatusNoContent)
}

func TestRemoteWritePodMonitorJobIsStored(t *testing.T) {
	h := start(t, setup{})
	// A PodMonitor's job is <namespace>/<name>: not a deploywatch name as it is.
	podMonitor := func(ts time.Time, n int) []byte {
		s := scrape(ts, n)
		for i := range s {
			s[i].Labels = slices.Clone(s[i].Labels)
			for j := range s[i].Labels {
				if s[i].Labels[j].Name == "job" {
					s[i].Labels[j].Value = "shop/checkout"
				}
			}
		}
		return ingest.RemoteWriteBody(s)
	}
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	wantCode(t, h.remoteWrite(podMonitor(t0, 0)), http.StatusNoContent)
	wantCode(t, h.remoteWrite(podMonitor(t0.Add(15*time.Second), 1)), http.StatusNoContent)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := h.count(schema.MetricsStream)
		return n == 2, fmt.Sprintf("%d samples stored, want 2", n)
	})
	for _, m := range h.stored(schema.MetricsStream) {
		var b schema.MetricsBatch
		if err := schema.DecodeMetricsMessage(m.Header.Get(schema.EncodingHeader), m.Data, &b); err != nil {
			t.Fatal(err)
		}
		if b.Service != "shop-checkout" {
			t.Errorf("service %q, want shop-checkout", b.Service)
		}
	}
}

func TestRemoteWriteLargePartIsStored(t *testing.T) {
	// A NATS server with a small max_payload, and the API's message limit
	// under it as serve sets it.
	h := start(t, setup{maxPayload: 64 << 10, cfg: ingest.Config{MaxMessageBytes: 48 << 10}})
	// One pod whose request counter has 3,000 series (routes by code): one
	// sample, whose part in a request is some 80 KB.
	const routes = 3000
	series := func(ts time.Time, n int) []byte {
		var s []ingest.RWSeries
		for i := range routes {
			s = append(s, ingest.RWSeries{
				Labels: []ingest.RWLabel{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: strconv.Itoa(200 + i%3)},
					{Name: "env", Value: "production"}, {Name: "instance", Value: "10.4.0.12:8080"}, {Name: "job", Value: "checkout"},
					{Name: "route", Value: "/api/v1/items/" + strconv.Itoa(i)}},
				Samples: []ingest.RWSample{{Value: float64(1000 + n*(i%5+1)), TimestampMs: ts.UnixMilli()}},
			})
		}
		return ingest.RemoteWriteBody(s)
	}
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	wantCode(t, h.remoteWrite(series(t0, 0)), http.StatusNoContent)
	wantCode(t, h.remoteWrite(series(t0.Add(15*time.Second), 1)), http.StatusNoContent)
	s, ok := waitSamples(t, h, 1)["10.4.0.12:8080"]
	if want := uint64(routes / 5 * (1 + 2 + 3 + 4 + 5)); !ok || s.Requests.Value != want {
		t.Errorf("requests %d, want %d: every series of the split part", s.Requests.Value, want)
	}
}

// bucketEntries is the parts stored in the bucket, by key.
func (h *harness) bucketEntries() map[string][]byte {
	h.t.Helper()
	kv, err := h.js.KeyValue(testContext(h.t), "remote_write_parts")
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, k := range h.bucketKeys() {
		e, err := kv.Get(testContext(h.t), k)
		if err != nil {
			h.t.Fatal(err)
		}
		out[k] = e.Value()
	}
	return out
}

func TestRemoteWriteRetriedPartIsNotLate(t *testing.T) {
	h := start(t, setup{noFinisher: true})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t0, 0))), http.StatusNoContent)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t0.Add(15*time.Second), 1))), http.StatusNoContent)
	parts := h.bucketEntries()
	if len(parts) != 2 {
		t.Fatalf("%d parts stored, want 2", len(parts))
	}
	h.startFinisher(100 * time.Millisecond)
	waitSamples(t, h, 2)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return h.partsLeft() == 0, fmt.Sprintf("%d parts left in the bucket", h.partsLeft())
	})
	// A request whose store failed half way is sent again, storing the
	// parts that were stored already once more, unchanged.
	for k, v := range parts {
		if err := h.parts.Put(testContext(t), k, v); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return h.partsLeft() == 0, fmt.Sprintf("%d parts left in the bucket", h.partsLeft())
	})
	if late := h.metrics.GetOrCreateCounter(`deploywatch_remote_write_late_parts_total`).Get(); late != 0 {
		t.Errorf("%d late parts counted for parts stored again unchanged, want 0", late)
	}
	if n := h.count(schema.MetricsStream); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// flakyDeletes fails the first delete of each sample's parts.
type flakyDeletes struct {
	*eventlog.Bucket
	mu   sync.Mutex
	seen map[string]bool
}

func (b *flakyDeletes) Delete(ctx context.Context, key string) error {
	hash, _, _ := strings.Cut(key, ".")
	b.mu.Lock()
	first := !b.seen[hash]
	b.seen[hash] = true
	b.mu.Unlock()
	if first {
		return errors.New("injected: the delete timed out")
	}
	return b.Bucket.Delete(ctx, key)
}

// capturingPublisher keeps what it publishes.
type capturingPublisher struct {
	ingest.Publisher
	mu   sync.Mutex
	msgs []schema.Message
}

func (p *capturingPublisher) Publish(ctx context.Context, msgs []schema.Message) error {
	p.mu.Lock()
	p.msgs = append(p.msgs, msgs...)
	p.mu.Unlock()
	return p.Publisher.Publish(ctx, msgs)
}

// runFinisher runs a finisher of parts, publishing with pub, until stop is called.
func (h *harness) runFinisher(t *testing.T, parts ingest.RemoteWritePartLog, pub ingest.Publisher) (stop func()) {
	t.Helper()
	f := ingest.NewRemoteWriteFinisher(parts, pub, ingest.RemoteWriteFinisherConfig{FinishDelay: 100 * time.Millisecond, Metrics: h.metrics})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f.Run(ctx); err != nil {
			t.Errorf("the remote_write finisher failed: %v", err)
		}
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

func TestRemoteWriteLeftoverPartsAreNotPublishedAgain(t *testing.T) {
	h := start(t, setup{noFinisher: true})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, body := range splitScrape(t0, 0) {
		wantCode(t, h.remoteWrite(body), http.StatusNoContent)
	}
	// Each pod's sample has two parts; a delete of each fails.
	for _, body := range splitScrape(t0.Add(15*time.Second), 1) {
		wantCode(t, h.remoteWrite(body), http.StatusNoContent)
	}
	stop := h.runFinisher(t, &flakyDeletes{Bucket: h.parts, seen: map[string]bool{}}, h.pub)
	checkScrapeSamples(t, waitSamples(t, h, 2), t0.Add(15*time.Second))
	failed := h.metrics.GetOrCreateCounter(`deploywatch_remote_write_finish_errors_total`)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return failed.Get() > 0, "no delete failed yet"
	})
	stop()
	if h.partsLeft() == 0 {
		t.Fatal("no parts left in the bucket after deletes failed")
	}

	// The next start reads the leftover parts back: folded, each would be
	// a partial sample under the complete one's id, which replaces it once
	// the event log's duplicate window has passed.
	pub := &capturingPublisher{Publisher: h.pub}
	h.runFinisher(t, h.parts, pub)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return h.partsLeft() == 0, fmt.Sprintf("%d parts left in the bucket", h.partsLeft())
	})
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.msgs) != 0 {
		t.Errorf("the leftover parts were published again, as %d messages", len(pub.msgs))
	}
}

// cancelAfterPublish cancels the finisher's context once a publish was
// acknowledged: serve shutting down while the finisher publishes.
type cancelAfterPublish struct {
	ingest.Publisher
	cancel context.CancelFunc
}

func (p cancelAfterPublish) Publish(ctx context.Context, msgs []schema.Message) error {
	err := p.Publisher.Publish(ctx, msgs)
	if err == nil && len(msgs) > 0 {
		p.cancel()
	}
	return err
}

func TestRemoteWriteFinisherStoppedAfterPublishDeletesTheParts(t *testing.T) {
	h := start(t, setup{noFinisher: true})
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t0, 0))), http.StatusNoContent)
	wantCode(t, h.remoteWrite(ingest.RemoteWriteBody(scrape(t0.Add(15*time.Second), 1))), http.StatusNoContent)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := ingest.NewRemoteWriteFinisher(h.parts, cancelAfterPublish{h.pub, cancel}, ingest.RemoteWriteFinisherConfig{FinishDelay: 100 * time.Millisecond})
	if err := f.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := h.count(schema.MetricsStream); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
	if left := h.partsLeft(); left != 0 {
		t.Errorf("%d parts left in the bucket after a shutdown during the publish, want 0", left)
	}
}
