package ingest

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
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

	whole, err := newRWMapper(RemoteWriteConfig{})
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
			m, err := newRWMapper(RemoteWriteConfig{})
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
	m, err := newRWMapper(RemoteWriteConfig{})
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
