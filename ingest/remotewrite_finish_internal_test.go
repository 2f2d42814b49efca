package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// podScrape is one scrape of two pods of checkout: request counters by code
// and a latency histogram, as Prometheus remote-writes them; n grows the
// counters.
func podScrape(tsMs int64, n float64) []rwSeries {
	var out []rwSeries
	for p, pod := range []string{"pod-a", "pod-b"} {
		f := float64(p + 1)
		for _, c := range []struct {
			code string
			v    float64
		}{{"200", 900 * f}, {"404", 40 * f}, {"503", 7 * f}} {
			code, v := c.code, c.v
			out = append(out, rwSeries{
				Labels:  labels("__name__", "http_requests_total", "code", code, "instance", pod, "job", "checkout", "version", "v9"),
				Samples: []rwSample{{Value: 1000 + v*n, TimestampMs: tsMs}},
			})
		}
		for i, le := range []string{"0.05", "0.25", "1", "+Inf"} {
			out = append(out, rwSeries{
				Labels:  labels("__name__", "http_request_duration_seconds_bucket", "instance", pod, "job", "checkout", "le", le, "version", "v9"),
				Samples: []rwSample{{Value: 100 + float64(i+1)*200*f*n, TimestampMs: tsMs}},
			})
		}
	}
	return out
}

// storedPart is a part as the bucket holds it.
type storedPart struct {
	key   string
	value []byte
}

// requestParts maps one request and commits it, returning its parts as stored.
func requestParts(t *testing.T, m *rwMapper, series []rwSeries) []storedPart {
	t.Helper()
	parts, updates := m.mapParts(series)
	m.commit(updates)
	var out []storedPart
	for _, p := range parts {
		out = append(out, storedPart{partKey(p), appendPart(nil, p)})
	}
	return out
}

// foldStored folds stored parts by sample, as the finisher does.
func foldStored(t *testing.T, stored []storedPart) map[string]any {
	t.Helper()
	bySample := map[string]map[string]*rwPart{}
	keys := map[string]rwSampleKey{}
	for _, s := range stored {
		p, err := decodePart(s.value)
		if err != nil {
			t.Fatalf("part %s does not decode: %v", s.key, err)
		}
		h, _, _ := strings.Cut(s.key, ".")
		if h != sampleKeyHash(p.key) {
			t.Fatalf("part %s is stored under another sample's key", s.key)
		}
		if bySample[h] == nil {
			bySample[h] = map[string]*rwPart{}
		}
		// The bucket holds one value per key: a retried part replaces itself.
		bySample[h][s.key] = p
		keys[h] = p.key
	}
	out := map[string]any{}
	f := NewRemoteWriteFinisher(nil, nil, RemoteWriteFinisherConfig{})
	for h, parts := range bySample {
		b := f.fold(&rwPending{key: keys[h], hash: h, parts: parts})
		if err := b.Validate(); err != nil {
			t.Fatalf("a folded sample is invalid: %v", err)
		}
		out[h] = b
	}
	return out
}

func TestRemoteWriteSplitScrapeFoldsAsOneRequest(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	scrapes := [][]rwSeries{podScrape(t0, 0), podScrape(t0+15_000, 1), podScrape(t0+30_000, 3)}

	whole, err := newRWMapper(RemoteWriteConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []storedPart
	for _, s := range scrapes {
		want = append(want, requestParts(t, whole, s)...)
	}
	wantSamples := foldStored(t, want)
	if len(wantSamples) != 4 {
		t.Fatalf("%d samples from 3 scrapes of 2 pods, want 4 (the first scrape primes)", len(wantSamples))
	}

	// Split points (of 7 series per pod) that put a pod's +Inf bucket alone, counters apart from
	// buckets, and a pod across two requests; sent in different orders.
	for _, split := range [][]int{{7}, {3, 6}, {2, 9, 13}, {1, 10}} {
		for _, reverse := range []bool{false, true} {
			m, err := newRWMapper(RemoteWriteConfig{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []storedPart
			for _, s := range scrapes {
				var requests [][]rwSeries
				from := 0
				for _, at := range append(split, len(s)) {
					requests = append(requests, s[from:at])
					from = at
				}
				if reverse {
					for i, j := 0, len(requests)-1; i < j; i, j = i+1, j-1 {
						requests[i], requests[j] = requests[j], requests[i]
					}
				}
				for _, r := range requests {
					got = append(got, requestParts(t, m, r)...)
				}
			}
			if gotSamples := foldStored(t, got); !reflect.DeepEqual(gotSamples, wantSamples) {
				t.Errorf("split at %v (reversed %v): folded %+v, want %+v", split, reverse, gotSamples, wantSamples)
			}
		}
	}
}

func TestRemoteWriteRetriedPartChangesNothing(t *testing.T) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	m, err := newRWMapper(RemoteWriteConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	requestParts(t, m, podScrape(t0, 0))
	second := podScrape(t0+15_000, 1)
	first, _ := m.mapParts(second[:9])
	// The store failed: Prometheus sends the request again, which maps the
	// same parts under the same keys.
	var stored []storedPart
	for _, p := range first {
		stored = append(stored, storedPart{partKey(p), appendPart(nil, p)})
	}
	again := requestParts(t, m, second[:9])
	if len(again) != len(stored) {
		t.Fatalf("the retry gave %d parts, the first attempt %d", len(again), len(stored))
	}
	byKey := map[string][]byte{}
	for _, s := range stored {
		byKey[s.key] = s.value
	}
	for _, s := range again {
		if !bytes.Equal(byKey[s.key], s.value) {
			t.Errorf("the retry stores %s with another value, or under another key", s.key)
		}
	}
	rest := requestParts(t, m, second[9:])
	once := foldStored(t, append(append([]storedPart{}, again...), rest...))
	twice := foldStored(t, append(append(append([]storedPart{}, stored...), again...), rest...))
	if !reflect.DeepEqual(once, twice) {
		t.Errorf("a part stored twice folds to %+v, once to %+v", twice, once)
	}

	// A part stored again under another key (the same series in two
	// requests) is still counted once.
	dup := append([]storedPart{}, again...)
	for _, s := range again {
		dup = append(dup, storedPart{s.key + "0", s.value})
	}
	if got := foldStored(t, append(dup, rest...)); !reflect.DeepEqual(got, once) {
		t.Errorf("series in two parts fold to %+v, want %+v", got, once)
	}
}

func TestRemoteWritePartDecodeRefusesGarbage(t *testing.T) {
	p := &rwPart{key: rwSampleKey{"checkout", "production", "v1", "pod-a", 1_763_790_000_000},
		contribs: []rwContrib{{series: 42, hist: true, le: 250, delta: 17, intervalMs: 15_000}, {series: 7, isError: true, delta: 3, intervalMs: 15_000}}}
	b := appendPart(nil, p)
	got, err := decodePart(b)
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, p)
	}
	for i := range b {
		if _, err := decodePart(b[:i]); err == nil {
			t.Errorf("a part truncated to %d bytes decodes", i)
		}
	}
	if _, err := decodePart(append(b, 0)); err == nil {
		t.Error("a part with a trailing byte decodes")
	}
}

func TestRemoteWriteLargePartIsSplitWithinTheLimit(t *testing.T) {
	ts := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	p := &rwPart{key: rwSampleKey{"checkout", "production", "v1", "pod-a", ts}}
	for i := range 5000 {
		p.contribs = append(p.contribs, rwContrib{series: rand.Uint64(), hist: i%3 == 0, isError: i%7 == 0, le: float64(i % 50), delta: float64(i % 13), intervalMs: 15_000})
	}
	const limit = 16 << 10
	split := splitPart(p, limit)
	if len(split) < 2 {
		t.Fatalf("a part of %d bytes split into %d parts of at most %d", len(appendPart(nil, p)), len(split), limit)
	}
	n := 0
	var keys []string
	for _, q := range split {
		if b := appendPart(nil, q); len(b) > limit {
			t.Errorf("a split part is %d bytes, above %d", len(b), limit)
		}
		n += len(q.contribs)
		keys = append(keys, partKey(q))
	}
	if n != len(p.contribs) {
		t.Errorf("split parts hold %d contributions, want %d", n, len(p.contribs))
	}
	f := NewRemoteWriteFinisher(nil, nil, RemoteWriteFinisherConfig{})
	whole := f.fold(&rwPending{key: p.key, parts: map[string]*rwPart{"a": p}})
	byKey := map[string]*rwPart{}
	for i, q := range split {
		byKey[keys[i]] = q
	}
	if got := f.fold(&rwPending{key: p.key, parts: byKey}); !reflect.DeepEqual(got, whole) {
		t.Errorf("the split parts fold to %+v, the whole to %+v", got, whole)
	}
	// A retried request, whose series may come in another order, stores
	// the same parts under the same keys.
	shuffled := &rwPart{key: p.key, contribs: append([]rwContrib(nil), p.contribs...)}
	rand.Shuffle(len(shuffled.contribs), func(i, j int) {
		shuffled.contribs[i], shuffled.contribs[j] = shuffled.contribs[j], shuffled.contribs[i]
	})
	for i, q := range splitPart(shuffled, limit) {
		if partKey(q) != keys[i] || !bytes.Equal(appendPart(nil, q), appendPart(nil, split[i])) {
			t.Fatalf("split part %d differs when the series come in another order", i)
		}
	}
}

// testParts is a real part log: a JetStream key-value bucket as serve opens it.
func testParts(t *testing.T) *eventlog.Bucket {
	t.Helper()
	js, err := jetstream.New(testenv.NATSConn(t, testenv.NATS(t)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := eventlog.OpenBucket(context.Background(), js, eventlog.BucketConfig{Name: "remote_write_parts", MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordingPublisher keeps what is published.
type recordingPublisher struct {
	mu   sync.Mutex
	msgs []schema.Message
}

func (p *recordingPublisher) Publish(ctx context.Context, msgs []schema.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *recordingPublisher) published() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// receivePart gives the finisher a part as the watch of the bucket does,
// once it is stored.
func receivePart(t *testing.T, f *RemoteWriteFinisher, st *rwFinishState, bucket *eventlog.Bucket, p *rwPart) {
	t.Helper()
	k, v := partKey(p), appendPart(nil, p)
	if err := bucket.Put(context.Background(), k, v); err != nil {
		t.Fatal(err)
	}
	f.receive(context.Background(), st, rwPartEvent{k, v})
}

func newFinishState() *rwFinishState {
	return &rwFinishState{ready: true, pending: map[string]*rwPending{}, finished: map[string]rwFinished{}, warnings: map[string]*rwWarning{}}
}

func TestRemoteWriteFinisherLooksForgottenSamplesUp(t *testing.T) {
	bucket := testParts(t)
	pub := &recordingPublisher{}
	set := metrics.NewSet()
	f := NewRemoteWriteFinisher(bucket, pub, RemoteWriteFinisherConfig{FinishDelay: 100 * time.Millisecond, Metrics: set})
	// Two samples of 20 minutes ago; the first was finished then, which
	// its marker says, but this finisher has forgotten it (it remembers
	// finished samples for 15 minutes).
	ts := time.Now().Add(-20 * time.Minute).Truncate(time.Second).UnixMilli()
	finished := &rwPart{key: rwSampleKey{"checkout", "production", "v1", "pod-a", ts}, contribs: []rwContrib{{series: 1, delta: 5, intervalMs: 15_000}}}
	fresh := &rwPart{key: rwSampleKey{"checkout", "production", "v1", "pod-b", ts}, contribs: []rwContrib{{series: 2, delta: 7, intervalMs: 15_000}}}
	if err := bucket.Put(context.Background(), markerKey(sampleKeyHash(finished.key)), appendMarker(nil, time.Now().Add(-20*time.Minute), []uint64{42})); err != nil {
		t.Fatal(err)
	}
	st := newFinishState()
	// A part of the finished sample arrives late (a retry after an outage).
	receivePart(t, f, st, bucket, finished)
	receivePart(t, f, st, bucket, fresh)
	f.finishDue(context.Background(), st, time.Now().Add(time.Second))
	if n := pub.published(); n != 1 {
		t.Fatalf("%d samples published, want 1: the late part of a finished sample would replace it with a partial one", n)
	}
	if id, want := pub.msgs[0].ID, "remote_write:"+sampleKeyHash(fresh.key); id != want {
		t.Fatalf("published %s, want the sample of pod-b, %s", id, want)
	}
	if late := set.GetOrCreateCounter(`deploywatch_remote_write_late_parts_total`).Get(); late != 1 {
		t.Errorf("%d late parts, want 1", late)
	}
	if ok, err := bucket.Has(context.Background(), partKey(finished)); err != nil || ok {
		t.Errorf("the late part is still stored (%v, %v)", ok, err)
	}
	if len(st.pending) != 0 {
		t.Errorf("%d samples pending, want none", len(st.pending))
	}
}

// countingHandler counts the warnings logged.
type countingHandler struct {
	mu    sync.Mutex
	warns int
	last  []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level == slog.LevelWarn {
		h.warns++
		h.last = h.last[:0]
		r.Attrs(func(a slog.Attr) bool {
			h.last = append(h.last, a.String())
			return true
		})
	}
	return nil
}

func TestRemoteWriteFinisherDoesNotFloodTheLog(t *testing.T) {
	bucket := testParts(t)
	logs := &countingHandler{}
	set := metrics.NewSet()
	f := NewRemoteWriteFinisher(bucket, &recordingPublisher{}, RemoteWriteFinisherConfig{FinishDelay: 100 * time.Millisecond, Metrics: set, Logger: slog.New(logs)})
	st := newFinishState()
	ts := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	// Samples no deploywatch sample can be: an env that is not a name
	// (stored by an older deploywatch, which did not sanitise it).
	pods := 0
	invalid := func(n int) {
		for range n {
			pods++
			p := &rwPart{key: rwSampleKey{"checkout", "eu/prod", "v1", fmt.Sprintf("pod-%d", pods), ts}, contribs: []rwContrib{{series: 1, delta: 5, intervalMs: 15_000}}}
			receivePart(t, f, st, bucket, p)
		}
		f.finishDue(context.Background(), st, time.Now().Add(time.Second))
	}
	invalid(50)
	if n := droppedSamplesCounter(set, "invalid").Get(); n != 50 {
		t.Errorf("%d samples dropped as invalid, want 50", n)
	}
	invalid(10)
	if logs.warns != 1 {
		t.Errorf("%d warnings for 60 invalid samples, want 1 a minute", logs.warns)
	}
	// The next one, once the minute passed, says how many were held back.
	st.warnings["dropping a remote_write sample that is not a valid deploywatch sample"].next = time.Time{}
	invalid(1)
	if logs.warns != 2 || !strings.Contains(strings.Join(logs.last, " "), "held_back=59") {
		t.Errorf("%d warnings, the last with %v; want 2, the last saying 59 were held back", logs.warns, logs.last)
	}
}

func TestRemoteWriteMarker(t *testing.T) {
	at := time.UnixMilli(1_763_790_000_000)
	b := appendMarker(nil, at, []uint64{7, 42})
	gotAt, got, ok := decodeMarker(b)
	if !ok || !gotAt.Equal(at) || !reflect.DeepEqual(got, []uint64{7, 42}) {
		t.Fatalf("decoded %v %v %v; want %v [7 42]", gotAt, got, ok, at)
	}
	for i := range b {
		if _, _, ok := decodeMarker(b[:i]); ok {
			t.Errorf("a marker truncated to %d bytes decodes", i)
		}
	}

	// The markers a restart replays: one of an hour ago is not remembered
	// (the sample is looked up in the bucket if it comes again), but the
	// parts it finished, left behind, are deleted all the same.
	bucket := testParts(t)
	set := metrics.NewSet()
	f := NewRemoteWriteFinisher(bucket, &recordingPublisher{}, RemoteWriteFinisherConfig{Metrics: set})
	st := newFinishState()
	p := &rwPart{key: rwSampleKey{"checkout", "production", "v1", "pod-a", at.UnixMilli()}, contribs: []rwContrib{{series: 1, delta: 5, intervalMs: 15_000}}}
	receivePart(t, f, st, bucket, p)
	hash := sampleKeyHash(p.key)
	f.marked(context.Background(), st, hash, time.Now().Add(-time.Hour), []uint64{partDigest(partKey(p), appendPart(nil, p))})
	if _, ok := st.finished[hash]; ok || len(st.pending) != 0 {
		t.Errorf("finished %v, %d pending; want the old marker forgotten and nothing pending", st.finished, len(st.pending))
	}
	if ok, err := bucket.Has(context.Background(), partKey(p)); err != nil || ok {
		t.Errorf("the part left behind is still stored (%v, %v)", ok, err)
	}
	if late := set.GetOrCreateCounter(`deploywatch_remote_write_late_parts_total`).Get(); late != 0 {
		t.Errorf("%d late parts, want 0: the part left behind is one the marker lists", late)
	}
}
