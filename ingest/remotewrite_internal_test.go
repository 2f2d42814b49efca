package ingest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/deploywatch/deploywatch/schema"
)

// Exported for the package's external tests.
type (
	RWSeries = rwSeries
	RWLabel  = rwLabel
	RWSample = rwSample
)

// RemoteWriteBody is series as Prometheus sends them: a snappy-compressed
// protobuf WriteRequest.
func RemoteWriteBody(series []RWSeries) []byte {
	return snappy.Encode(nil, appendWriteRequest(nil, series))
}

// appendWriteRequest encodes a prometheus.WriteRequest by hand.
func appendWriteRequest(b []byte, series []rwSeries) []byte {
	var ts, msg []byte
	for _, s := range series {
		ts = ts[:0]
		for _, l := range s.Labels {
			msg = msg[:0]
			msg = protowire.AppendTag(msg, 1, protowire.BytesType)
			msg = protowire.AppendString(msg, l.Name)
			msg = protowire.AppendTag(msg, 2, protowire.BytesType)
			msg = protowire.AppendString(msg, l.Value)
			ts = protowire.AppendTag(ts, 1, protowire.BytesType)
			ts = protowire.AppendBytes(ts, msg)
		}
		for _, smp := range s.Samples {
			msg = msg[:0]
			msg = protowire.AppendTag(msg, 1, protowire.Fixed64Type)
			msg = protowire.AppendFixed64(msg, math.Float64bits(smp.Value))
			msg = protowire.AppendTag(msg, 2, protowire.VarintType)
			msg = protowire.AppendVarint(msg, uint64(smp.TimestampMs))
			ts = protowire.AppendTag(ts, 2, protowire.BytesType)
			ts = protowire.AppendBytes(ts, msg)
		}
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, ts)
	}
	// Metadata (field 3), which the decoder skips.
	msg = msg[:0]
	msg = protowire.AppendTag(msg, 2, protowire.BytesType)
	msg = protowire.AppendString(msg, "http_requests_total")
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

func labels(pairs ...string) []rwLabel {
	ls := make([]rwLabel, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		ls = append(ls, rwLabel{Name: pairs[i], Value: pairs[i+1]})
	}
	return ls
}

func TestDecodeRemoteWrite(t *testing.T) {
	want := []rwSeries{
		{
			Labels:  labels("__name__", "http_requests_total", "code", "200", "instance", "10.0.0.7:8080", "job", "checkout", "version", "v1.4.2"),
			Samples: []rwSample{{Value: 1027, TimestampMs: 1_763_790_000_000}, {Value: 1090, TimestampMs: 1_763_790_015_000}},
		},
		{
			Labels:  labels("__name__", "http_request_duration_seconds_bucket", "job", "checkout", "le", "0.25"),
			Samples: []rwSample{{Value: 0.5, TimestampMs: 1_763_790_000_000}},
		},
	}
	got, err := decodeRemoteWrite(nil, RemoteWriteBody(want), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}

	f := func(name string, pb []byte) {
		t.Helper()
		if _, err := decodeRemoteWrite(nil, snappy.Encode(nil, pb), 1<<20); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
	full := appendWriteRequest(nil, want)
	f("truncated", full[:len(full)/2])
	f("bad tag", []byte{0x0a, 0xff})
	f("label without a name", appendWriteRequest(nil, []rwSeries{{Labels: labels("", "x")}}))
	if _, err := decodeRemoteWrite(nil, full, 1<<20); err == nil {
		t.Error("decoded a body that is not snappy-compressed")
	}
}

func TestDecodeRemoteWriteRefusesSnappyBomb(t *testing.T) {
	// A snappy block starts with its decoded length as a varint: this
	// 12-byte body claims 2 GiB.
	bomb := protowire.AppendVarint(nil, 2<<30)
	bomb = append(bomb, 0x00, 'x', 0xfe, 0xff, 0x00) // a literal and a copy
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := decodeRemoteWrite(nil, bomb, 10<<20)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errRemoteWriteTooLarge) {
		t.Fatalf("got %v, want errRemoteWriteTooLarge", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing the bomb allocated %d bytes", grew)
	}
}

// decodeAllocs decodes body and returns the bytes it allocated.
func decodeAllocs(t *testing.T, body []byte) ([]rwSeries, error, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	series, err := decodeRemoteWrite(nil, body, 10<<20)
	runtime.ReadMemStats(&after)
	return series, err, after.TotalAlloc - before.TotalAlloc
}

func TestDecodeRemoteWriteEmptySeriesAllocateNothing(t *testing.T) {
	// 2.5 million empty series (0a 00), 5 MB decoded from a 240 KB body:
	// decoded one by one, they took 48 bytes each, 120 MB.
	pb := bytes.Repeat([]byte{0x0a, 0x00}, 2_500_000)
	// And series that have labels but no sample.
	for range 1000 {
		pb = appendWriteRequest(pb, []rwSeries{{Labels: labels("__name__", "http_requests_total", "job", "checkout")}})
	}
	body := snappy.Encode(nil, pb)
	series, err, grew := decodeAllocs(t, body)
	if err != nil || len(series) != 0 {
		t.Errorf("decoded %d series, %v; want none and no error", len(series), err)
	}
	// The decoded buffer, and little more.
	if limit := uint64(len(pb)) + 64<<10; grew > limit {
		t.Errorf("decoding %d empty series (%d bytes) allocated %d bytes, want at most %d", 2_500_000, len(pb), grew, limit)
	}

	// Among real series, they cost nothing either.
	real := []rwSeries{counterSeries("200", 1_763_790_000_000, 10), counterSeries("500", 1_763_790_000_000, 1)}
	mixed := append(appendWriteRequest(nil, real[:1]), bytes.Repeat([]byte{0x0a, 0x00}, 1000)...)
	mixed = appendWriteRequest(mixed, real[1:])
	got, err := decodeRemoteWrite(nil, snappy.Encode(nil, mixed), 10<<20)
	if err != nil || !reflect.DeepEqual(got, real) {
		t.Fatalf("decoded %+v, %v; want the two real series", got, err)
	}
}

func TestDecodeRemoteWriteRefusesDenseSeries(t *testing.T) {
	f := func(name string, pb []byte) {
		t.Helper()
		series, err, grew := decodeAllocs(t, snappy.Encode(nil, pb))
		if !errors.Is(err, errRemoteWriteTooDense) {
			t.Fatalf("%s: decoded %d series, %v; want errRemoteWriteTooDense", name, len(series), err)
		}
		if limit := uint64(len(pb)) + 64<<10; grew > limit {
			t.Errorf("%s: refusing %d bytes allocated %d, want at most %d", name, len(pb), grew, limit)
		}
	}
	// Series of one empty sample and no label (0a 02 12 00): 64 bytes each
	// decoded out of 4.
	f("series of one empty sample", bytes.Repeat([]byte{0x0a, 0x02, 0x12, 0x00}, 1_000_000))
	// One series of a million empty samples: 16 bytes each out of 2.
	one := append([]byte{0x0a}, protowire.AppendVarint(nil, 2_000_000)...)
	f("a series of empty samples", append(one, bytes.Repeat([]byte{0x12, 0x00}, 1_000_000)...))
	// A series without samples whose labels (a="", 32 bytes out of 5)
	// would be decoded before it is left out.
	lbl := []byte{0x0a, 0x03, 0x0a, 0x01, 'a'}
	one = append([]byte{0x0a}, protowire.AppendVarint(nil, uint64(len(lbl)*500_000))...)
	f("a series of empty labels", append(one, bytes.Repeat(lbl, 500_000)...))

	// What Prometheus sends is far below the limit: its tightest series,
	// one-letter labels and a sample of value 0.
	var tight []rwSeries
	for i := range 1000 {
		tight = append(tight, rwSeries{Labels: labels("__name__", "x", "a", "b", "c", "d", "e", strconv.Itoa(i%10)), Samples: []rwSample{{TimestampMs: 1_763_790_000_000}}})
	}
	if got, err := decodeRemoteWrite(nil, RemoteWriteBody(tight), 10<<20); err != nil || len(got) != len(tight) {
		t.Fatalf("Prometheus' tightest series: decoded %d, %v; want %d", len(got), err, len(tight))
	}
}

// mapSeries maps series as if each request held whole scrapes: every part
// folded alone into its sample, in batches by service and env.
func (m *rwMapper) mapSeries(series []rwSeries) ([]schema.MetricsBatch, rwUpdates) {
	parts, updates := m.mapParts(series)
	keys := make([]rwSampleKey, 0, len(parts))
	for k := range parts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b rwSampleKey) int {
		return cmp.Or(strings.Compare(a.service, b.service), strings.Compare(a.env, b.env), cmp.Compare(a.tsMs, b.tsMs),
			strings.Compare(a.version, b.version), strings.Compare(a.instance, b.instance))
	})
	var out []schema.MetricsBatch
	for _, k := range keys {
		if len(out) == 0 || out[len(out)-1].Service != k.service || out[len(out)-1].Env != k.env {
			out = append(out, schema.MetricsBatch{Type: schema.TypeMetrics, Service: k.service, Env: k.env})
		}
		b := &out[len(out)-1]
		b.Samples = append(b.Samples, foldSample(k, []*rwPart{parts[k]}))
	}
	return out, updates
}

func mapOnce(t *testing.T, m *rwMapper, series []rwSeries) []schema.MetricsBatch {
	t.Helper()
	batches, updates := m.mapSeries(series)
	m.commit(updates)
	return batches
}

func counterSeries(code string, tsMs int64, v float64) rwSeries {
	return rwSeries{
		Labels:  labels("__name__", "http_requests_total", "code", code, "env", "staging", "instance", "pod-1", "job", "checkout", "version", "v7"),
		Samples: []rwSample{{Value: v, TimestampMs: tsMs}},
	}
}

func TestRemoteWriteCounterDeltasAndReset(t *testing.T) {
	m, err := newRWMapper(RemoteWriteConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	scrape := func(i int64, ok, failed float64) []schema.MetricsBatch {
		ts := t0 + i*15_000
		return mapOnce(t, m, []rwSeries{counterSeries("200", ts, ok), counterSeries("503", ts, failed)})
	}
	if got := scrape(0, 1000, 10); len(got) != 0 {
		t.Fatalf("the first scrape gave %+v, want nothing: it only primes the series", got)
	}
	check := func(got []schema.MetricsBatch, i int64, requests, errs uint64) {
		t.Helper()
		if len(got) != 1 || len(got[0].Samples) != 1 {
			t.Fatalf("got %+v, want one batch of one sample", got)
		}
		b := got[0]
		s := b.Samples[0]
		if b.Service != "checkout" || b.Env != "staging" || s.Version != "v7" || s.Instance != "pod-1" {
			t.Errorf("service %q env %q version %q instance %q, want checkout staging v7 pod-1", b.Service, b.Env, s.Version, s.Instance)
		}
		if !s.Time.Time.Equal(time.UnixMilli(t0+i*15_000)) || s.IntervalS.Value != 15 {
			t.Errorf("time %v interval %v, want %v and 15 s", s.Time.Time, s.IntervalS.Value, time.UnixMilli(t0+i*15_000))
		}
		if s.Requests.Value != requests || s.Errors.Value != errs {
			t.Errorf("requests %d errors %d, want %d and %d", s.Requests.Value, s.Errors.Value, requests, errs)
		}
		b.Normalize(nil)
		if err := b.Validate(); err != nil {
			t.Errorf("the batch is invalid: %v", err)
		}
	}
	check(scrape(1, 1150, 12), 1, 152, 2)
	// The process restarted: both counters start again from zero.
	check(scrape(2, 40, 1), 2, 41, 1)
	check(scrape(3, 100, 1), 3, 60, 0)

	// A request that is not committed (its publish failed) maps the same
	// when it is retried.
	again := []rwSeries{counterSeries("200", t0+4*15_000, 130), counterSeries("503", t0+4*15_000, 3)}
	first, _ := m.mapSeries(again)
	second, _ := m.mapSeries(again)
	if !reflect.DeepEqual(first, second) {
		t.Errorf("a retried request mapped to %+v, then %+v", first, second)
	}
	check(first, 4, 32, 2)
}

func TestRemoteWriteHistogram(t *testing.T) {
	m, err := newRWMapper(RemoteWriteConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	bounds := []string{"0.05", "0.1", "0.25", "1", "+Inf"}
	scrape := func(i int64, cumulative []float64) []schema.MetricsBatch {
		var series []rwSeries
		for j, le := range bounds {
			series = append(series, rwSeries{
				Labels:  labels("__name__", "http_request_duration_seconds_bucket", "job", "api", "le", le),
				Samples: []rwSample{{Value: cumulative[j], TimestampMs: t0 + i*30_000}},
			})
		}
		return mapOnce(t, m, series)
	}
	if got := scrape(0, []float64{10, 20, 30, 40, 41}); len(got) != 0 {
		t.Fatalf("the first scrape gave %+v, want nothing", got)
	}
	got := scrape(1, []float64{60, 90, 110, 125, 127})
	if len(got) != 1 || len(got[0].Samples) != 1 || got[0].Samples[0].LatencyHistogram == nil {
		t.Fatalf("got %+v, want one sample with a histogram", got)
	}
	s := got[0].Samples[0]
	h := s.LatencyHistogram
	if want := []float64{50, 100, 250, 1000}; !reflect.DeepEqual(h.BoundsMs, want) {
		t.Errorf("bounds %v, want %v (ms)", h.BoundsMs, want)
	}
	var counts []uint64
	for _, c := range h.Counts {
		counts = append(counts, c.Value)
	}
	// Deltas 50 70 80 85 86, cumulative: per bucket 50 20 10 5 and 1 above.
	if want := []uint64{50, 20, 10, 5, 1}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
	if got[0].Service != "api" || got[0].Env != "production" || s.Requests.Value != 86 || s.IntervalS.Value != 30 {
		t.Errorf("service %q env %q requests %d interval %v, want api production 86 30", got[0].Service, got[0].Env, s.Requests.Value, s.IntervalS.Value)
	}
}

// BenchmarkRemoteWriteDecode decodes requests as Prometheus sends them by
// default (2,000 series of one sample each, 8 labels) on one core.
func BenchmarkRemoteWriteDecode(b *testing.B) {
	const perRequest = 2000
	series := make([]rwSeries, perRequest)
	ts := time.Now().UnixMilli()
	for i := range series {
		series[i] = rwSeries{
			Labels: labels("__name__", "http_requests_total", "code", strconv.Itoa(200+i%5*100), "env", "production",
				"instance", "10.1."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250)+":8080", "job", "checkout",
				"method", "GET", "route", "/api/v1/cart/"+strconv.Itoa(i%40), "version", "v2.14."+strconv.Itoa(i%3)),
			Samples: []rwSample{{Value: float64(1000 + i*7), TimestampMs: ts}},
		}
	}
	body := RemoteWriteBody(series)
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var out []rwSeries
		for b.Loop() {
			var err error
			out, err = decodeRemoteWrite(nil, body, 10<<20)
			if err != nil {
				b.Fatal(err)
			}
		}
		if len(out) != perRequest {
			b.Fatalf("decoded %d series, want %d", len(out), perRequest)
		}
		b.ReportMetric(float64(b.N)*perRequest/b.Elapsed().Seconds(), "samples/s")
	})
	// The ceiling in the same run: the snappy block alone, into a buffer
	// kept between requests, which no decoder of this format can skip.
	b.Run("snappy-ceiling", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = decodeSnappy(buf, body, 10<<20); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)*perRequest/b.Elapsed().Seconds(), "samples/s")
	})
}

func FuzzRemoteWriteDecode(f *testing.F) {
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	f.Add(RemoteWriteBody([]rwSeries{counterSeries("200", t0, 1), counterSeries("500", t0, 2)}))
	f.Add(snappy.Encode(nil, []byte{0x0a, 0x02, 0x0a, 0x00}))
	f.Add(append(protowire.AppendVarint(nil, 2<<30), 0x00, 'x'))
	f.Add(append(protowire.AppendVarint(nil, 900<<10), 0x00, 'x'))
	f.Add(RemoteWriteBody([]rwSeries{{Labels: labels("__name__", "http_requests_total", "job", "a", "code", "200")}}))
	m, err := newRWMapper(RemoteWriteConfig{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		series, err := decodeRemoteWrite(nil, body, 1<<20)
		runtime.ReadMemStats(&after)
		// A decoded request holds at most some 22 bytes per byte sent
		// (snappy's largest expansion), and its series at most
		// maxDecodedBytesPerByte per byte of that.
		decoded, _ := snappy.DecodedLen(body)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(max(decoded, 0))*(1+maxDecodedBytesPerByte)+64<<10 {
			t.Fatalf("decoding %d bytes (%d decoded) allocated %d", len(body), decoded, grew)
		}
		if err != nil {
			return
		}
		// Decoding is exact: the series encode back to a request that
		// decodes to the same series (unless it is denser than the
		// original, which skipped fields made sparser).
		again, err := decodeWriteRequest(nil, appendWriteRequest(nil, series))
		if errors.Is(err, errRemoteWriteTooDense) {
			return
		}
		if err != nil {
			t.Fatalf("decoded series do not decode again: %v", err)
		}
		if len(again) != len(series) || (len(series) > 0 && !reflect.DeepEqual(again, series)) {
			t.Fatalf("decoded %+v, then %+v", series, again)
		}
		batches, updates := m.mapSeries(series)
		m.commit(updates)
		for i := range batches {
			b := &batches[i]
			for _, s := range b.Samples {
				if s.Errors.Value > s.Requests.Value {
					t.Fatalf("errors %d above requests %d", s.Errors.Value, s.Requests.Value)
				}
			}
			// What the route would publish decodes as the sink decodes it.
			b.Normalize(body)
			if b.Validate() != nil {
				continue
			}
			var got schema.MetricsBatch
			if err := schema.DecodeMetricsMessage(schema.MetricsBinaryEncoding, b.AppendBinary(nil), &got); err != nil {
				t.Fatalf("a mapped batch the sink refuses: %v", err)
			}
		}
	})
}

// blockingParts holds every Put until release is closed.
type blockingParts struct {
	entered chan struct{}
	release chan struct{}
}

func (p *blockingParts) Put(ctx context.Context, key string, value []byte) error {
	p.entered <- struct{}{}
	select {
	case <-p.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestRemoteWriteOverloaded(t *testing.T) {
	parts := &blockingParts{entered: make(chan struct{}, 1), release: make(chan struct{})}
	api := New(Config{RemoteWrite: RemoteWriteConfig{MaxInflight: 1, Parts: parts}}, nil, nil)
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	post := func(body []byte) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	if resp, err := post(RemoteWriteBody([]rwSeries{counterSeries("200", t0, 10)})); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("priming: %v %v", resp, err)
	}
	done := make(chan int)
	go func() {
		resp, err := post(RemoteWriteBody([]rwSeries{counterSeries("200", t0+15_000, 20)}))
		if err != nil {
			done <- 0
			return
		}
		done <- resp.StatusCode
	}()
	<-parts.entered // the second request holds the only slot
	resp, err := post(RemoteWriteBody([]rwSeries{counterSeries("200", t0+30_000, 30)}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("status %d, Retry-After %q while overloaded, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(parts.release)
	if code := <-done; code != http.StatusNoContent {
		t.Errorf("the held request got %d, want 204", code)
	}
	srv.Client().CloseIdleConnections()
}

// The decoded bytes in flight are bounded too: many small requests fit,
// one that would take the budget above its bound while another holds some
// of it is answered 429, and one larger than the whole budget is taken
// when it is alone.
func TestRemoteWriteOverloadedByBytes(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	small := RemoteWriteBody([]rwSeries{counterSeries("200", t0+15_000, 20)})
	n, err := snappy.DecodedLen(small)
	if err != nil {
		t.Fatal(err)
	}
	parts := &blockingParts{entered: make(chan struct{}, 1), release: make(chan struct{})}
	api := New(Config{RemoteWrite: RemoteWriteConfig{MaxInflight: 8, MaxInflightBytes: int64(n) + int64(n)/2, Parts: parts}}, nil, nil)
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	post := func(body []byte) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return 0
		}
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(RemoteWriteBody([]rwSeries{counterSeries("200", t0, 10)})); code != http.StatusNoContent {
		t.Fatalf("priming: %d", code)
	}
	done := make(chan int)
	go func() { done <- post(small) }()
	<-parts.entered // it holds n of the 1.5n bytes
	if code := post(RemoteWriteBody([]rwSeries{counterSeries("200", t0+30_000, 30)})); code != http.StatusTooManyRequests {
		t.Errorf("a request above the byte budget answered %d, want 429", code)
	}
	close(parts.release)
	if code := <-done; code != http.StatusNoContent {
		t.Errorf("the held request got %d, want 204", code)
	}
	var big []rwSeries
	for i := range 20 {
		big = append(big, counterSeries(strconv.Itoa(200+i), t0+45_000, float64(40+i)))
	}
	if code := post(RemoteWriteBody(big)); code != http.StatusNoContent {
		t.Errorf("a request larger than the whole budget, alone, answered %d, want 204", code)
	}
	srv.Client().CloseIdleConnections()
}

func TestRemoteWriteConfigValidate(t *testing.T) {
	if err := (RemoteWriteConfig{}).Validate(); err != nil {
		t.Fatalf("the defaults are invalid: %v", err)
	}
	err := RemoteWriteConfig{ErrorStatus: "5(", LatencyHistograms: []string{"http_request_duration_seconds"}}.Validate()
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("ErrorStatus")) || !bytes.Contains([]byte(err.Error()), []byte("_bucket")) {
		t.Fatalf("got %v, want both problems named", err)
	}
}

func TestSanitizeName(t *testing.T) {
	f := func(v, want string) {
		t.Helper()
		if got := sanitizeName(v); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", v, got, want)
		}
	}
	f("checkout", "checkout")
	f("payments-api_v2.eu", "payments-api_v2.eu")
	f("shop/checkout", "shop-checkout") // PodMonitor's job: namespace/name
	f("serviceMonitor/shop/checkout/0", "serviceMonitor-shop-checkout-0")
	f("kubernetes-pods:8080", "kubernetes-pods-8080")
	f("café", "caf-")
	f("/checkout", "checkout")
	f("__internal", "internal")
	f("///", "")
	f("", "")
	f(strings.Repeat("a", 200), strings.Repeat("a", 128))
	f("x/"+strings.Repeat("é", 200), "x-"+strings.Repeat("-", 126))
	if err := (RemoteWriteConfig{DefaultEnv: "prod/eu"}).Validate(); err == nil || !strings.Contains(err.Error(), "prod-eu") {
		t.Errorf("DefaultEnv prod/eu: %v, want it refused, suggesting prod-eu", err)
	}
}

// droppedSamples is the count of deploywatch_remote_write_dropped_samples_total by reason.
func droppedSamples(set *metrics.Set, reason string) uint64 {
	return droppedSamplesCounter(set, reason).Get()
}

func TestRemoteWriteLabelValuesAreSanitised(t *testing.T) {
	set := metrics.NewSet()
	m, err := newRWMapper(RemoteWriteConfig{}, set)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	series := func(ts int64, v float64, pairs ...string) rwSeries {
		return rwSeries{Labels: labels(append([]string{"__name__", "http_requests_total", "code", "200"}, pairs...)...), Samples: []rwSample{{Value: v, TimestampMs: ts}}}
	}
	scrape := func(ts int64, v float64) []rwSeries {
		return []rwSeries{
			series(ts, v, "env", "eu/prod", "job", "shop/checkout"),
			series(ts, v, "job", "///"),
			series(ts, v, "instance", "pod-1"),
			series(ts, v, "env", "???", "job", "cart"),
			series(ts, v, "job", "cart", "version", strings.Repeat("v", 257)),
		}
	}
	mapOnce(t, m, scrape(t0, 10))
	got := mapOnce(t, m, scrape(t0+15_000, 25))
	if len(got) != 1 || got[0].Service != "shop-checkout" || got[0].Env != "eu-prod" || got[0].Samples[0].Requests.Value != 15 {
		t.Fatalf("got %+v, want one sample of shop-checkout in eu-prod with 15 requests", got)
	}
	got[0].Normalize(nil)
	if err := got[0].Validate(); err != nil {
		t.Errorf("the sanitised sample is invalid: %v", err)
	}
	// Each scrape's samples that cannot be used, counted once the request is stored.
	for reason, want := range map[string]uint64{"no_service": 4, "bad_env": 2, "long_label": 2, "bad_le": 0} {
		if got := droppedSamples(set, reason); got != want {
			t.Errorf("dropped samples for %s: %d, want %d", reason, got, want)
		}
	}
	// A request that is not stored counts nothing.
	m.mapParts(scrape(t0+30_000, 40))
	if got := droppedSamples(set, "no_service"); got != 4 {
		t.Errorf("dropped samples for no_service after a request not stored: %d, want 4", got)
	}
}

func TestRemoteWriteHistogramIgnoresBadLe(t *testing.T) {
	set := metrics.NewSet()
	m, err := newRWMapper(RemoteWriteConfig{}, set)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	// The cumulative increase of each bucket, by le; the valid ones make
	// buckets of 1, 2, 3 and 1 requests.
	increase := map[string]float64{"-0": 1, "0.1": 3, "1": 6, "+Inf": 7, "NaN": 2, "-Inf": 4, "-1": 5, "nonsense": 6}
	scrape := func(ts int64, n float64) []schema.MetricsBatch {
		var series []rwSeries
		for le, inc := range increase {
			series = append(series, rwSeries{
				Labels:  labels("__name__", "http_request_duration_seconds_bucket", "job", "api", "le", le),
				Samples: []rwSample{{Value: 100 + inc*n, TimestampMs: ts}},
			})
		}
		series = append(series, rwSeries{ // no le at all
			Labels:  labels("__name__", "http_request_duration_seconds_bucket", "job", "api"),
			Samples: []rwSample{{Value: 100 + n, TimestampMs: ts}},
		})
		return mapOnce(t, m, series)
	}
	scrape(t0, 0)
	got := scrape(t0+15_000, 1)
	if len(got) != 1 || got[0].Samples[0].LatencyHistogram == nil {
		t.Fatalf("got %+v, want one sample with a histogram", got)
	}
	h := got[0].Samples[0].LatencyHistogram
	if want := []float64{0, 100, 1000}; !reflect.DeepEqual(h.BoundsMs, want) {
		t.Errorf("bounds %v, want %v: NaN, -Inf, negative and unparsable bounds ignored", h.BoundsMs, want)
	}
	var counts []uint64
	for _, c := range h.Counts {
		counts = append(counts, c.Value)
	}
	if want := []uint64{1, 2, 3, 1}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
	if s := got[0].Samples[0]; s.Requests.Value != 7 {
		t.Errorf("requests %d, want 7 (the +Inf bucket)", s.Requests.Value)
	}
	if n := droppedSamples(set, "bad_le"); n != 2*5 {
		t.Errorf("%d samples dropped for bad_le, want 10 (5 series in 2 scrapes)", n)
	}
}

// A histogram whose finite buckets are missing (their part came too late,
// or every le was bad) or that has more bounds than a sample may have is
// left out; the sample keeps its requests and errors and stays valid.
func TestRemoteWriteUnusableHistogramKeepsTheSample(t *testing.T) {
	m, err := newRWMapper(RemoteWriteConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	bucket := func(le string, ts int64, v float64) rwSeries {
		return rwSeries{Labels: labels("__name__", "http_request_duration_seconds_bucket", "job", "api", "le", le),
			Samples: []rwSample{{Value: v, TimestampMs: ts}}}
	}
	counter := func(ts int64, v float64) rwSeries {
		return rwSeries{Labels: labels("__name__", "http_requests_total", "code", "500", "job", "api"),
			Samples: []rwSample{{Value: v, TimestampMs: ts}}}
	}
	many := func(ts int64, v float64) []rwSeries {
		var out []rwSeries
		for i := range schema.MaxHistogramBounds + 1 {
			out = append(out, bucket(strconv.Itoa(i+1), ts, v))
		}
		return out
	}
	for name, scrape := range map[string]func(ts int64, v float64) []rwSeries{
		"only +Inf": func(ts int64, v float64) []rwSeries { return []rwSeries{bucket("+Inf", ts, v), counter(ts, v)} },
		"too many buckets": func(ts int64, v float64) []rwSeries {
			return append(many(ts, v), bucket("+Inf", ts, v), counter(ts, v))
		},
	} {
		mapOnce(t, m, scrape(t0, 10))
		got := mapOnce(t, m, scrape(t0+15_000, 30))
		if len(got) != 1 || len(got[0].Samples) != 1 {
			t.Fatalf("%s: got %+v, want one sample", name, got)
		}
		s := got[0].Samples[0]
		if s.LatencyHistogram != nil || s.Requests.Value != 20 || s.Errors.Value != 20 {
			t.Errorf("%s: sample %+v, want 20 requests and errors and no histogram", name, s)
		}
		if err := got[0].Validate(); err != nil {
			t.Errorf("%s: the sample is invalid: %v", name, err)
		}
		t0 += 60_000
	}
}

func TestRemoteWriteEvictionsAreCounted(t *testing.T) {
	set := metrics.NewSet()
	m, err := newRWMapper(RemoteWriteConfig{MaxSeries: 2}, set)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	mapOnce(t, m, []rwSeries{counterSeries("200", t0, 1), counterSeries("404", t0, 1)})
	evicted := set.GetOrCreateCounter(`deploywatch_remote_write_evicted_series_total`)
	if evicted.Get() != 0 {
		t.Fatalf("%d series evicted below MaxSeries", evicted.Get())
	}
	mapOnce(t, m, []rwSeries{counterSeries("500", t0, 1), counterSeries("503", t0, 1), counterSeries("200", t0+15_000, 2)})
	if len(m.last) != 2 || evicted.Get() < 2 {
		t.Errorf("%d series remembered, %d evicted; want 2 and at least 2", len(m.last), evicted.Get())
	}
}
