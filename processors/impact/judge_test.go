package impact

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aclements/go-moremath/stats"
	"github.com/deploywatch/deploywatch/schema"
)

// deployAt is when the deploys of these tests finish.
var deployAt = time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)

const step = 10 * time.Second

// load is what each instance of a version serves: Poisson traffic, binomial
// errors and log-normal latency quantiles, sampled every 10 s.
type load struct {
	version       string
	instances     int
	rate          float64 // requests per second per instance
	errRate       float64
	p50, p95, p99 float64 // ms
}

var normal = load{version: "v1.4.1", instances: 4, rate: 10, errRate: 0.005, p50: 40, p95: 90, p99: 120}

func (l load) with(f func(*load)) load {
	f(&l)
	return l
}

// points samples l over (from, from+d].
func (l load) points(rng *rand.Rand, from time.Time, d time.Duration) []Point {
	var out []Point
	for t := from.Add(step); !t.After(from.Add(d)); t = t.Add(step) {
		for i := range l.instances {
			req := poisson(rng, l.rate*step.Seconds())
			lat := func(m, sd float64) float64 {
				if req == 0 {
					return math.NaN()
				}
				return m * math.Exp(sd*rng.NormFloat64())
			}
			out = append(out, Point{
				Time: t, Interval: step, Version: l.version, Instance: fmt.Sprintf("%s-%d", l.version, i),
				Requests: req, Errors: binomial(rng, req, l.errRate),
				P50: lat(l.p50, 0.05), P95: lat(l.p95, 0.08), P99: lat(l.p99, 0.12),
			})
		}
	}
	return out
}

func poisson(rng *rand.Rand, lambda float64) float64 {
	if lambda <= 0 {
		return 0
	}
	if lambda > 50 {
		return max(0, math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64()))
	}
	limit, k, prod := math.Exp(-lambda), 0.0, rng.Float64()
	for prod > limit {
		k++
		prod *= rng.Float64()
	}
	return k
}

func binomial(rng *rand.Rand, n, p float64) float64 {
	if n*p < 50 {
		return min(n, poisson(rng, n*p))
	}
	return min(n, max(0, math.Round(n*p+math.Sqrt(n*p*(1-p))*rng.NormFloat64())))
}

func window(from time.Time, d time.Duration) schema.Window {
	return schema.Window{From: schema.At(from), To: schema.At(from.Add(d))}
}

// beforeAfter compares 30 minutes of before with d of after.
func beforeAfter(seed uint64, before, after load, d time.Duration) Input {
	rng := rand.New(rand.NewPCG(seed, 7))
	from := deployAt.Add(-30 * time.Minute)
	return Input{
		Comparison: schema.BeforeVsAfter,
		Baseline:   Group{Window: window(from, 30*time.Minute), Points: before.points(rng, from, 30*time.Minute)},
		Candidate:  Group{Window: window(deployAt, d), Points: after.points(rng, deployAt, d)},
		Version:    "v1.4.2",
		Final:      d >= 30*time.Minute,
	}
}

// setErrors spreads exactly n errors over the first points of pts.
func setErrors(pts []Point, n float64) {
	for i := range pts {
		pts[i].Errors = 0
	}
	for i := 0; n > 0; i = (i + 1) % len(pts) {
		e := min(n, 10, pts[i].Requests-pts[i].Errors)
		pts[i].Errors += e
		n -= e
	}
}

func totals(pts []Point) (requests, errors float64) {
	for _, p := range pts {
		requests += p.Requests
		errors += p.Errors
	}
	return requests, errors
}

func metricOf(t *testing.T, v schema.Verdict, name string) schema.MetricVerdict {
	t.Helper()
	for _, m := range v.Metrics {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("verdict has no metric %s: %+v", name, v.Metrics)
	return schema.MetricVerdict{}
}

func dump(v schema.Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s score=%d final=%v early=%v: %s\n", v.Status, v.Score, v.Final, v.Early, v.Reason)
	for _, m := range v.Metrics {
		fmt.Fprintf(&b, "  %-12s %-6s p=%.3g shift=%.4g effect=%+.3f base=%.4g cand=%.4g n=%d/%d need=%d %s\n",
			m.Name, m.Class, m.PValue, m.Shift, m.Effect, m.Baseline.Value, m.Candidate.Value,
			m.Baseline.N, m.Candidate.N, m.SamplesNeeded, m.Note)
	}
	return b.String()
}

// checkJSON fails unless the verdict encodes (no NaN or infinity anywhere).
func checkJSON(t *testing.T, v schema.Verdict) {
	t.Helper()
	if _, err := json.Marshal(v); err != nil {
		t.Fatalf("cannot encode verdict: %s\n%s", err, dump(v))
	}
	for _, m := range v.Metrics {
		for _, f := range []float64{m.PValue, m.Shift, m.Ratio, m.Effect, m.Weight, m.Tolerance,
			m.Baseline.Value, m.Candidate.Value, m.Baseline.Requests, m.Candidate.Requests} {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				t.Fatalf("metric %s has a non-finite number\n%s", m.Name, dump(v))
			}
		}
	}
}

func TestJudge(t *testing.T) {
	order := []string{"request_rate", "error_rate", "latency_p50", "latency_p95", "latency_p99"}
	type want struct {
		status  schema.VerdictStatus
		score   int // -1: not checked
		final   bool
		early   bool
		classes map[string]schema.MetricClass
		reason  []string // substrings
	}
	f := func(name string, in Input, p Policy, w want) {
		t.Run(name, func(t *testing.T) {
			v := Judge(in, p)
			checkJSON(t, v)
			if v.Status != w.status || v.Final != w.final || v.Early != w.early || (w.score >= 0 && v.Score != w.score) {
				t.Fatalf("got status %s final=%v early=%v score %d; want %s final=%v early=%v score %d\n%s",
					v.Status, v.Final, v.Early, v.Score, w.status, w.final, w.early, w.score, dump(v))
			}
			var names []string
			for _, m := range v.Metrics {
				names = append(names, m.Name)
			}
			if !slices.Equal(names, order) {
				t.Fatalf("metrics are %v; want %v", names, order)
			}
			for name, class := range w.classes {
				if m := metricOf(t, v, name); m.Class != class {
					t.Fatalf("%s is %s; want %s\n%s", name, m.Class, class, dump(v))
				}
			}
			for _, s := range w.reason {
				if !strings.Contains(v.Reason, s) {
					t.Fatalf("reason %q does not contain %q\n%s", v.Reason, s, dump(v))
				}
			}
			if v.Baseline != in.Baseline.Window || v.Candidate != in.Candidate.Window || v.Comparison != in.Comparison {
				t.Fatalf("windows or comparison not copied: %+v", v)
			}
		})
	}
	def := DefaultPolicy()
	allPass := map[string]schema.MetricClass{"request_rate": "pass", "error_rate": "pass", "latency_p50": "pass", "latency_p95": "pass", "latency_p99": "pass"}

	f("equal distributions", beforeAfter(1, normal, normal, 30*time.Minute), def, want{
		status: schema.VerdictHealthy, score: 100, final: true, classes: allPass,
		reason: []string{"no metric moved beyond its tolerance after v1.4.2 (error rate 0.5% → 0.5%, latency p99 121 ms → 120 ms)"},
	})

	f("error rate 3x", beforeAfter(2, normal, normal.with(func(l *load) { l.errRate = 0.015 }), 30*time.Minute), def, want{
		status: schema.VerdictBad, score: 67, final: true,
		classes: map[string]schema.MetricClass{"error_rate": "high", "latency_p99": "pass", "request_rate": "pass"},
		reason:  []string{"error rate rose from 0.5% to 1.5% (3.0x, p < 0.001) on 71,714 requests after v1.4.2"},
	})

	kayenta := beforeAfter(3, normal.with(func(l *load) { l.errRate = 0 }), normal.with(func(l *load) { l.errRate = 0 }), 30*time.Minute)
	setErrors(kayenta.Candidate.Points, 300)
	f("zero baseline errors against 300", kayenta, def, want{
		status: schema.VerdictBad, score: 67, final: true,
		classes: map[string]schema.MetricClass{"error_rate": "high"},
		reason:  []string{"error rate rose from 0% to 0.4% (300 errors where there were none, p < 0.001)"},
	})

	f("p99 +50%", beforeAfter(4, normal, normal.with(func(l *load) { l.p99 = 180 }), 30*time.Minute), def, want{
		status: schema.VerdictBad, score: 83, final: true,
		classes: map[string]schema.MetricClass{"latency_p99": "high", "latency_p95": "pass", "error_rate": "pass"},
		reason:  []string{"latency p99 rose from 121 ms to 180 ms (+49%, p < 0.001) after v1.4.2"},
	})

	f("traffic halves", beforeAfter(5, normal, normal.with(func(l *load) { l.rate = 5 }), 30*time.Minute), def, want{
		status: schema.VerdictBad, score: 83, final: true,
		classes: map[string]schema.MetricClass{"request_rate": "low", "error_rate": "pass"},
		reason:  []string{"request rate fell from 39.9/s to 20.1/s (-50%, p < 0.001) after v1.4.2"},
	})

	f("twice the instances at half the rate", beforeAfter(6, normal, normal.with(func(l *load) { l.instances, l.rate = 8, 5 }), 30*time.Minute), def, want{
		status: schema.VerdictHealthy, score: 100, final: true, classes: allPass,
	})

	f("latency improves", beforeAfter(7, normal, normal.with(func(l *load) { l.p99 = 70 }), 30*time.Minute), def, want{
		status: schema.VerdictHealthy, score: 100, final: true, classes: allPass,
		reason: []string{"no metric got worse beyond its tolerance after v1.4.2; latency p99 fell from 120 ms to 70 ms (-41%, p < 0.001)"},
	})

	f("more traffic", beforeAfter(8, normal, normal.with(func(l *load) { l.rate = 30 }), 30*time.Minute), def, want{
		status: schema.VerdictHealthy, score: 100, final: true, classes: allPass,
		reason: []string{"no metric got worse beyond its tolerance after v1.4.2; request rate rose from 39.6/s to 120.1/s (+203%, p < 0.001)"},
	})

	lowTraffic := normal.with(func(l *load) { l.instances, l.rate = 1, 0.05 })
	f("low traffic", beforeAfter(9, lowTraffic, lowTraffic, 30*time.Minute), def, want{
		status: schema.VerdictInconclusive, score: -1, final: true,
		classes: map[string]schema.MetricClass{"error_rate": "nodata", "request_rate": "nodata"},
		reason:  []string{"too little traffic to judge the error rate after v1.4.2: ", " requests", "needed"},
	})

	unversioned := beforeAfter(10, normal, normal, 30*time.Minute)
	unversioned.Version = ""
	f("no version", unversioned, def, want{
		status: schema.VerdictHealthy, score: 100, final: true,
		reason: []string{"no metric moved beyond its tolerance after the deploy ("},
	})

	f("p50 only: marginal", beforeAfter(11, normal, normal.with(func(l *load) { l.p50 = 60 }), 30*time.Minute), def, want{
		status: schema.VerdictMarginal, score: 83, final: true,
		classes: map[string]schema.MetricClass{"latency_p50": "high", "latency_p95": "pass", "latency_p99": "pass"},
		reason:  []string{"latency p50 rose from 40 ms to 60 ms (+51%, p < 0.001) after v1.4.2 (score 83)"},
	})
	f("p50 and p95: bad by score", beforeAfter(12, normal, normal.with(func(l *load) { l.p50, l.p95 = 60, 130 }), 30*time.Minute), def, want{
		status: schema.VerdictBad, score: 67, final: true,
		classes: map[string]schema.MetricClass{"latency_p50": "high", "latency_p95": "high", "latency_p99": "pass"},
	})
	lenient := DefaultPolicy()
	lenient.PassScore, lenient.MarginalScore = 80, 60
	f("p50 only under lower cut-offs", beforeAfter(11, normal, normal.with(func(l *load) { l.p50 = 60 }), 30*time.Minute), lenient, want{
		status: schema.VerdictHealthy, score: 83, final: true,
		classes: map[string]schema.MetricClass{"latency_p50": "high"},
	})

	f("early: a strong error burst", beforeAfter(13, normal, normal.with(func(l *load) { l.errRate = 0.2 }), 2*time.Minute), def, want{
		status: schema.VerdictBad, score: -1, final: true, early: true,
		classes: map[string]schema.MetricClass{"error_rate": "high"},
		reason:  []string{"error rate rose from 0.5% to 19.9% (42x, p < 0.001) on 4,781 requests after v1.4.2, called before the window ended"},
	})
	f("early: a strong burst on too few samples", beforeAfter(14, normal, normal.with(func(l *load) { l.errRate = 0.2 }), 30*time.Second), def, want{
		status: schema.VerdictPending, score: -1, final: false,
		classes: map[string]schema.MetricClass{"error_rate": "high"},
		reason:  []string{"so far error rate rose from 0.5% to ", "after v1.4.2; waiting for 6 sample times before calling it"},
	})
	f("early: non-critical change", beforeAfter(15, normal, normal.with(func(l *load) { l.p50 = 80 }), 5*time.Minute), def, want{
		status: schema.VerdictPending, score: -1, final: false,
		classes: map[string]schema.MetricClass{"latency_p50": "high"},
		reason:  []string{"so far latency p50 rose", "not yet strong enough"},
	})
	f("early: nothing yet", beforeAfter(16, normal, normal, 5*time.Minute), def, want{
		status: schema.VerdictPending, score: 100, final: false, classes: allPass,
		reason: []string{"so far no metric moved beyond its tolerance after v1.4.2"},
	})

	f("no points at all", Input{Comparison: schema.BeforeVsAfter, Final: true, Version: "v2"}, def, want{
		status: schema.VerdictInconclusive, score: 0, final: true,
		classes: map[string]schema.MetricClass{"request_rate": "nodata", "error_rate": "nodata", "latency_p99": "nodata"},
	})
}

// A mild rise of the error rate, significant at alpha but not at
// early_alpha, waits for the end of the window.
func TestJudgeEarlyNeedsStrongEvidence(t *testing.T) {
	in := beforeAfter(20, normal, normal, time.Minute)
	nb, _ := totals(in.Baseline.Points)
	setErrors(in.Baseline.Points, math.Round(nb*0.005))
	nc, _ := totals(in.Candidate.Points)
	setErrors(in.Candidate.Points, math.Round(nc*0.0095))
	p := DefaultPolicy()
	v := Judge(in, p)
	checkJSON(t, v)
	m := metricOf(t, v, "error_rate")
	if !(m.PValue > p.EarlyAlpha && m.PValue < p.Alpha) {
		t.Fatalf("the test case is off: p = %g should be between early_alpha and alpha\n%s", m.PValue, dump(v))
	}
	if m.Class != schema.MetricHigh || v.Status != schema.VerdictPending || v.Final || v.Early {
		t.Fatalf("got %s (final %v, early %v) with error_rate %s; want pending with error_rate high\n%s",
			v.Status, v.Final, v.Early, m.Class, dump(v))
	}
	// The same evidence at the end of the window is a bad verdict.
	in.Final = true
	if v := Judge(in, p); v.Status != schema.VerdictBad || v.Early {
		t.Fatalf("final: got %s early=%v; want bad, not early\n%s", v.Status, v.Early, dump(v))
	}
	// A watched service is judged every minute: each look needs early_alpha.
	in.Comparison = schema.RecentVsEarlier
	if v := Judge(in, p); v.Status == schema.VerdictBad || metricOf(t, v, "error_rate").Class == schema.MetricHigh {
		t.Fatalf("recent_vs_earlier: got %s\n%s", v.Status, dump(v))
	}
}

// Early evidence is counted in sample times: four fresh canary instances
// give four points a time, but 30 s of them are still 30 s.
func TestJudgeEarlyCountsTimes(t *testing.T) {
	canary := func(d time.Duration) Input {
		rng := rand.New(rand.NewPCG(21, 1))
		w := window(deployAt, d)
		return Input{
			Comparison: schema.CanaryVsBaseline,
			Baseline:   Group{Window: w, Points: normal.points(rng, deployAt, d)},
			Candidate:  Group{Window: w, Points: normal.with(func(l *load) { l.version, l.errRate = "v1.4.2", 0.2 }).points(rng, deployAt, d)},
			Version:    "v1.4.2",
		}
	}
	v := Judge(canary(30*time.Second), DefaultPolicy())
	if m := metricOf(t, v, "error_rate"); m.Class != schema.MetricHigh || m.PValue >= DefaultPolicy().EarlyAlpha || v.Status != schema.VerdictPending {
		t.Fatalf("30 s of 4 canaries: got %s with error_rate %s (p = %g); want pending on strong evidence\n%s", v.Status, m.Class, m.PValue, dump(v))
	}
	if v := Judge(canary(time.Minute), DefaultPolicy()); v.Status != schema.VerdictBad || !v.Early {
		t.Fatalf("a minute of 4 canaries: got %s early=%v; want bad early\n%s", v.Status, v.Early, dump(v))
	}
}

func TestJudgeLowTrafficNeverHealthy(t *testing.T) {
	low := normal.with(func(l *load) { l.instances, l.rate = 1, 0.05 })
	for seed := uint64(0); seed < 20; seed++ {
		v := Judge(beforeAfter(100+seed, low, low, 30*time.Minute), DefaultPolicy())
		checkJSON(t, v)
		if v.Status != schema.VerdictInconclusive {
			t.Fatalf("seed %d: got %s; want inconclusive\n%s", seed, v.Status, dump(v))
		}
		m := metricOf(t, v, "error_rate")
		if m.Class != schema.MetricNoData || m.SamplesNeeded <= 0 || m.Note == "" {
			t.Fatalf("seed %d: error_rate %s needing %d (%q); want nodata needing more requests\n%s",
				seed, m.Class, m.SamplesNeeded, m.Note, dump(v))
		}
	}
}

// With enough requests but a clean baseline, the requests needed come from
// the floor rate, and the reason says how many more.
func TestJudgeErrorRateRequestsNeeded(t *testing.T) {
	quiet := normal.with(func(l *load) { l.instances, l.rate, l.errRate = 1, 0.5, 0 })
	in := beforeAfter(30, normal.with(func(l *load) { l.errRate = 0 }), quiet, 30*time.Minute)
	p := DefaultPolicy()
	p.Metrics.RequestRate.Disabled = true // the traffic falls; only the error rate is of interest here
	v := Judge(in, p)
	checkJSON(t, v)
	m := metricOf(t, v, "error_rate")
	if m.Class != schema.MetricNoData || m.SamplesNeeded <= 0 {
		t.Fatalf("error_rate %s needing %d; want nodata\n%s", m.Class, m.SamplesNeeded, dump(v))
	}
	nc, _ := totals(in.Candidate.Points)
	want := fmt.Sprintf("too little traffic to judge the error rate after v1.4.2: %s requests, about %s more needed to tell 1.0%% from 1.5%%",
		thousands(nc), roughly(m.SamplesNeeded))
	if v.Status != schema.VerdictInconclusive || v.Reason != want {
		t.Fatalf("got %s: %q\nwant inconclusive: %q", v.Status, v.Reason, want)
	}
	// Adding the requests it asked for (at the same clean rate) is enough.
	more := Point{Time: deployAt.Add(30 * time.Minute), Interval: step, Requests: math.Ceil(float64(m.SamplesNeeded) * 1.01),
		P50: math.NaN(), P95: math.NaN(), P99: math.NaN()}
	in.Candidate.Points = append(slices.Clone(in.Candidate.Points), more)
	v = Judge(in, p)
	if m := metricOf(t, v, "error_rate"); m.Class != schema.MetricPass {
		t.Fatalf("with %d more requests the error rate is %s; want pass\n%s", m.SamplesNeeded, m.Class, dump(v))
	}
}

func TestJudgeCanaryRatePerInstance(t *testing.T) {
	rng := rand.New(rand.NewPCG(40, 1))
	w := window(deployAt, 30*time.Minute)
	old := normal.with(func(l *load) { l.instances = 3 })
	canary := normal.with(func(l *load) { l.instances, l.version = 1, "v1.4.2" })
	in := Input{
		Comparison: schema.CanaryVsBaseline,
		Baseline:   Group{Window: w, Points: old.points(rng, deployAt, 30*time.Minute)},
		Candidate:  Group{Window: w, Points: canary.points(rng, deployAt, 30*time.Minute)},
		Version:    "v1.4.2",
		Final:      true,
	}
	v := Judge(in, DefaultPolicy())
	checkJSON(t, v)
	if m := metricOf(t, v, "request_rate"); v.Status != schema.VerdictHealthy || m.Class != schema.MetricPass || math.Abs(m.Effect) > 0.1 {
		t.Fatalf("one canary against three old instances: got %s, request_rate %s (%+.2f)\n%s", v.Status, m.Class, m.Effect, dump(v))
	}
	// A canary that gets a fraction of its share is broken.
	in.Candidate.Points = canary.with(func(l *load) { l.rate = 2 }).points(rng, deployAt, 30*time.Minute)
	v = Judge(in, DefaultPolicy())
	if m := metricOf(t, v, "request_rate"); v.Status != schema.VerdictBad || m.Class != schema.MetricLow {
		t.Fatalf("starved canary: got %s, request_rate %s\n%s", v.Status, m.Class, dump(v))
	}
}

func TestJudgeRhythm(t *testing.T) {
	// Latency rises every afternoon at this time; a deploy lands on it.
	day := 24 * time.Hour
	quiet, busy := normal.with(func(l *load) { l.p99 = 100 }), normal.with(func(l *load) { l.p99 = 160 })
	earlier := func(seed uint64, label string, ago time.Duration, after load) Earlier {
		rng := rand.New(rand.NewPCG(seed, 3))
		from := deployAt.Add(-ago - 30*time.Minute)
		return Earlier{
			Label:     label,
			Baseline:  Group{Window: window(from, 30*time.Minute), Points: quiet.points(rng, from, 30*time.Minute)},
			Candidate: Group{Window: window(deployAt.Add(-ago), 30*time.Minute), Points: after.points(rng, deployAt.Add(-ago), 30*time.Minute)},
		}
	}
	for _, c := range []struct {
		name    string
		earlier []Earlier
		class   schema.MetricClass
		status  schema.VerdictStatus
		reason  string
	}{
		{"no history", nil, schema.MetricHigh, schema.VerdictBad, "latency p99 rose from 100 ms to 160 ms (+60%, p < 0.001) after v1.4.2"},
		{"the same rise a day earlier", []Earlier{earlier(51, "1 day earlier", day, normal.with(func(l *load) { l.p99 = 150 }))},
			schema.MetricPass, schema.VerdictHealthy,
			"latency p99 rose from 100 ms to 160 ms (+60%, p < 0.001) after v1.4.2, but the same rise happened 1 day earlier at this time (+49%, p < 0.001): daily rhythm, not this deploy"},
		{"the same rise a week earlier", []Earlier{earlier(52, "1 day earlier", day, quiet), earlier(53, "1 week earlier", 7*day, busy)},
			schema.MetricPass, schema.VerdictHealthy, "happened 1 week earlier at this time (+61%, p < 0.001): weekly rhythm"},
		{"a flat day earlier", []Earlier{earlier(54, "1 day earlier", day, quiet)}, schema.MetricHigh, schema.VerdictBad, "latency p99 rose"},
		{"a smaller rise a day earlier", []Earlier{earlier(55, "1 day earlier", day, normal.with(func(l *load) { l.p99 = 115 }))},
			schema.MetricHigh, schema.VerdictBad, "latency p99 rose"},
		{"a fall a day earlier", []Earlier{earlier(56, "1 day earlier", day, normal.with(func(l *load) { l.p99 = 60 }))},
			schema.MetricHigh, schema.VerdictBad, "latency p99 rose"},
		{"too little history", []Earlier{{Label: "1 day earlier", Baseline: Group{Points: quiet.points(rand.New(rand.NewPCG(57, 1)), deployAt, 20*time.Second)}}},
			schema.MetricHigh, schema.VerdictBad, "latency p99 rose"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := beforeAfter(50, quiet, busy, 30*time.Minute)
			in.Earlier = c.earlier
			v := Judge(in, DefaultPolicy())
			checkJSON(t, v)
			m := metricOf(t, v, "latency_p99")
			if m.Class != c.class || v.Status != c.status || !strings.Contains(v.Reason, c.reason) {
				t.Fatalf("got %s, latency_p99 %s: %q\nwant %s, %s, reason containing %q\n%s", v.Status, m.Class, v.Reason, c.status, c.class, c.reason, dump(v))
			}
			if c.class == schema.MetricPass && !strings.Contains(m.Note, "rhythm, not this deploy") {
				t.Fatalf("note %q does not name the rhythm", m.Note)
			}
		})
	}
	// Only before/after comparisons have a rhythm to blame.
	in := beforeAfter(50, quiet, busy, 30*time.Minute)
	in.Comparison = schema.CanaryVsBaseline
	in.Earlier = []Earlier{earlier(51, "1 day earlier", day, busy)}
	if m := metricOf(t, Judge(in, DefaultPolicy()), "latency_p99"); m.Class != schema.MetricHigh {
		t.Fatalf("canary: latency_p99 is %s; want high", m.Class)
	}
}

func TestJudgePolicy(t *testing.T) {
	in := beforeAfter(60, normal, normal.with(func(l *load) { l.p99 = 180 }), 30*time.Minute)

	p := DefaultPolicy()
	p.Metrics.LatencyP99.Tolerance = 0.6
	if v := Judge(in, p); metricOf(t, v, "latency_p99").Class != schema.MetricPass || v.Status != schema.VerdictHealthy {
		t.Fatalf("+50%% within a 60%% tolerance: got %s\n%s", v.Status, dump(v))
	}

	p = DefaultPolicy()
	p.Metrics.LatencyP99.MinDelta = 100
	if v := Judge(in, p); metricOf(t, v, "latency_p99").Class != schema.MetricPass {
		t.Fatalf("+60 ms under a 100 ms min_delta: got %s\n%s", v.Status, dump(v))
	}

	p = DefaultPolicy()
	p.Metrics.LatencyP99.Critical = false
	if v := Judge(in, p); v.Status != schema.VerdictMarginal {
		t.Fatalf("non-critical p99: got %s; want marginal by score\n%s", v.Status, dump(v))
	}

	p = DefaultPolicy()
	p.Metrics.LatencyP99.Disabled = true
	v := Judge(in, p)
	if len(v.Metrics) != 4 || v.Status != schema.VerdictHealthy {
		t.Fatalf("disabled p99: got %s with %d metrics\n%s", v.Status, len(v.Metrics), dump(v))
	}

	p = DefaultPolicy()
	p.Metrics.LatencyP99.Harm = HarmDecrease
	if m := metricOf(t, Judge(in, p), "latency_p99"); m.Class != schema.MetricPass || !strings.Contains(m.Note, "harmless") {
		t.Fatalf("a rise where only a fall harms: %s %q", m.Class, m.Note)
	}
	p.Metrics.LatencyP99.Harm = HarmBoth
	if m := metricOf(t, Judge(in, p), "latency_p99"); m.Class != schema.MetricHigh {
		t.Fatalf("a rise where both directions harm: %s", m.Class)
	}
}

func TestJudgeNoDataDetails(t *testing.T) {
	// 30 s after the deploy: 3 times of 4 instances. The service's request
	// rate has 3 samples (one a time), latency 12 (one a point).
	in := beforeAfter(70, normal, normal, 30*time.Second)
	v := Judge(in, DefaultPolicy())
	checkJSON(t, v)
	if rr := metricOf(t, v, "request_rate"); rr.Class != schema.MetricNoData || rr.SamplesNeeded != 3 || rr.Candidate.N != 3 {
		t.Fatalf("request_rate after 3 times: %s needing %d; want nodata needing 3\n%s", rr.Class, rr.SamplesNeeded, dump(v))
	}
	if m := metricOf(t, v, "latency_p99"); m.Class != schema.MetricPass || m.Candidate.N != 12 {
		t.Fatalf("latency_p99 after 12 points: %s on %d\n%s", m.Class, m.Candidate.N, dump(v))
	}
	// Ended there (a rollback, say): the error rate, critical and short of
	// requests, is what the reason names.
	in.Final = true
	v = Judge(in, DefaultPolicy())
	er := metricOf(t, v, "error_rate")
	want := "too little traffic to judge the error rate after v1.4.2: " + thousands(er.Candidate.Requests) + " requests, about " +
		roughly(er.SamplesNeeded) + " more needed to tell 1.0% from 1.5%"
	if v.Status != schema.VerdictInconclusive || v.Reason != want || er.Class != schema.MetricNoData {
		t.Fatalf("final with 3 samples: %s %q; want inconclusive %q\n%s", v.Status, v.Reason, want, dump(v))
	}
	p := DefaultPolicy()
	p.Metrics.ErrorRate.Disabled = true
	v = Judge(in, p)
	if want := "too few samples to judge the request rate after v1.4.2: 3 samples, at least 6 needed"; v.Status != schema.VerdictInconclusive || v.Reason != want {
		t.Fatalf("final with 3 samples, no error rate: %s %q; want inconclusive %q", v.Status, v.Reason, want)
	}
}

// Pathological input never makes NaN, infinities or a panic.
func TestJudgeHostileInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(80, 1))
	base := normal.points(rng, deployAt.Add(-30*time.Minute), 30*time.Minute)
	weird := slices.Clone(normal.points(rng, deployAt, 30*time.Minute))
	for i := range weird {
		switch i % 7 {
		case 0:
			weird[i].P99 = math.Inf(1)
		case 1:
			weird[i].Requests = math.NaN()
		case 2:
			weird[i].Errors = math.Inf(1)
		case 3:
			weird[i].Interval = 0
		case 4:
			weird[i].Errors = weird[i].Requests * 3
		case 5:
			weird[i].P50 = -5
		}
	}
	zeros := slices.Clone(base)
	for i := range zeros {
		zeros[i].Requests, zeros[i].Errors, zeros[i].P50, zeros[i].P95, zeros[i].P99 = 0, 0, 0, 0, 0
	}
	huge := normal.with(func(l *load) { l.rate, l.errRate = 5000, 0.5 }).points(rng, deployAt, 30*time.Minute)
	for _, c := range []struct {
		name       string
		base, cand []Point
	}{
		{"weird candidate", base, weird},
		{"weird baseline", weird, base},
		{"silent baseline", zeros, base},
		{"silent candidate", base, zeros},
		{"empty candidate", base, nil},
		{"half a million errors", base, huge},
		{"one point each", base[:1], base[1:2]},
	} {
		for _, cmp := range []schema.Comparison{schema.BeforeVsAfter, schema.CanaryVsBaseline, schema.RecentVsEarlier} {
			for _, final := range []bool{false, true} {
				in := Input{Comparison: cmp, Baseline: Group{Points: c.base}, Candidate: Group{Points: c.cand}, Final: final}
				v := Judge(in, DefaultPolicy())
				checkJSON(t, v)
				if v.Status == "" || v.Reason == "" || v.Score < 0 || v.Score > 100 {
					t.Fatalf("%s %s final=%v: %+v", c.name, cmp, final, v)
				}
				if c.name == "half a million errors" && (metricOf(t, v, "error_rate").Class != schema.MetricHigh || v.Status != schema.VerdictBad) {
					t.Fatalf("half a million errors: %s\n%s", v.Status, dump(v))
				}
			}
		}
	}
}

func TestJudgeRecentWords(t *testing.T) {
	in := beforeAfter(90, normal, normal.with(func(l *load) { l.errRate = 0.05 }), 10*time.Minute)
	in.Comparison, in.Version, in.Final = schema.RecentVsEarlier, "", true
	v := Judge(in, DefaultPolicy())
	if v.Status != schema.VerdictBad || !strings.HasSuffix(v.Reason, "requests in the last 10 minutes") {
		t.Fatalf("got %s: %q", v.Status, v.Reason)
	}
}

func TestJudgeRecoveryWords(t *testing.T) {
	in := beforeAfter(91, normal, normal, 10*time.Minute)
	in.Comparison, in.Version, in.Final = schema.RecoveryVsBaseline, "v1.4.1", true
	v := Judge(in, DefaultPolicy())
	if v.Status != schema.VerdictHealthy || !strings.HasPrefix(v.Reason, "no metric moved beyond its tolerance since the rollback to v1.4.1 (") {
		t.Fatalf("got %s: %q", v.Status, v.Reason)
	}
}

// --- the statistics against references ---

func TestMannWhitneyMatchesMoremath(t *testing.T) {
	rng := rand.New(rand.NewPCG(90, 2))
	gen := func(n int, ties bool, shift float64) []float64 {
		x := make([]float64, n)
		for i := range x {
			if ties {
				x[i] = float64(rng.IntN(12)) + math.Round(shift)
			} else {
				x[i] = rng.NormFloat64() + shift
			}
		}
		slices.Sort(x)
		return x
	}
	checked := 0
	for range 400 {
		ties := rng.IntN(2) == 0
		var n1, n2 int
		if rng.IntN(2) == 0 { // exact in both: no ties, few pairs
			ties = false
			n1, n2 = 1+rng.IntN(16), 1+rng.IntN(16)
		} else { // normal approximation in both
			n1, n2 = 51+rng.IntN(200), 17+rng.IntN(300)
			if rng.IntN(2) == 0 {
				n1, n2 = n2, n1
			}
		}
		x, y := gen(n1, ties, rng.Float64()*2-1), gen(n2, ties, 0)
		got := mannWhitney(x, y)
		up, err1 := stats.MannWhitneyUTest(x, y, stats.LocationGreater)
		down, err2 := stats.MannWhitneyUTest(x, y, stats.LocationLess)
		if err1 != nil || err2 != nil {
			continue // all values equal
		}
		if math.Abs(got.up-up.P) > 1e-9 || math.Abs(got.down-down.P) > 1e-9 {
			t.Fatalf("n=%d,%d ties=%v: got up %g down %g; moremath says %g and %g", n1, n2, ties, got.up, got.down, up.P, down.P)
		}
		checked++
	}
	if checked < 300 {
		t.Fatalf("only %d comparisons checked", checked)
	}
	if d := mannWhitney([]float64{3, 3, 3}, []float64{3, 3, 3, 3}); d.up != 1 || d.down != 1 {
		t.Fatalf("all equal: %+v", d)
	}
}

// mwuNeeded: the smallest one-sided p-value of the Mann-Whitney test is
// 1/C(n1+n2, n1).
func TestMannWhitneyReach(t *testing.T) {
	for _, c := range []struct {
		n1, n2 int
		alpha  float64
		want   int
	}{
		{2, 2, 0.01, 11},   // C(15, 13) = 105 > 100, C(14, 12) = 91
		{3, 3, 0.001, 14},  // C(20, 17) = 1140 > 1000, C(19, 16) = 969
		{6, 720, 0.01, 0},  // already
		{1, 180, 0.01, 0},  // 1/181 < 0.01
		{1, 50, 0.01, 1},   // 1/51, then 2/C(52,2)
		{12, 0, 0.01, 1e6}, // never: no baseline
	} {
		got := mwuNeeded(c.n1, c.n2, c.alpha)
		if c.want == 1e6 {
			if got < 1000 {
				t.Fatalf("mwuNeeded(%d, %d, %g) = %d; want a huge number", c.n1, c.n2, c.alpha, got)
			}
			continue
		}
		if got != c.want {
			t.Fatalf("mwuNeeded(%d, %d, %g) = %d; want %d", c.n1, c.n2, c.alpha, got, c.want)
		}
	}
}

func naiveHL(x, y []float64) float64 {
	var d []float64
	for _, a := range x {
		for _, b := range y {
			d = append(d, a-b)
		}
	}
	slices.Sort(d)
	n := len(d)
	return d[(n-1)/2]/2 + d[n/2]/2
}

func TestHodgesLehmannExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(91, 2))
	kinds := map[string]func() float64{
		"normal":     rng.NormFloat64,
		"lognormal":  func() float64 { return 120 * math.Exp(0.3*rng.NormFloat64()) },
		"ties":       func() float64 { return float64(rng.IntN(6)) },
		"tenths":     func() float64 { return math.Round(40+6*rng.NormFloat64()) / 10 },
		"heavy tail": func() float64 { return 100 / (0.01 + rng.Float64()) },
		"constant":   func() float64 { return 7 },
	}
	var buf []float64
	for name, gen := range kinds {
		for range 60 {
			n, m := 1+rng.IntN(90), 1+rng.IntN(120)
			x, y := make([]float64, n), make([]float64, m)
			shift := rng.Float64() * 3
			for i := range x {
				x[i] = gen() + shift
			}
			for i := range y {
				y[i] = gen()
			}
			slices.Sort(x)
			slices.Sort(y)
			var got float64
			got, buf = hodgesLehmann(x, y, buf)
			want := naiveHL(x, y)
			scale := max(math.Abs(x[0]), math.Abs(x[n-1]), math.Abs(y[0]), math.Abs(y[m-1]))
			if math.Abs(got-want) > 1e-12*scale {
				t.Fatalf("%s n=%d m=%d: got %v, want %v", name, n, m, got, want)
			}
		}
	}
}

func TestBinomialTails(t *testing.T) {
	for _, c := range []struct{ n, p float64 }{{1, 0.5}, {10, 0.1}, {200, 0.03}, {1500, 0.5}, {1800, 0.001}, {900, 0.97}} {
		d := stats.BinomialDist{N: int(c.n), P: c.p}
		for k := 0.0; k <= c.n; k += max(1, math.Floor(c.n/97)) {
			le, ge := d.CDF(k), 1-d.CDF(k-1)
			if got := binomLE(k, c.n, c.p); math.Abs(got-le) > 1e-9*max(le, 1e-300) && math.Abs(got-le) > 1e-12 {
				t.Fatalf("P(X <= %g | n=%g, p=%g) = %g; want %g", k, c.n, c.p, got, le)
			}
			if got := binomGE(k, c.n, c.p); math.Abs(got-ge) > 1e-9*max(ge, 1e-300) && math.Abs(got-ge) > 1e-12 {
				t.Fatalf("P(X >= %g | n=%g, p=%g) = %g; want %g", k, c.n, c.p, got, ge)
			}
		}
	}
	// Where the continued fraction of moremath's BetaInc gives up: about
	// half a million errors.
	n, p := 1e6, 0.5
	if got := binomGE(n*p+1500, n, p); !(got > 0.0013 && got < 0.0014) { // z = 3
		t.Fatalf("P(X >= mean + 3 sd) = %g; want about 0.00135", got)
	}
}

func TestSortFloats(t *testing.T) {
	rng := rand.New(rand.NewPCG(92, 2))
	var keys, tmp []uint64
	for _, n := range []int{0, 1, 5, 127, 128, 129, 720, 3000} {
		for _, gen := range []func() float64{
			rng.NormFloat64,
			func() float64 { return 120 * math.Exp(0.3*rng.NormFloat64()) },
			func() float64 { return float64(rng.IntN(5)) - 2 },
			func() float64 { return math.Ldexp(rng.Float64(), rng.IntN(200)-100) * float64(1-2*rng.IntN(2)) },
			func() float64 { return 7 },
		} {
			s := make([]float64, n)
			for i := range s {
				s[i] = gen()
			}
			if n > 3 {
				s[0], s[1], s[2] = math.Copysign(0, -1), math.Inf(1), math.Inf(-1)
			}
			want := slices.Clone(s)
			slices.Sort(want)
			keys, tmp = sortFloats(s, keys, tmp)
			if !slices.Equal(s, want) {
				t.Fatalf("n=%d: sorted to %v; want %v", n, s[:min(n, 8)], want[:min(n, 8)])
			}
		}
	}
}

func TestNumbersForPeople(t *testing.T) {
	f := func(got, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("got %q; want %q", got, want)
		}
	}
	f(thousands(1840), "1,840")
	f(thousands(-1234567.4), "-1,234,567")
	f(thousands(999), "999")
	f(roughly(1217), "1,200")
	f(roughly(57), "57")
	f(percent(0.021), "2.1%")
	f(percent(0.0004), "0.04%")
	f(percent(0), "0%")
	f(millis(310.2), "310 ms")
	f(millis(1250), "1,250 ms")
	f(millis(4.25), "4.2 ms")
	f(perSecond(42), "42.0/s")
	f(perSecond(0.05), "0.05/s")
	f(perSecond(12345), "12,345/s")
	f(signedPct(1.583), "+158%")
	f(signedPct(-0.93), "-93%")
	f(signedPct(0.075), "+7.5%")
	f(fmtRatio(5.2), "5.2x")
	f(fmtRatio(0.19), "0.19x")
	f(fmtRatio(2003), "2,003x")
	f(pText(0.0004), "p < 0.001")
	f(pText(0.004), "p = 0.004")
	f(pText(0.21), "p = 0.21")
	f(spoken(10*time.Minute), "10 minutes")
	f(spoken(time.Hour), "1 hour")
	f(spoken(90*time.Second), "90 seconds")
}

// BenchmarkJudge measures one evaluation of 30 minutes of 4 instances every
// 10 s (720 points) against up to 720 more; the live processor makes 100 of
// these a second for 1,000 open analyses.
func BenchmarkJudge(b *testing.B) {
	quiet, busy := normal.with(func(l *load) { l.p99 = 100 }), normal.with(func(l *load) { l.p99 = 160 })
	rhythm := beforeAfter(50, quiet, busy, 30*time.Minute)
	for _, seed := range []uint64{51, 52} {
		e := beforeAfter(seed, quiet, normal.with(func(l *load) { l.p99 = 115 }), 30*time.Minute)
		rhythm.Earlier = append(rhythm.Earlier, Earlier{Label: "1 day earlier", Baseline: e.Baseline, Candidate: e.Candidate})
	}
	rng := rand.New(rand.NewPCG(1, 1))
	canary := Input{
		Comparison: schema.CanaryVsBaseline,
		Baseline:   Group{Points: normal.points(rng, deployAt, 30*time.Minute)},
		Candidate:  Group{Points: normal.points(rng, deployAt, 30*time.Minute)},
		Final:      true,
	}
	for _, c := range []struct {
		name string
		in   Input
	}{
		{"before_after_720x720", beforeAfter(1, normal, normal, 30*time.Minute)},
		{"before_after_720x24", beforeAfter(1, normal, normal, time.Minute)},
		{"canary_720x720", canary},
		{"bad_720x720", beforeAfter(2, normal, normal.with(func(l *load) { l.errRate, l.p99 = 0.02, 200 }), 30*time.Minute)},
		{"rhythm_720x720_2_earlier", rhythm},
		{"low_traffic", beforeAfter(9, normal.with(func(l *load) { l.instances, l.rate = 1, 0.05 }), normal.with(func(l *load) { l.instances, l.rate = 1, 0.05 }), 30*time.Minute)},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := DefaultPolicy()
			b.ReportAllocs()
			for b.Loop() {
				Judge(c.in, p)
			}
		})
	}
}

// BenchmarkHodgesLehmann compares the bracketing search with the naive
// median of all 518,400 pairs, the ceiling it replaces.
func BenchmarkHodgesLehmann(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	x, y := make([]float64, 720), make([]float64, 720)
	for i := range x {
		x[i], y[i] = 120*math.Exp(0.12*rng.NormFloat64()+0.1), 120*math.Exp(0.12*rng.NormFloat64())
	}
	slices.Sort(x)
	slices.Sort(y)
	var buf []float64
	b.Run("bracket", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, buf = hodgesLehmann(x, y, buf)
		}
	})
	b.Run("naive", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			naiveHL(x, y)
		}
	})
}
