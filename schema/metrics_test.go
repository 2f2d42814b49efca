package schema

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// realisticBatch returns n samples of a service of 20 instances running two
// versions during a canary: per-instance traffic with a daily rhythm and
// noise, rare errors, quantiles on most samples and histograms on some.
func realisticBatch(n int) *MetricsBatch {
	rng := rand.New(rand.NewPCG(7, 11))
	start := time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)
	bounds := []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000}
	b := &MetricsBatch{Service: "checkout", Env: "prod", Samples: make([]Sample, n)}
	for i := range b.Samples {
		instance, step := i%20, i/20
		at := start.Add(time.Duration(step) * 10 * time.Second)
		hour := float64(at.Hour()) + float64(at.Minute())/60
		rhythm := 1 + 0.6*math.Sin((hour-9)/24*2*math.Pi)
		requests := uint64(math.Max(0, 150*rhythm+rng.NormFloat64()*12))
		version := "v2.13.2"
		if instance < 2 {
			version = "v2.14.0"
		}
		errRate := 0.002
		if version == "v2.14.0" {
			errRate = 0.006
		}
		errors := uint64(0)
		for range requests {
			if rng.Float64() < errRate {
				errors++
			}
		}
		s := Sample{
			Time:      At(at),
			IntervalS: NumberOf(10),
			Version:   version,
			Instance:  "checkout-" + version[1:] + "-" + itoa(instance),
			Requests:  CountOf(requests),
			Errors:    CountOf(errors),
		}
		if i%4 != 3 {
			p50 := 35 + rng.Float64()*10
			s.LatencyMs = &LatencyQuantiles{P50: NumberOf(p50), P90: NumberOf(p50 * 2.7), P95: NumberOf(p50 * 4.1), P99: NumberOf(p50 * 9.8), Max: NumberOf(p50 * 31)}
		}
		if i%5 == 0 {
			h := &LatencyHistogram{BoundsMs: bounds, Counts: make([]Count, len(bounds)+1)}
			left := requests
			for j := range h.Counts {
				c := left / 2
				if j == len(h.Counts)-1 {
					c = left
				}
				h.Counts[j] = CountOf(c)
				left -= c
			}
			s.LatencyHistogram = h
		}
		b.Samples[i] = s
	}
	return b
}

func TestSplit(t *testing.T) {
	batch := realisticBatch(10_001)
	batch.Normalize(nil)
	parts := batch.Split(1000)
	if len(parts) != 11 {
		t.Fatalf("got %d parts, want 11", len(parts))
	}
	var rejoined []Sample
	for i, part := range parts {
		if want := batch.ID + "." + itoa(i+1) + "of11"; part.ID != want {
			t.Fatalf("part %d has id %q, want %q", i, part.ID, want)
		}
		if want := min(1000, 10_001-i*1000); len(part.Samples) != want {
			t.Fatalf("part %d has %d samples, want %d", i, len(part.Samples), want)
		}
		if part.Service != batch.Service || part.Env != batch.Env || part.Type != TypeMetrics {
			t.Fatalf("part %d lost the batch's service, env or type", i)
		}
		if err := part.Validate(); err != nil {
			t.Fatalf("part %d is not a valid batch: %v", i, err)
		}
		rejoined = append(rejoined, part.Samples...)
	}
	if !slices.EqualFunc(rejoined, batch.Samples, func(a, b Sample) bool {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		return string(ja) == string(jb)
	}) {
		t.Fatal("the parts do not hold the batch's samples in order")
	}

	// The same batch again gives the same parts.
	again := realisticBatch(10_001)
	again.Normalize(nil)
	for i, part := range again.Split(1000) {
		if part.ID != parts[i].ID {
			t.Fatalf("part %d of the same batch got ids %q and %q", i, parts[i].ID, part.ID)
		}
	}

	// A batch that fits is its own part.
	small := realisticBatch(1000)
	small.Normalize(nil)
	if got := small.Split(1000); len(got) != 1 || got[0].ID != small.ID || len(got[0].Samples) != 1000 {
		t.Fatalf("a batch of 1000 split by 1000 gave %d parts", len(got))
	}
}

func TestSplitKeepsIDsValid(t *testing.T) {
	batch := realisticBatch(2500)
	batch.ID = "upload-" + strings.Repeat("0123456789", 12) + "a" // 128 characters, the longest id
	parts := batch.Split(1000)
	seen := map[string]bool{}
	for i, part := range parts {
		if err := part.Validate(); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if seen[part.ID] {
			t.Fatalf("part %d repeats id %q", i, part.ID)
		}
		seen[part.ID] = true
		// A consumer decodes the part from the event log.
		data, err := json.Marshal(&part)
		if err != nil {
			t.Fatal(err)
		}
		var decoded MetricsBatch
		if err := DecodeInto(data, &decoded, ""); err != nil {
			t.Fatalf("part %d cannot be decoded from the event log: %v", i, err)
		}
		if decoded.ID != part.ID {
			t.Fatalf("part %d decoded with id %q, want %q", i, decoded.ID, part.ID)
		}
	}
	if again := batch.Split(1000); again[2].ID != parts[2].ID {
		t.Fatalf("the same batch got part ids %q and %q", parts[2].ID, again[2].ID)
	}
}

// BenchmarkDecodeMetricsBatch decodes, normalizes and validates a batch of
// 1000 samples, as POST /api/v1/metrics and POST /api/v1/events do.
func BenchmarkDecodeMetricsBatch(b *testing.B) {
	const samples = 1000
	batch := realisticBatch(samples)
	batch.Type = TypeMetrics
	body, err := json.Marshal(batch)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		decode func([]byte) error
	}{
		{"DecodeInto", func(raw []byte) error { var m MetricsBatch; return DecodeInto(raw, &m, "") }},
		{"DecodeEvent", func(raw []byte) error { _, err := DecodeEvent(raw, ""); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.decode(body); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*samples/b.Elapsed().Seconds(), "samples/s")
		})
	}
}
