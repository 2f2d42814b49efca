package impact_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/processors/impact"
)

// This file generates the traffic of the scenario suite: one service's
// samples, interval by interval, the way its instances would report them.

const sampleInterval = 10 * time.Second

// Standard normal quantiles of the latency percentiles a sample reports.
const (
	z95 = 1.6448536269514722
	z99 = 2.3263478740408408
)

// traffic describes how one service behaves: its load over the day, its
// errors and the latency of one request.
type traffic struct {
	Instances int
	// PeakRate is the requests per second of the whole service at the daily peak.
	PeakRate float64
	// PeakToTrough is the daily rhythm: the peak rate over the trough rate (1: flat).
	PeakToTrough float64
	// Sharpness shapes the rhythm: 1 is a plain sinusoid, higher a narrower
	// peak with steeper ramps into it.
	Sharpness float64
	// PeakAt is the time of day (UTC) of the peak.
	PeakAt time.Duration
	// ErrorRate is the share of requests that fail.
	ErrorRate float64
	// P50 is the median latency of one request in ms at the trough; Sigma
	// the log-sd of one request's latency (p99/p50 = e^(2.33 Sigma)).
	P50, Sigma float64
	// LoadLatency is how much slower the median is at the peak than at the
	// trough (0.2: +20%); LoadTail how much wider the distribution gets
	// (0.1: Sigma +10%), so p99 rises more than p50 under load.
	LoadLatency, LoadTail float64
	// Spread is the log-sd of the instances' speeds; their traffic shares
	// vary half as much (a load balancer evens them out).
	Spread float64
	// Spikes is the chance per instance and interval of a latency spike (a
	// GC pause, a noisy neighbour); Blips the chance per interval of a
	// service-wide blip of errors and latency lasting 10-20 s.
	Spikes, Blips float64
}

// load is where the daily rhythm stands at t: 0 at the trough, 1 at the peak.
func (tr *traffic) load(t time.Time) float64 {
	tod := t.Sub(t.Truncate(24 * time.Hour))
	theta := 2 * math.Pi * float64(tod-tr.PeakAt) / float64(24*time.Hour)
	sharp := tr.Sharpness
	if sharp <= 0 {
		sharp = 1
	}
	return math.Pow((1+math.Cos(theta))/2, sharp)
}

// rate is the expected requests per second of the whole service at t.
func (tr *traffic) rate(t time.Time) float64 {
	trough := 1.0
	if tr.PeakToTrough > 1 {
		trough = 1 / tr.PeakToTrough
	}
	return tr.PeakRate * (trough + (1-trough)*tr.load(t))
}

// change is what a deploy or an incident does to the samples from At on: to
// every instance, or only to those running Version. Factors of 0 mean no
// change. The interval that straddles At gets the share of the change that
// fell after At.
type change struct {
	At      time.Time
	Version string
	// Rate, Errors, P50 and P99 multiply the request rate, the error rate
	// and the latency quantiles; p95 moves between p50 and p99 the way a
	// log-normal whose tail got heavier does.
	Rate, Errors, P50, P99 float64
	// ErrorAdd is a share of failing requests added on top (for a service
	// that had no errors before).
	ErrorAdd float64
}

// instance is one process of the service.
type instance struct {
	name, version string
	share, speed  float64
	age           int // intervals since it started
}

// replacement is a scheduled restart of instance i with a new version.
type replacement struct {
	at      time.Time
	i       int
	version string
}

// generator produces one service's samples, one interval at a time, in
// time order. It is deterministic for a seed.
type generator struct {
	service string
	tr      traffic
	rng     *rand.Rand
	pods    []*instance
	pending []replacement
	changes []change
	podSeq  int
	// surge is the log of a slowly wandering traffic factor: real traffic
	// is burstier than Poisson.
	surge float64
	// blip counts the intervals left of a service-wide blip.
	blip             int
	blipErr, blipLat float64
	// firstAffected is the end of the first interval a change touched.
	firstAffected time.Time
}

func newGenerator(service, version string, tr traffic, seed uint64) *generator {
	g := &generator{
		service: service,
		tr:      tr,
		rng:     rand.New(rand.NewPCG(seed, 0x5ce7a210)),
	}
	for range max(tr.Instances, 1) {
		g.pods = append(g.pods, g.newInstance(version))
	}
	return g
}

func (g *generator) newInstance(version string) *instance {
	g.podSeq++
	return &instance{
		name:    g.service + "-" + strconv.FormatUint(g.rng.Uint64()%0xfffff, 16) + "-" + strconv.Itoa(g.podSeq),
		version: version,
		share:   math.Exp(g.rng.NormFloat64() * g.tr.Spread / 2),
		speed:   math.Exp(g.rng.NormFloat64() * g.tr.Spread),
	}
}

// replace schedules instance i to be replaced by one running version at t.
func (g *generator) replace(i int, at time.Time, version string) {
	g.pending = append(g.pending, replacement{at: at, i: i, version: version})
}

// rollout replaces every instance with version, one after another, between
// from and to: a rolling deploy.
func (g *generator) rollout(from, to time.Time, version string) {
	n := len(g.pods)
	for i := range n {
		g.replace(i, from.Add(time.Duration(int64(to.Sub(from))*int64(i+1)/int64(n))), version)
	}
}

// apply adds a change.
func (g *generator) apply(c change) { g.changes = append(g.changes, c) }

// effect is the combined change for a pod in the interval (t-interval, t].
type effect struct {
	rate, errors, p50, p99 float64 // log factors
	errorAdd               float64
}

func (g *generator) effectOn(p *instance, t time.Time) effect {
	var e effect
	for _, c := range g.changes {
		if c.Version != "" && c.Version != p.version {
			continue
		}
		share := float64(t.Sub(c.At)) / float64(sampleInterval)
		if share <= 0 {
			continue
		}
		share = min(share, 1)
		e.rate += share * logFactor(c.Rate)
		e.errors += share * logFactor(c.Errors)
		e.p50 += share * logFactor(c.P50)
		e.p99 += share * logFactor(c.P99)
		e.errorAdd += share * c.ErrorAdd
	}
	return e
}

func logFactor(f float64) float64 {
	if f <= 0 {
		return 0
	}
	return math.Log(f)
}

// round returns the samples of the interval that ends at t, one per instance.
func (g *generator) round(t time.Time) []impact.Point {
	return g.appendRound(nil, t)
}

func (g *generator) appendRound(out []impact.Point, t time.Time) []impact.Point {
	mid := t.Add(-sampleInterval / 2)
	kept := g.pending[:0]
	for _, r := range g.pending {
		if r.at.After(mid) {
			kept = append(kept, r)
			continue
		}
		g.pods[r.i] = g.newInstance(r.version)
	}
	g.pending = kept

	const surgeKeep = 0.95 // about three minutes of memory
	g.surge = surgeKeep*g.surge + math.Sqrt(1-surgeKeep*surgeKeep)*0.05*g.rng.NormFloat64()
	if g.blip > 0 {
		g.blip--
	} else if g.rng.Float64() < g.tr.Blips {
		g.blip = 1 + g.rng.IntN(2)
		g.blipErr = math.Log(2 + g.rng.Float64())
		g.blipLat = math.Log(1.2 + 0.3*g.rng.Float64())
	}
	var blipErr, blipLat float64
	if g.blip > 0 {
		blipErr, blipLat = g.blipErr, g.blipLat
	}

	w := g.tr.load(mid)
	rate := g.tr.rate(mid) * math.Exp(g.surge) / float64(len(g.pods))
	common := 0.03 * g.rng.NormFloat64() // a shared dependency's own noise
	secs := sampleInterval.Seconds()
	for _, p := range g.pods {
		e := g.effectOn(p, t)
		if g.firstAffected.IsZero() && e != (effect{}) {
			g.firstAffected = t
		}
		n := poisson(g.rng, rate*p.share*math.Exp(e.rate)*secs)
		pe := g.tr.ErrorRate*math.Exp(0.15*g.rng.NormFloat64()-0.15*0.15/2+e.errors+blipErr) + e.errorAdd
		errs := binomial(g.rng, n, min(pe, 1))

		mu := math.Log(g.tr.P50) + math.Log(1+g.tr.LoadLatency*w) + math.Log(p.speed) +
			common + 0.03*g.rng.NormFloat64() + e.p50 + blipLat
		sigma := g.tr.Sigma*(1+g.tr.LoadTail*w) + (e.p99-e.p50)/z99
		if p.age == 0 || g.rng.Float64() < g.tr.Spikes { // a cold start or a pause
			mu += math.Log(1.1)
			sigma *= 1.5
		}
		p.age++
		q50, q95, q99 := latencyQuantiles(g.rng, int(n), mu, max(sigma, 0.01))
		out = append(out, impact.Point{
			Time:     t,
			Interval: sampleInterval,
			Version:  p.version,
			Instance: p.name,
			Requests: n,
			Errors:   errs,
			P50:      q50,
			P95:      q95,
			P99:      q99,
		})
	}
	return out
}

// latencyQuantiles are the p50, p95 and p99 an instance reports for n
// requests whose latency is log-normal(mu, sigma): computed from the
// requests themselves when there are few (so a quiet interval reports noisy
// quantiles), from the quantiles' sampling distribution when there are many.
func latencyQuantiles(rng *rand.Rand, n int, mu, sigma float64) (p50, p95, p99 float64) {
	switch {
	case n <= 0:
		return math.NaN(), math.NaN(), math.NaN()
	case n <= 128:
		var buf [128]float64
		xs := buf[:n]
		for i := range xs {
			xs[i] = math.Exp(mu + sigma*rng.NormFloat64())
		}
		slices.Sort(xs)
		return quantileOf(xs, 0.50), quantileOf(xs, 0.95), quantileOf(xs, 0.99)
	}
	// The q-quantile of n draws is about normal around the true one with
	// sd sqrt(q(1-q)/n) / density; in log space that density is phi(z_q)/sigma.
	at := func(q, z float64) float64 {
		sd := math.Sqrt(q*(1-q)/float64(n)) / (math.Exp(-z*z/2) / math.Sqrt(2*math.Pi))
		return mu + sigma*(z+sd*rng.NormFloat64())
	}
	l := [3]float64{at(0.50, 0), at(0.95, z95), at(0.99, z99)}
	slices.Sort(l[:]) // quantiles of one sample are ordered
	return math.Exp(l[0]), math.Exp(l[1]), math.Exp(l[2])
}

// quantileOf interpolates between order statistics (Hyndman-Fan type 7).
func quantileOf(sorted []float64, q float64) float64 {
	h := q * float64(len(sorted)-1)
	lo := int(h)
	if lo+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// poisson draws a Poisson count: by multiplication for a small mean, by
// Hörmann's transformed rejection (PTRS) for a large one.
func poisson(rng *rand.Rand, lambda float64) float64 {
	if lambda <= 0 {
		return 0
	}
	if lambda < 30 {
		limit, prod, k := math.Exp(-lambda), rng.Float64(), 0.0
		for prod > limit {
			prod *= rng.Float64()
			k++
		}
		return k
	}
	slam, loglam := math.Sqrt(lambda), math.Log(lambda)
	b := 0.931 + 2.53*slam
	a := -0.059 + 0.02483*b
	invAlpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := rng.Float64() - 0.5
		v := rng.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + lambda + 0.43)
		if us >= 0.07 && v <= vr {
			return k
		}
		if k < 0 || (us < 0.013 && v > us) {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invAlpha)-math.Log(a/(us*us)+b) <= -lambda+k*loglam-lg {
			return k
		}
	}
}

// binomial draws the failures among n requests that each fail with chance p.
func binomial(rng *rand.Rand, n, p float64) float64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case n <= 64:
		k := 0.0
		for range int(n) {
			if rng.Float64() < p {
				k++
			}
		}
		return k
	case n*p < 30 && p < 0.1:
		return min(poisson(rng, n*p), n)
	}
	k := math.Round(n*p + math.Sqrt(n*p*(1-p))*rng.NormFloat64())
	return min(max(k, 0), n)
}

// TestTrafficGenerator checks that the generated traffic has the statistics
// the scenarios claim: the mean rate, the daily rhythm and its peak, the
// error rate, ordered quantiles, the latency shape and a regression's size.
func TestTrafficGenerator(t *testing.T) {
	tr := traffic{
		Instances: 4, PeakRate: 60, PeakToTrough: 3, Sharpness: 1, PeakAt: 14 * time.Hour,
		ErrorRate: 0.005, P50: 40, Sigma: 0.6, LoadLatency: 0.2, LoadTail: 0.1,
		Spread: 0.06, Spikes: 0.003, Blips: 0.0005,
	}
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	g := newGenerator("checkout", "v1", tr, 7)
	var (
		requests, errs float64
		hourly         [24]float64
		p50s           [24][]float64
		tails          []float64 // p99/p50 in the quietest hours
		disordered     int
		samples        int
	)
	for ts := day.Add(sampleInterval); !ts.After(day.Add(24 * time.Hour)); ts = ts.Add(sampleInterval) {
		for _, p := range g.round(ts) {
			samples++
			requests += p.Requests
			errs += p.Errors
			h := ts.Add(-sampleInterval).Hour()
			hourly[h] += p.Requests
			if p.Requests >= 2 {
				if !(p.P50 < p.P95 && p.P95 < p.P99) {
					disordered++
				}
				p50s[h] = append(p50s[h], p.P50)
				if h == 2 {
					tails = append(tails, p.P99/p.P50)
				}
			}
		}
	}
	if samples != 8640*4 {
		t.Fatalf("got %d samples in a day of 4 instances; want %d", samples, 8640*4)
	}
	// The daily mean of (1/3 + 2/3 load) with a sinusoidal load is 2/3 of the peak.
	if got, want := requests/86400, 40.0; math.Abs(got/want-1) > 0.03 {
		t.Errorf("mean rate %.2f req/s; want %.0f ±3%%", got, want)
	}
	peak, trough := 0, 0
	for h := range hourly {
		if hourly[h] > hourly[peak] {
			peak = h
		}
		if hourly[h] < hourly[trough] {
			trough = h
		}
	}
	if peak != 13 && peak != 14 {
		t.Errorf("the busiest hour is %02d:00; want the one before or after 14:00", peak)
	}
	if trough != 1 && trough != 2 {
		t.Errorf("the quietest hour is %02d:00; want the one before or after 02:00", trough)
	}
	if ratio := hourly[peak] / hourly[trough]; ratio < 2.6 || ratio > 3.2 {
		t.Errorf("busiest over quietest hour %.2f; want about 3", ratio)
	}
	if got := errs / requests; math.Abs(got/tr.ErrorRate-1) > 0.1 {
		t.Errorf("error rate %.4f; want %.4f ±10%%", got, tr.ErrorRate)
	}
	if disordered > 0 {
		t.Errorf("%d samples with p50 < p95 < p99 broken", disordered)
	}
	if r := medianOfSamples(p50s[peak]) / medianOfSamples(p50s[trough]); r < 1.12 || r > 1.28 {
		t.Errorf("median p50 at the peak over the trough %.3f; want about 1.2", r)
	}
	// About 33 requests per interval at 02:00: p99 lands between the two
	// slowest requests, so the reported tail is a little short of e^(2.33 sigma) = 4.0.
	if r := medianOfSamples(tails); r < 2.8 || r > 4.2 {
		t.Errorf("median p99/p50 at the trough %.2f; want 2.8-4.2", r)
	}

	// The same seed gives the same samples.
	a, b := newGenerator("checkout", "v1", tr, 7), newGenerator("checkout", "v1", tr, 7)
	for ts := day.Add(sampleInterval); ts.Before(day.Add(time.Hour)); ts = ts.Add(sampleInterval) {
		pa, pb := a.round(ts), b.round(ts)
		for i := range pa {
			if !samePoint(pa[i], pb[i]) {
				t.Fatalf("seed 7 gave %+v and %+v at %s", pa[i], pb[i], ts)
			}
		}
	}
}

// TestTrafficGeneratorChanges checks that a change does what the scenarios
// say: +50% p99 raises p95 too and p50 barely, 3x errors triple the error
// rate, a canary's change stays on the canary and a rollout relabels every
// instance.
func TestTrafficGeneratorChanges(t *testing.T) {
	tr := traffic{
		Instances: 4, PeakRate: 200, PeakToTrough: 1, ErrorRate: 0.005, P50: 50, Sigma: 0.5,
		Spread: 0.06, Spikes: 0.003,
	}
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	at := start.Add(time.Hour)
	f := func(c change, canary bool) (before, after, canaryAfter map[string]float64) {
		t.Helper()
		g := newGenerator("cart", "v1", tr, 11)
		if canary {
			g.replace(0, at, "v2")
		} else {
			g.rollout(at.Add(-time.Minute), at, "v2")
		}
		g.apply(c)
		before, after, canaryAfter = map[string]float64{}, map[string]float64{}, map[string]float64{}
		var q [3][3][]float64 // side, quantile
		var req, errs, n [3]float64
		for ts := start.Add(sampleInterval); !ts.After(at.Add(time.Hour)); ts = ts.Add(sampleInterval) {
			for _, p := range g.round(ts) {
				side := 0
				switch {
				case ts.Before(at.Add(-time.Minute)):
				case !ts.After(at.Add(sampleInterval)):
					continue
				case canary && p.Version == "v2":
					side = 2
				case canary || p.Version == "v2":
					side = 1
				default:
					t.Fatalf("version %s at %s after the rollout", p.Version, ts)
				}
				q[side][0] = append(q[side][0], p.P50)
				q[side][1] = append(q[side][1], p.P95)
				q[side][2] = append(q[side][2], p.P99)
				n[side]++
				req[side] += p.Requests
				errs[side] += p.Errors
			}
		}
		for side, m := range []map[string]float64{before, after, canaryAfter} {
			m["p50"], m["p95"], m["p99"] = medianOfSamples(q[side][0]), medianOfSamples(q[side][1]), medianOfSamples(q[side][2])
			m["errors"] = errs[side] / req[side]
			m["requests"] = req[side]
			m["per_sample"] = req[side] / n[side]
		}
		return before, after, canaryAfter
	}
	near := func(what string, got, want, tol float64) {
		t.Helper()
		if math.Abs(got/want-1) > tol {
			t.Errorf("%s: %.3f; want %.3f ±%.0f%%", what, got, want, tol*100)
		}
	}

	b, a, _ := f(change{At: at, Version: "v2", P50: 1.05, P99: 1.5}, false)
	near("p99 after +50%", a["p99"]/b["p99"], 1.5, 0.06)
	near("p50 after +50% p99", a["p50"]/b["p50"], 1.05, 0.04)
	if r := a["p95"] / b["p95"]; r < 1.25 || r > 1.45 {
		t.Errorf("p95 after +50%% p99: %.3f; want 1.25-1.45", r)
	}
	b, a, _ = f(change{At: at, Version: "v2", Errors: 3}, false)
	near("error rate after 3x", a["errors"]/b["errors"], 3, 0.1)

	b, a, c := f(change{At: at, Version: "v2", Errors: 3}, true)
	near("canary error rate over the rest", c["errors"]/a["errors"], 3, 0.15)
	near("the rest's error rate", a["errors"]/b["errors"], 1, 0.1)
	near("canary's share of requests", c["requests"]/(c["requests"]+a["requests"]), 0.25, 0.1)

	b, a, _ = f(change{At: at, Rate: 0.3}, false)
	// Traffic surges wander for minutes, so an hour's mean is good to a few percent.
	near("requests per sample after a drop to 30%", a["per_sample"]/b["per_sample"], 0.3, 0.08)
}

func samePoint(a, b impact.Point) bool {
	same := func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) }
	return a.Time.Equal(b.Time) && a.Interval == b.Interval && a.Version == b.Version &&
		a.Instance == b.Instance && same(a.Requests, b.Requests) && same(a.Errors, b.Errors) &&
		same(a.P50, b.P50) && same(a.P95, b.P95) && same(a.P99, b.P99)
}

// medianOfSamples is the median of xs, ignoring NaNs; NaN when there are none.
func medianOfSamples(xs []float64) float64 {
	s := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
