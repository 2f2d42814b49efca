package impact

import (
	"math"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// PointsOf turns a metrics batch into points, calling fn with each sample's
// service and env (a sample may override the batch's).
func PointsOf(b *schema.MetricsBatch, fn func(service, env string, p Point)) {
	for i := range b.Samples {
		s := &b.Samples[i]
		service, env := b.Service, b.Env
		if s.Service != "" {
			service = s.Service
		}
		if s.Env != "" {
			env = s.Env
		}
		fn(service, env, PointOf(s))
	}
}

// PointOf is one sample as a point: latency quantiles come from the histogram
// where the sample has one (it sums honestly across instances), else from the
// reported quantiles.
func PointOf(s *schema.Sample) Point {
	p := Point{
		Time:     s.Time.Time,
		Interval: time.Duration(s.IntervalS.Value * float64(time.Second)),
		Version:  s.Version,
		Instance: s.Instance,
		Requests: float64(s.Requests.Value),
		Errors:   float64(s.Errors.Value),
		P50:      math.NaN(),
		P95:      math.NaN(),
		P99:      math.NaN(),
	}
	if h := s.LatencyHistogram; h != nil && len(h.Counts) == len(h.BoundsMs)+1 {
		counts := make([]float64, len(h.Counts))
		for i, c := range h.Counts {
			counts[i] = float64(c.Value)
		}
		p.SetHistogram(h.BoundsMs, counts)
		return p
	}
	if q := s.LatencyMs; q != nil {
		if q.P50.Set {
			p.P50 = q.P50.Value
		}
		if q.P95.Set {
			p.P95 = q.P95.Value
		}
		if q.P99.Set {
			p.P99 = q.P99.Value
		}
	}
	return p
}

// SetHistogram sets the point's quantiles from a latency histogram (see
// HistogramQuantile).
func (p *Point) SetHistogram(boundsMs, counts []float64) {
	p.P50 = HistogramQuantile(0.50, boundsMs, counts)
	p.P95 = HistogramQuantile(0.95, boundsMs, counts)
	p.P99 = HistogramQuantile(0.99, boundsMs, counts)
}

// HistogramQuantile estimates the q-quantile of a histogram whose counts[i]
// observations fell at or below bounds[i] (the last count above the last
// bound), interpolating linearly inside a bucket the way Prometheus'
// histogram_quantile does. It is NaN for an empty histogram; a quantile in the
// open top bucket is the last bound.
func HistogramQuantile(q float64, bounds, counts []float64) float64 {
	var total float64
	for _, c := range counts {
		total += c
	}
	if total <= 0 || len(bounds) == 0 {
		return math.NaN()
	}
	rank := q * total
	var seen float64
	for i, c := range counts {
		if seen+c >= rank && c > 0 {
			if i == len(bounds) {
				return bounds[len(bounds)-1]
			}
			lower := 0.0
			if i > 0 {
				lower = bounds[i-1]
			}
			return lower + (bounds[i]-lower)*(rank-seen)/c
		}
		seen += c
	}
	return bounds[len(bounds)-1]
}
