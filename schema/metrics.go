package schema

import (
	"crypto/sha256"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// MetricsBatch is a batch of traffic and latency samples of one service.
type MetricsBatch struct {
	ID      string   `json:"id"`
	Type    Type     `json:"type"`
	Service string   `json:"service"`
	Env     string   `json:"env"`
	Samples []Sample `json:"samples"`
}

// Sample is what one instance (or one version, or the whole service) served in
// one interval that ends at Time.
type Sample struct {
	Time      Time   `json:"time"`
	IntervalS Number `json:"interval_s"`
	// Service and Env override the batch's when set.
	Service          string            `json:"service,omitempty"`
	Env              string            `json:"env,omitempty"`
	Version          string            `json:"version,omitempty"`
	Instance         string            `json:"instance,omitempty"`
	Requests         Count             `json:"requests"`
	Errors           Count             `json:"errors"`
	LatencyMs        *LatencyQuantiles `json:"latency_ms,omitempty"`
	LatencyHistogram *LatencyHistogram `json:"latency_histogram,omitempty"`
}

// LatencyQuantiles are response time quantiles in milliseconds; any subset may be present.
type LatencyQuantiles struct {
	P50 Number `json:"p50,omitzero"`
	P90 Number `json:"p90,omitzero"`
	P95 Number `json:"p95,omitzero"`
	P99 Number `json:"p99,omitzero"`
	Max Number `json:"max,omitzero"`
}

// LatencyHistogram counts responses by duration: Counts[i] responses took at most
// BoundsMs[i] (and more than BoundsMs[i-1]); the last count is above the last bound.
// Counts are Counts like requests and errors, so they take the same numbers.
type LatencyHistogram struct {
	BoundsMs []float64 `json:"bounds_ms"`
	Counts   []Count   `json:"counts"`
}

func (b *MetricsBatch) EventType() Type      { return TypeMetrics }
func (b *MetricsBatch) EventID() string      { return b.ID }
func (b *MetricsBatch) EventService() string { return b.Service }

// EventTime is the time of the batch's newest sample.
func (b *MetricsBatch) EventTime() Time {
	var newest Time
	for i := range b.Samples {
		if b.Samples[i].Time.Time.After(newest.Time) {
			newest = b.Samples[i].Time
		}
	}
	return newest
}

// Normalize fills in the type and, when the sender gave none, an id derived from
// the batch's body as sent, so that a re-sent request gets the same id.
func (b *MetricsBatch) Normalize(body []byte) {
	b.Type = TypeMetrics
	b.Service = strings.TrimSpace(b.Service)
	b.Env = strings.TrimSpace(b.Env)
	if b.ID == "" {
		if body == nil {
			body, _ = json.Marshal(b)
		}
		sum := sha256.Sum256(body)
		b.ID = derivedID("metrics", string(sum[:]))
	}
}

// Validate reports every problem of the batch at once.
func (b *MetricsBatch) Validate() error {
	var p problems
	b.validate(&p, "")
	return p.err()
}

// MaxSamplesPerBatch bounds one batch; larger uploads are split by the sender.
const MaxSamplesPerBatch = 1_000_000

func (b *MetricsBatch) validate(p *problems, prefix string) {
	checkID(p, join(prefix, "id"), b.ID)
	checkName(p, join(prefix, "service"), b.Service, true)
	checkName(p, join(prefix, "env"), b.Env, true)
	switch {
	case len(b.Samples) == 0:
		p.add(join(prefix, "samples"), "is required: at least one sample")
	case len(b.Samples) > MaxSamplesPerBatch:
		p.addf(join(prefix, "samples"), "has %d samples; the limit is %d per batch: split the upload", len(b.Samples), MaxSamplesPerBatch)
	}
	// Samples are validated with paths relative to the sample, and the path is
	// only built for a sample with problems: most batches have none.
	var scratch problems
	latest := time.Now().Add(maxClockSkew) // a clock read per sample took a tenth of the time
	for i := range b.Samples {
		if p.truncated {
			return
		}
		scratch.list = scratch.list[:0]
		b.Samples[i].validate(&scratch, latest)
		p.addUnder(join(prefix, "samples"), i, &scratch)
	}
}

// earliestSure is a time in the year 2000 in every time zone.
var earliestSure = time.Date(2000, 1, 2, 0, 0, 0, 0, time.UTC)

// maxReportedProblems keeps an error response readable when a large batch is bad throughout.
const maxReportedProblems = 100

// validate checks the sample; field paths are relative to it ("requests").
// A time up to latest is surely not in the future.
func (s *Sample) validate(p *problems, latest time.Time) {
	const prefix = ""
	if t := s.Time; t.invalid != "" || t.Time.Before(earliestSure) || t.Time.After(latest) {
		s.Time.check(p, join(prefix, "time"), true) // names the problem, if there is one
	}
	switch {
	case s.IntervalS.invalid != "":
		p.add(join(prefix, "interval_s"), "must be a number of seconds > 0, got "+s.IntervalS.invalid)
	case !s.IntervalS.Set:
		p.add(join(prefix, "interval_s"), "is required: the length of the sample's interval in seconds, > 0")
	case s.IntervalS.Value <= 0 || s.IntervalS.Value > 86400:
		p.add(join(prefix, "interval_s"), "must be > 0 and at most 86400 seconds, got "+strconv.FormatFloat(s.IntervalS.Value, 'g', -1, 64))
	}
	checkName(p, join(prefix, "service"), s.Service, false)
	checkName(p, join(prefix, "env"), s.Env, false)
	checkText(p, join(prefix, "version"), s.Version, 256)
	checkText(p, join(prefix, "instance"), s.Instance, 256)
	s.Requests.check(p, join(prefix, "requests"))
	s.Errors.check(p, join(prefix, "errors"))
	if s.Requests.Set && s.Errors.Set && s.Errors.Value > s.Requests.Value {
		p.addf(join(prefix, "errors"), "is %d, more than requests (%d): errors count the failed requests among them", s.Errors.Value, s.Requests.Value)
	}
	if q := s.LatencyMs; q != nil {
		const lp = "latency_ms"
		q.P50.checkNonNegative(p, "latency_ms.p50")
		q.P90.checkNonNegative(p, "latency_ms.p90")
		q.P95.checkNonNegative(p, "latency_ms.p95")
		q.P99.checkNonNegative(p, "latency_ms.p99")
		q.Max.checkNonNegative(p, "latency_ms.max")
		ordered := []struct {
			name string
			n    Number
		}{{"p50", q.P50}, {"p90", q.P90}, {"p95", q.P95}, {"p99", q.P99}, {"max", q.Max}}
		var prev *struct {
			name string
			n    Number
		}
		for i := range ordered {
			if !ordered[i].n.Set {
				continue
			}
			if prev != nil && ordered[i].n.Value < prev.n.Value {
				p.addf(join(lp, ordered[i].name), "is %g, below %s (%g): quantiles must not decrease", ordered[i].n.Value, prev.name, prev.n.Value)
			}
			prev = &ordered[i]
		}
	}
	if h := s.LatencyHistogram; h != nil {
		const hp = "latency_histogram"
		if len(h.BoundsMs) == 0 {
			p.add(join(hp, "bounds_ms"), "is required: the upper bounds of the buckets in milliseconds")
		}
		if len(h.BoundsMs) > MaxHistogramBounds {
			p.addf(join(hp, "bounds_ms"), "has %d bounds; the limit is %d", len(h.BoundsMs), MaxHistogramBounds)
		}
		for i, bound := range h.BoundsMs {
			if bound < 0 || (i > 0 && bound <= h.BoundsMs[i-1]) {
				p.addf(join(hp, "bounds_ms")+"["+itoa(i)+"]", "is %g: bounds must be >= 0 and strictly increasing", bound)
				break
			}
		}
		if len(h.Counts) != len(h.BoundsMs)+1 {
			p.addf(join(hp, "counts"), "has %d counts for %d bounds: send one more count than bounds (the last counts responses above the last bound)", len(h.Counts), len(h.BoundsMs))
		}
		for i, c := range h.Counts {
			if !c.Set || c.invalid != "" {
				c.check(p, hp+".counts["+itoa(i)+"]")
			}
		}
	}
}

// MaxHistogramBounds is how many bucket bounds a sample's latency histogram
// may have.
const MaxHistogramBounds = 256

// Split cuts the batch into parts of at most max samples, each with its own id
// derived from the batch's, so that each part fits one JetStream message and a
// re-sent batch produces the same parts.
func (b *MetricsBatch) Split(max int) []MetricsBatch {
	if len(b.Samples) <= max {
		return []MetricsBatch{*b}
	}
	n := (len(b.Samples) + max - 1) / max
	// A part is a batch of its own and its id must be valid as one.
	base := b.ID
	if len(base)+len("."+itoa(n)+"of"+itoa(n)) > maxIDLen {
		base = derivedID("metrics-part", b.ID)
	}
	parts := make([]MetricsBatch, 0, n)
	for i := 0; i < n; i++ {
		part := *b
		part.ID = base + "." + itoa(i+1) + "of" + itoa(n)
		part.Samples = b.Samples[i*max : min((i+1)*max, len(b.Samples))]
		parts = append(parts, part)
	}
	return parts
}

// ResolvedService is the sample's service: its own, else its batch's.
func (s *Sample) ResolvedService(batch *MetricsBatch) string {
	if s.Service != "" {
		return s.Service
	}
	return batch.Service
}

// ResolvedEnv is the sample's env: its own, else its batch's.
func (s *Sample) ResolvedEnv(batch *MetricsBatch) string {
	if s.Env != "" {
		return s.Env
	}
	return batch.Env
}
