package impact_test

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/processors/impact"
	"github.com/deploywatch/deploywatch/schema"
)

// The scenario suite: labelled deploys over realistic traffic, run through
// the Analyzer the way a live processor feeds it, scored per category.
//
//	go test -run TestScenarioSuite -v ./processors/impact/
//
// prints the table; DEPLOYWATCH_SCENARIO_REPORT=file also writes it there.

// scenarioEnv is the env of every scenario.
const scenarioEnv = "production"

// Targets of the suite.
const (
	minRecall   = 0.95
	maxFalseBad = 0.02
	// quickDelay is how soon after the first bad sample a clear regression
	// (3x errors or +50% p99 at 10 req/s or more) must be called bad.
	quickDelay = 60 * time.Second
	quickRate  = 10.0
	// minErrorsPerMinute and minRequestsPerSample bound where the 60 s
	// target is statistically reachable (see badChange).
	minErrorsPerMinute   = 5.0
	minRequestsPerSample = 50.0
)

// expectation is what a judged deploy (or service) should come to.
type expectation int

const (
	expectNotBad expectation = iota
	expectBad
	expectInconclusive
	// expectRegression: a service without a deploy of its own regresses;
	// a verdict without a deploy id must say so and name the suspect.
	expectRegression
)

func (e expectation) String() string {
	return [...]string{"not bad", "bad", "inconclusive", "bad, no deploy"}[e]
}

// subject is one service of a scenario, with its deploy if it has one.
type subject struct {
	service string
	gen     *generator
	started *schema.Deploy // nil: no deploy of its own
	done    *schema.Deploy
	expect  expectation
	// quick marks a regression the 60 s target applies to.
	quick bool
	// canary: the verdict that decides must compare canary with baseline.
	canary bool
	// overlaps names the service whose deploy the verdicts must list as
	// overlapping; suspect the one a regression verdict must name.
	overlaps, suspect string
	desc              string
}

type scenario struct {
	name, category string
	seed           uint64
	from, to       time.Time // the samples in (from, to]
	deps           map[string][]string
	subjects       []*subject
}

// outcome is how the Analyzer judged one subject.
type outcome struct {
	sc       *scenario
	sub      *subject
	final    *schema.Verdict // the first final verdict (an early bad one included)
	firstBad *schema.Verdict
	badFrom  time.Time // the first sample the regression touched
	delay    time.Duration
	// problems are what the Analyzer got wrong beyond the status: each
	// fails the case. notes explain a wrong status (a false alarm, a call
	// before the regression began); the rates count those.
	problems, notes []string
}

func (o *outcome) status() string {
	if o.sub.expect == expectRegression {
		if o.firstBad != nil {
			return string(schema.VerdictBad)
		}
		return "none"
	}
	if o.final == nil {
		return "none"
	}
	return string(o.final.Status)
}

// wrong reports whether the status is not the one expected.
func (o *outcome) wrong() bool {
	switch o.sub.expect {
	case expectBad, expectRegression:
		return o.status() != string(schema.VerdictBad)
	case expectInconclusive:
		return o.status() != string(schema.VerdictInconclusive)
	}
	return o.firstBad != nil
}

// runScenario feeds the scenario to a fresh Analyzer in event-time order,
// the way a live processor would see it: every 10 s the deploy events of the
// interval, then the samples of all instances, then Advance.
func runScenario(sc *scenario) []*outcome {
	a := impact.NewAnalyzer(impact.Config{
		Policies:     impact.Policies{Default: impact.DefaultPolicy()},
		EvalEvery:    sampleInterval,
		Horizon:      26 * time.Hour,
		Dependencies: sc.deps,
	})
	type event struct {
		at time.Time
		d  *schema.Deploy
	}
	var events []event
	for _, s := range sc.subjects {
		if s.started != nil {
			events = append(events, event{s.started.StartedAt.Time, s.started}, event{s.done.FinishedAt.Time, s.done})
		}
	}
	slices.SortStableFunc(events, func(x, y event) int { return x.at.Compare(y.at) })
	var (
		verdicts []schema.Verdict
		buf      []impact.Point
	)
	for t := sc.from.Add(sampleInterval); !t.After(sc.to); t = t.Add(sampleInterval) {
		for len(events) > 0 && !events[0].at.After(t) {
			d := *events[0].d
			a.Deploy(&d)
			events = events[1:]
		}
		for _, s := range sc.subjects {
			buf = s.gen.appendRound(buf[:0], t)
			for _, p := range buf {
				a.Observe(s.service, scenarioEnv, p)
			}
		}
		verdicts = append(verdicts, a.Advance()...)
	}
	var out []*outcome
	for _, s := range sc.subjects {
		out = append(out, judgeOutcome(sc, s, verdicts))
	}
	return out
}

func judgeOutcome(sc *scenario, s *subject, verdicts []schema.Verdict) *outcome {
	o := &outcome{sc: sc, sub: s, badFrom: s.gen.firstAffected}
	problem := func(format string, args ...any) { o.problems = append(o.problems, fmt.Sprintf(format, args...)) }
	note := func(format string, args ...any) { o.notes = append(o.notes, fmt.Sprintf(format, args...)) }
	ids := map[string]string{} // service -> deploy id
	for _, x := range sc.subjects {
		if x.started != nil {
			ids[x.service] = x.started.ID
		}
	}
	for i := range verdicts {
		v := &verdicts[i]
		if v.Service != s.service {
			continue
		}
		if v.DeployID == "" {
			if v.Status != schema.VerdictBad {
				continue
			}
			if s.expect != expectRegression {
				note("a regression verdict without a deploy at %s: %s", clock(v.EvaluatedAt.Time), v.Reason)
				if o.firstBad == nil {
					o.firstBad = v
				}
				continue
			}
			if o.badFrom.IsZero() || v.EvaluatedAt.Time.Before(o.badFrom) {
				note("a regression verdict at %s, before the regression began at %s: %s", clock(v.EvaluatedAt.Time), clock(o.badFrom), v.Reason)
				continue
			}
			if o.firstBad == nil {
				o.firstBad = v
				if !slices.ContainsFunc(v.Suspects, func(r schema.DeployRef) bool { return r.ID == ids[s.suspect] }) {
					problem("the regression verdict does not name %s's deploy among its suspects %v", s.suspect, refNames(v.Suspects))
				}
			}
			continue
		}
		if s.started == nil || v.DeployID != s.started.ID {
			problem("a verdict for deploy %q of %s, which this scenario never sent", v.DeployID, v.Service)
			continue
		}
		if o.final != nil {
			problem("a %s verdict at %s after the final one", v.Status, clock(v.EvaluatedAt.Time))
			continue
		}
		if !v.Final && v.Status != schema.VerdictPending {
			problem("an interim verdict at %s with status %s", clock(v.EvaluatedAt.Time), v.Status)
		}
		if v.Status == schema.VerdictBad && o.firstBad == nil {
			o.firstBad = v
		}
		if v.Final {
			o.final = v
		}
	}
	if o.firstBad != nil && !o.badFrom.IsZero() {
		o.delay = o.firstBad.EvaluatedAt.Time.Sub(o.badFrom)
	}
	if s.started != nil && o.final == nil {
		problem("no final verdict by %s (%s after the deploy finished)", clock(sc.to), sc.to.Sub(s.done.FinishedAt.Time))
	}
	decisive := o.firstBad
	if decisive == nil {
		decisive = o.final
	}
	if s.canary && decisive != nil && decisive.DeployID != "" && decisive.Comparison != schema.CanaryVsBaseline {
		problem("the canary was judged by %s, not %s", decisive.Comparison, schema.CanaryVsBaseline)
	}
	// An early verdict cannot know of a deploy that started after it.
	if other := startOf(sc, s.overlaps); s.overlaps != "" && o.final != nil && !other.After(o.final.EvaluatedAt.Time) &&
		!slices.ContainsFunc(o.final.Overlapping, func(r schema.DeployRef) bool { return r.ID == ids[s.overlaps] }) {
		problem("the final verdict (%s at %s) does not list %s's deploy (started %s; this one %s) as overlapping (it lists %v)",
			o.final.Comparison, clock(o.final.EvaluatedAt.Time), s.overlaps, clock(other), clock(s.started.StartedAt.Time), refNames(o.final.Overlapping))
	}
	return o
}

// startOf is when the named service's deploy started.
func startOf(sc *scenario, service string) time.Time {
	for _, s := range sc.subjects {
		if s.service == service && s.started != nil {
			return s.started.StartedAt.Time
		}
	}
	return time.Time{}
}

func refNames(refs []schema.DeployRef) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.Service+"@"+r.Version)
	}
	return out
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05") }

// ---- building the scenarios ----

// category is one kind of labelled case.
type category struct {
	name     string
	expected string
	full     int // cases in a full run; a quarter with -short
	build    func(b *builder, i int)
}

// builder makes one scenario from its seed.
type builder struct {
	sc  *scenario
	rng *rand.Rand
}

func (b *builder) uniform(lo, hi float64) float64 { return lo + (hi-lo)*b.rng.Float64() }

// logUniform spreads values evenly over orders of magnitude.
func (b *builder) logUniform(lo, hi float64) float64 {
	return math.Exp(b.uniform(math.Log(lo), math.Log(hi)))
}

// traffic is an ordinary service: 3-8 instances, a 2-4x daily rhythm,
// 0.2-1% errors, a median of 15-150 ms with a tail 2.5-6x the median.
func (b *builder) traffic() traffic {
	return traffic{
		Instances:    3 + b.rng.IntN(6),
		PeakToTrough: b.uniform(2, 4),
		Sharpness:    1,
		PeakAt:       time.Duration(b.uniform(11, 21) * float64(time.Hour)),
		ErrorRate:    b.logUniform(0.002, 0.01),
		P50:          b.logUniform(15, 150),
		Sigma:        b.uniform(0.4, 0.8),
		LoadLatency:  b.uniform(0.1, 0.3),
		LoadTail:     b.uniform(0.05, 0.2),
		Spread:       0.06,
		Spikes:       0.003,
		Blips:        0.0005,
	}
}

// deployTime is a random moment of the scenario's day, to the second.
func (b *builder) deployTime(day int) time.Time {
	return time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC).AddDate(0, 0, day).
		Add(time.Duration(b.rng.IntN(86400)) * time.Second)
}

// service adds a service whose total rate at the moment at is rate.
func (b *builder) service(name string, tr traffic, at time.Time, rate float64) *subject {
	tr.PeakRate = 1
	tr.PeakRate = rate / tr.rate(at)
	minor := 1 + b.rng.IntN(40)
	s := &subject{
		service: name,
		gen:     newGenerator(name, "v1."+strconv.Itoa(minor)+".0", tr, b.rng.Uint64()),
	}
	b.sc.subjects = append(b.sc.subjects, s)
	return s
}

// deploy rolls out a new version from start, finishing 60-120 s later
// (canary: one instance only, and it stays the only one), and widens the
// scenario to 35-40 min before the deploy and 35 min after it.
func (b *builder) deploy(s *subject, start time.Time, canary bool) time.Time {
	old := s.gen.pods[0].version
	minor, _ := strconv.Atoi(strings.Split(old, ".")[1])
	version := "v1." + strconv.Itoa(minor+1) + ".0"
	finish := start.Add(time.Duration(60+b.rng.IntN(61)) * time.Second)
	d := &schema.Deploy{
		Service:   s.service,
		Env:       scenarioEnv,
		Version:   version,
		Status:    schema.DeployStarted,
		StartedAt: schema.At(start),
		Strategy:  schema.StrategyRolling,
		Author:    "ci",
	}
	if canary {
		d.Strategy = schema.StrategyCanary
		s.gen.replace(0, finish, version)
		s.canary = true
	} else {
		s.gen.rollout(start, finish, version)
	}
	if canary || b.rng.IntN(2) == 0 { // not every CD system says what it replaced
		d.PreviousVersion = old
	}
	d.Normalize()
	done := *d
	done.Status = schema.DeploySucceeded
	done.FinishedAt = schema.At(finish)
	s.started, s.done = d, &done

	from := start.Add(-time.Duration(35*60+b.rng.IntN(5*60)) * time.Second).Truncate(sampleInterval)
	to := finish.Add(35 * time.Minute).Truncate(sampleInterval)
	if b.sc.from.IsZero() || from.Before(b.sc.from) {
		b.sc.from = from
	}
	if to.After(b.sc.to) {
		b.sc.to = to
	}
	return finish
}

// healthyChange is what an ordinary good release does: small shifts that
// are no one's regression.
func (b *builder) healthyChange(s *subject, at time.Time) {
	s.gen.apply(change{
		At: at, Version: s.started.Version,
		Errors: b.uniform(0.8, 1.2), P50: b.uniform(0.96, 1.04), P99: b.uniform(0.95, 1.06),
	})
}

// badChange is a clear regression: 3-5x the errors, or +50-100% p99 (p95
// up too, p50 barely).
func (b *builder) badChange(s *subject, at time.Time, version string, kind string, rate float64) {
	s.expect = expectBad
	switch kind {
	case "errors":
		f := b.uniform(3, 5)
		s.gen.apply(change{At: at, Version: version, Errors: f})
		s.desc = fmt.Sprintf("errors x%.1f: %s a minute before, %s after", f,
			fmtRate(rate*60*s.gen.tr.ErrorRate), fmtRate(rate*60*s.gen.tr.ErrorRate*f))
	case "latency":
		f := b.uniform(1.5, 2.0)
		s.gen.apply(change{At: at, Version: version, P50: 1 + (f-1)/10, P99: f})
		s.desc = fmt.Sprintf("p99 +%.0f%%", (f-1)*100)
	default:
		panic("unknown regression " + kind)
	}
	// The 60 s target holds where the evidence can be strong within a
	// minute: at 10 req/s or more, and for errors with at least 5 errors a
	// minute before the deploy (fewer cannot reach p < 0.001 on 3x within
	// 60 s), for p99 with at least 50 requests per sample (a p99 of fewer
	// is too coarse to show +50%). Slower calls of the rest are reported.
	s.quick = rate >= quickRate
	switch kind {
	case "errors":
		s.quick = s.quick && rate*60*s.gen.tr.ErrorRate >= minErrorsPerMinute
	case "latency":
		s.quick = s.quick && rate*float64(sampleInterval/time.Second)/float64(len(s.gen.pods)) >= minRequestsPerSample
	}
}

func describe(s *subject, rate float64, extra string) {
	tr := &s.gen.tr
	parts := []string{fmt.Sprintf("%s req/s on %d", fmtRate(rate), len(s.gen.pods)), fmt.Sprintf("%.2f%% errors", tr.ErrorRate*100)}
	if s.desc != "" {
		parts = append([]string{s.desc}, parts...)
	}
	if extra != "" {
		parts = append(parts, extra)
	}
	s.desc = strings.Join(parts, ", ")
}

func fmtRate(r float64) string {
	if r < 1 {
		return strconv.FormatFloat(r, 'f', 3, 64)
	}
	return strconv.FormatFloat(r, 'f', 0, 64)
}

var categories = []category{
	{name: "healthy", expected: "not bad", full: 30, build: func(b *builder, i int) {
		at := b.deployTime(i)
		rate := b.logUniform(1, 300)
		s := b.service("orders", b.traffic(), at, rate)
		finish := b.deploy(s, at, false)
		b.healthyChange(s, finish)
		describe(s, rate, "")
	}},
	{name: "error rate 3-5x", expected: "bad", full: 20, build: func(b *builder, i int) {
		at := b.deployTime(i)
		rate := b.logUniform(10, 300)
		s := b.service("orders", b.traffic(), at, rate)
		finish := b.deploy(s, at, false)
		b.badChange(s, finish, s.started.Version, "errors", rate)
		describe(s, rate, "")
	}},
	{name: "latency p99 +50-100%", expected: "bad", full: 20, build: func(b *builder, i int) {
		at := b.deployTime(i)
		rate := b.logUniform(10, 300)
		s := b.service("search", b.traffic(), at, rate)
		finish := b.deploy(s, at, false)
		b.badChange(s, finish, s.started.Version, "latency", rate)
		describe(s, rate, "")
	}},
	{name: "traffic drop to <40%", expected: "bad", full: 20, build: func(b *builder, i int) {
		at := b.deployTime(i)
		rate := b.logUniform(5, 300)
		s := b.service("feed", b.traffic(), at, rate)
		finish := b.deploy(s, at, false)
		f := b.uniform(0.1, 0.4)
		s.gen.apply(change{At: finish, Rate: f})
		s.expect = expectBad
		s.desc = fmt.Sprintf("traffic to %.0f%%", f*100)
		describe(s, rate, "")
	}},
	{name: "sparse errors (0 before)", expected: "bad", full: 20, build: func(b *builder, i int) {
		at := b.deployTime(i)
		rate := b.logUniform(3, 100)
		tr := b.traffic()
		tr.ErrorRate = 0
		s := b.service("billing", tr, at, rate)
		finish := b.deploy(s, at, false)
		f := b.uniform(0.02, 0.05)
		s.gen.apply(change{At: finish, Version: s.started.Version, ErrorAdd: f})
		s.expect = expectBad
		s.desc = fmt.Sprintf("0 -> %.1f%% errors", f*100)
		describe(s, rate, "")
	}},
	{name: "low traffic (0.02-0.1 req/s)", expected: "inconclusive", full: 20, build: func(b *builder, i int) {
		at := b.deployTime(i)
		rate := b.uniform(0.02, 0.1)
		tr := b.traffic()
		tr.Instances = 1 + b.rng.IntN(2)
		s := b.service("admin", tr, at, rate)
		finish := b.deploy(s, at, false)
		b.healthyChange(s, finish)
		s.expect = expectInconclusive
		describe(s, rate, "")
	}},
	{name: "healthy at the daily peak (26 h)", expected: "not bad", full: 16, build: func(b *builder, i int) {
		tr := b.traffic()
		// A sharp peak (a lunch or dinner rush) on a service that slows down
		// under load: p99 doubles from trough to peak.
		tr.PeakToTrough = 3
		tr.Sharpness = b.uniform(12, 24)
		tr.LoadLatency = b.uniform(0.5, 0.7)
		tr.LoadTail = b.uniform(0.3, 0.4)
		day := time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i)
		// Deploy on the steep ramp into the peak, so the rhythm lifts traffic
		// and latency across the deploy as it did the day before.
		at := day.Add(tr.PeakAt - time.Duration(b.uniform(60, 90)*float64(time.Minute))).Truncate(time.Second)
		rate := b.logUniform(20, 300)
		s := b.service("catalog", tr, at, rate)
		finish := b.deploy(s, at, false)
		b.healthyChange(s, finish)
		b.sc.from = at.Add(-26 * time.Hour).Truncate(sampleInterval)
		before, after := at.Add(-15*time.Minute), finish.Add(15*time.Minute)
		p50 := func(t time.Time) float64 { return 1 + tr.LoadLatency*tr.load(t) }
		p99 := func(t time.Time) float64 { return p50(t) * math.Exp(z99*tr.Sigma*tr.LoadTail*tr.load(t)) }
		describe(s, rate, fmt.Sprintf("rhythm across the deploy: traffic x%.2f, p50 x%.2f, p99 x%.2f",
			s.gen.tr.rate(after)/s.gen.tr.rate(before), p50(after)/p50(before), p99(after)/p99(before)))
	}},
	{name: "concurrent deploys", expected: "1 bad + 1 not bad", full: 16, build: func(b *builder, i int) {
		at := b.deployTime(i)
		atB := at.Add(time.Duration(b.rng.IntN(241)) * time.Second)
		rateA, rateB := b.logUniform(10, 300), b.logUniform(10, 300)
		sa := b.service("cart", b.traffic(), at, rateA)
		sb := b.service("pricing", b.traffic(), atB, rateB)
		finA := b.deploy(sa, at, false)
		finB := b.deploy(sb, atB, false)
		sa.overlaps, sb.overlaps = sb.service, sa.service
		kind := [...]string{"errors", "latency"}[b.rng.IntN(2)]
		if b.rng.IntN(2) == 0 {
			b.badChange(sa, finA, sa.started.Version, kind, rateA)
			b.healthyChange(sb, finB)
		} else {
			b.healthyChange(sa, finA)
			b.badChange(sb, finB, sb.started.Version, kind, rateB)
		}
		describe(sa, rateA, "")
		describe(sb, rateB, fmt.Sprintf("%s after cart", atB.Sub(at)))
	}},
	{name: "canary 1 of 4", expected: "bad or not bad", full: 24, build: func(b *builder, i int) {
		at := b.deployTime(i)
		rate := b.logUniform(20, 400)
		tr := b.traffic()
		tr.Instances = 4
		s := b.service("profile", tr, at, rate)
		finish := b.deploy(s, at, true)
		switch i % 4 {
		case 0, 1:
			b.healthyChange(s, finish)
		case 2:
			f := b.uniform(3, 4)
			s.gen.apply(change{At: finish, Version: s.started.Version, Errors: f})
			s.expect, s.quick = expectBad, rate/4 >= quickRate
			s.desc = fmt.Sprintf("canary errors x%.1f: %s a minute on the canary", f, fmtRate(rate/4*60*tr.ErrorRate*f))
		case 3:
			f := b.uniform(1.5, 1.8)
			s.gen.apply(change{At: finish, Version: s.started.Version, P50: 1 + (f-1)/10, P99: f})
			s.expect, s.quick, s.desc = expectBad, rate/4 >= quickRate, fmt.Sprintf("canary p99 +%.0f%%", (f-1)*100)
		}
		describe(s, rate, fmt.Sprintf("canary serves %s req/s", fmtRate(rate/4)))
	}},
	{name: "dependency regression", expected: "bad, no deploy; dep not bad", full: 16, build: func(b *builder, i int) {
		at := b.deployTime(i)
		ratePay, rateCheckout := b.logUniform(20, 300), b.logUniform(10, 300)
		pay := b.service("payments", b.traffic(), at, ratePay)
		checkout := b.service("checkout", b.traffic(), at, rateCheckout)
		finish := b.deploy(pay, at, false)
		b.healthyChange(pay, finish)
		b.sc.deps = map[string][]string{"checkout": {"payments"}}
		// checkout calls the new payments API and suffers; payments does not.
		b.badChange(checkout, finish, "", [...]string{"errors", "latency"}[i%2], rateCheckout)
		checkout.expect, checkout.suspect = expectRegression, pay.service
		checkout.quick = false
		describe(pay, ratePay, "")
		describe(checkout, rateCheckout, "")
	}},
	{name: "dependency deploy, no regression", expected: "no regression verdict; dep not bad", full: 16, build: func(b *builder, i int) {
		at := b.deployTime(i)
		ratePay, rateCheckout := b.logUniform(20, 300), b.logUniform(10, 300)
		pay := b.service("payments", b.traffic(), at, ratePay)
		checkout := b.service("checkout", b.traffic(), at, rateCheckout)
		finish := b.deploy(pay, at, false)
		b.healthyChange(pay, finish)
		b.sc.deps = map[string][]string{"checkout": {"payments"}}
		describe(pay, ratePay, "")
		describe(checkout, rateCheckout, "watched, unchanged")
	}},
}

// scenarios builds every case; seeds depend only on the category and the
// case number, so -short runs a prefix of the same cases.
func scenarios(short bool) []*scenario {
	var out []*scenario
	for ci, c := range categories {
		n := c.full
		if short {
			n = max(c.full/4, 4)
		}
		for i := range n {
			seed := uint64(ci+1)<<32 | uint64(i)
			sc := &scenario{name: fmt.Sprintf("%s/%02d", slug(c.name), i), category: c.name, seed: seed}
			c.build(&builder{sc: sc, rng: rand.New(rand.NewPCG(seed, 0xdeb10e))}, i)
			out = append(out, sc)
		}
	}
	return out
}

func slug(s string) string {
	f := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
	return strings.Join(f, "-")
}

// ---- the suite ----

func TestScenarioSuite(t *testing.T) {
	all := scenarios(testing.Short())
	results := make([][]*outcome, len(all))
	t.Run("cases", func(t *testing.T) {
		for i, sc := range all {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				results[i] = runScenario(sc)
				for _, o := range results[i] {
					t.Logf("%s", o.line())
					checkCase(t, o)
				}
			})
		}
	})

	var outs []*outcome
	for _, r := range results {
		outs = append(outs, r...)
	}
	if len(outs) == 0 {
		return // every case was filtered out by -run
	}
	rep := report(outs)
	t.Logf("\n%s", rep)
	if path := os.Getenv("DEPLOYWATCH_SCENARIO_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(rep), 0o644); err != nil {
			t.Errorf("cannot write the scenario report to %s: %s", path, err)
		}
	}

	var bad, called, notBad, falseBad int
	for _, o := range outs {
		switch o.sub.expect {
		case expectBad, expectRegression:
			bad++
			if !o.wrong() {
				called++
			}
		default:
			notBad++
			if o.firstBad != nil {
				falseBad++
			}
		}
	}
	if bad > 0 {
		if r := float64(called) / float64(bad); r < minRecall {
			t.Errorf("recall %.1f%% (%d of %d regressions called bad); want at least %.0f%%", r*100, called, bad, minRecall*100)
		}
	}
	if notBad > 0 {
		if r := float64(falseBad) / float64(notBad); r > maxFalseBad {
			t.Errorf("false bad verdicts %.1f%% (%d of %d good deploys); want at most %.0f%%", r*100, falseBad, notBad, maxFalseBad*100)
		}
	}
}

// checkCase asserts what must hold for every single case: a low-traffic
// deploy is never called healthy, a clear regression at 10 req/s or more is
// called bad within 60 s of its first sample, and the verdict carries the
// right comparison, overlaps and suspects.
func checkCase(t *testing.T, o *outcome) {
	t.Helper()
	if o.sub.expect == expectInconclusive && o.status() != string(schema.VerdictInconclusive) {
		t.Errorf("%s (%s): got %s, want inconclusive: %s", o.sub.service, o.sub.desc, o.status(), o.reason())
	}
	if o.sub.quick && o.firstBad != nil && o.delay > quickDelay {
		t.Errorf("%s (%s): called bad %s after the first bad sample; want within %s", o.sub.service, o.sub.desc, o.delay, quickDelay)
	}
	for _, p := range o.problems {
		t.Errorf("%s: %s", o.sub.service, p)
	}
}

func (o *outcome) reason() string {
	v := o.final
	if o.firstBad != nil {
		v = o.firstBad
	}
	if v == nil {
		return "no verdict"
	}
	return v.Reason
}

// line is one case's result, for -v and for the list of misjudged cases.
func (o *outcome) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] seed %#x: want %s, got %s", o.sc.name, o.sub.service, o.sc.seed, o.sub.expect, o.status())
	if o.firstBad != nil && !o.badFrom.IsZero() && (o.sub.expect == expectBad || o.sub.expect == expectRegression) {
		fmt.Fprintf(&b, " %s after the first bad sample", o.delay)
	}
	fmt.Fprintf(&b, " (%s)", o.sub.desc)
	v := o.firstBad
	if v == nil {
		v = o.final
	}
	if v != nil {
		at := v.EvaluatedAt.Time
		if o.sub.done != nil {
			d := at.Sub(o.sub.done.FinishedAt.Time)
			if d < 0 {
				fmt.Fprintf(&b, "\n    at finished_at-%s", -d)
			} else {
				fmt.Fprintf(&b, "\n    at finished_at+%s", d)
			}
		} else {
			fmt.Fprintf(&b, "\n    at %s", clock(at))
		}
		fmt.Fprintf(&b, " %s, score %d, early %t: %s", v.Comparison, v.Score, v.Early, v.Reason)
		for _, m := range v.Metrics {
			fmt.Fprintf(&b, "\n      %-13s %-6s base %s cand %s ratio %.3f p %.2g", m.Name, m.Class,
				fmtStats(m.Name, m.Baseline), fmtStats(m.Name, m.Candidate), m.Ratio, m.PValue)
			if m.Note != "" {
				fmt.Fprintf(&b, " (%s)", m.Note)
			}
		}
	}
	for _, n := range o.notes {
		fmt.Fprintf(&b, "\n    note: %s", n)
	}
	for _, p := range o.problems {
		fmt.Fprintf(&b, "\n    problem: %s", p)
	}
	return b.String()
}

func fmtStats(name string, s schema.Stats) string {
	if name == "error_rate" {
		return fmt.Sprintf("%.0f/%.0f=%.4f", s.Errors, s.Requests, s.Value)
	}
	return fmt.Sprintf("%.4g(n=%d)", s.Value, s.N)
}

// report renders the category table and the cases judged wrong.
func report(outs []*outcome) string {
	type row struct {
		cat, expected                string
		n, bad, healthy, marg, incon int
		none, wantBad, called, good  int
		falseBad                     int
		delays                       []time.Duration
	}
	rows := map[string]*row{}
	var order []string
	total := &row{cat: "**all**", expected: ""}
	for _, o := range outs {
		r := rows[o.sc.category]
		if r == nil {
			r = &row{cat: o.sc.category}
			for _, c := range categories {
				if c.name == o.sc.category {
					r.expected = c.expected
				}
			}
			rows[o.sc.category] = r
			order = append(order, o.sc.category)
		}
		for _, r := range []*row{r, total} {
			r.n++
			switch o.status() {
			case string(schema.VerdictBad):
				r.bad++
			case string(schema.VerdictHealthy):
				r.healthy++
			case string(schema.VerdictMarginal):
				r.marg++
			case string(schema.VerdictInconclusive):
				r.incon++
			default:
				r.none++
			}
			switch o.sub.expect {
			case expectBad, expectRegression:
				r.wantBad++
				if !o.wrong() {
					r.called++
					if o.firstBad != nil && !o.badFrom.IsZero() {
						r.delays = append(r.delays, o.delay)
					}
				}
			default:
				r.good++
				if o.firstBad != nil {
					r.falseBad++
				}
			}
		}
	}
	slices.SortStableFunc(order, func(x, y string) int {
		return cmp.Compare(slices.IndexFunc(categories, func(c category) bool { return c.name == x }),
			slices.IndexFunc(categories, func(c category) bool { return c.name == y }))
	})

	var b strings.Builder
	b.WriteString("| category | judged | expected | got bad | healthy | marginal | inconclusive | no verdict | recall / false bad | delay p50 / p90 / max |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range append(mapRows(order, rows), total) {
		rf := []string{}
		if r.wantBad > 0 {
			rf = append(rf, fmt.Sprintf("recall %s (%d/%d)", pct(r.called, r.wantBad), r.called, r.wantBad))
		}
		if r.good > 0 {
			rf = append(rf, fmt.Sprintf("false bad %s (%d/%d)", pct(r.falseBad, r.good), r.falseBad, r.good))
		}
		delay := "–"
		if len(r.delays) > 0 {
			slices.Sort(r.delays)
			delay = fmt.Sprintf("%s / %s / %s", durationQuantile(r.delays, 0.5), durationQuantile(r.delays, 0.9), r.delays[len(r.delays)-1])
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %d | %d | %d | %s | %s |\n",
			r.cat, r.n, r.expected, r.bad, r.healthy, r.marg, r.incon, r.none, strings.Join(rf, "; "), delay)
	}
	b.WriteString("\nJudged: deploys, and watched services without a deploy (a concurrent or dependency case judges two).\n" +
		"Got bad ... inconclusive: the final verdict (an early bad one included); for a watched service, bad if a regression verdict named it.\n" +
		"False bad: good deploys or services with any bad verdict. Delay: event time from the first sample of the regression to the verdict that called it bad.\n")

	var wrong, slow, meh []*outcome
	for _, o := range outs {
		switch {
		case o.wrong() || len(o.problems) > 0:
			wrong = append(wrong, o)
		case o.sub.quick && o.firstBad != nil && o.delay > quickDelay:
			slow = append(slow, o)
		case o.sub.expect == expectNotBad && o.sub.started != nil && o.status() != string(schema.VerdictHealthy):
			meh = append(meh, o)
		}
	}
	if len(wrong) > 0 {
		fmt.Fprintf(&b, "\nJudged wrong (%d):\n\n", len(wrong))
		for _, o := range wrong {
			b.WriteString(o.line() + "\n")
		}
	}
	if len(slow) > 0 {
		fmt.Fprintf(&b, "\nClear regressions at %.0f req/s or more called later than %s (%d):\n\n", quickRate, quickDelay, len(slow))
		for _, o := range slow {
			b.WriteString(o.line() + "\n")
		}
	}
	if len(meh) > 0 {
		fmt.Fprintf(&b, "\nGood deploys not called healthy (%d):\n\n", len(meh))
		for _, o := range meh {
			b.WriteString(o.line() + "\n")
		}
	}
	return b.String()
}

func mapRows[R any](order []string, rows map[string]R) []R {
	out := make([]R, 0, len(order))
	for _, k := range order {
		out = append(out, rows[k])
	}
	return out
}

func pct(k, n int) string { return strconv.FormatFloat(100*float64(k)/float64(n), 'f', 1, 64) + "%" }

// durationQuantile of sorted durations, nearest rank.
func durationQuantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// ---- the benchmark ----

// BenchmarkAnalyzer1000 follows 1,000 services of 4 instances, each with a
// deploy in flight, and feeds one 10-s round of samples per iteration. The
// deploys' ages are spread evenly over the after window, as they are in a
// steady stream of deploys, so every round costs what an average one does.
// The cores metric is the share of one core that keeping up with live event
// time takes (ns per round over 10 s); the target is below 0.5.
func BenchmarkAnalyzer1000(b *testing.B) {
	const (
		services = 1000
		pool     = 60  // distinct rounds of samples per service, jittered on replay
		history  = 360 // an hour of samples before the timed rounds
		span     = 30  // timed rounds before the analyses are rebuilt
	)
	rounds := make([][][]impact.Point, services) // service, round, instance
	names := make([]string, services)
	base := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for i := range services {
		names[i] = fmt.Sprintf("svc-%04d", i)
		bb := &builder{rng: rand.New(rand.NewPCG(uint64(i), 0xbe4c))}
		tr := bb.traffic()
		tr.Instances = 4
		tr.PeakToTrough = 1
		tr.PeakRate = bb.logUniform(1, 200)
		tr.Blips = 0 // a blip in the pool would come back every 10 minutes
		g := newGenerator(names[i], "v1", tr, uint64(i))
		rounds[i] = make([][]impact.Point, pool)
		for r := range pool {
			rounds[i][r] = g.round(base.Add(time.Duration(r+1) * sampleInterval))
		}
	}

	var (
		a        *impact.Analyzer
		now      time.Time
		builds   int
		finished = make([]time.Time, services)
		jit      = rand.New(rand.NewPCG(1, 2))
	)
	// sample is service i's instance samples of the interval ending at t,
	// labelled with the version running then.
	sample := func(dst []impact.Point, i int, t time.Time) []impact.Point {
		k := t.Unix() / int64(sampleInterval/time.Second)
		for _, p := range rounds[i][(k+int64(i))%pool] {
			p.Time, p.Version = t, "v2"
			if !t.After(finished[i].Add(-time.Minute)) {
				p.Version = "v1"
			}
			f := 1 + 0.02*(jit.Float64()-0.5) // no two rounds alike
			p.P50, p.P95, p.P99 = p.P50*f, p.P95*f, p.P99*f
			dst = append(dst, p)
		}
		return dst
	}
	var buf []impact.Point
	round := func() int {
		now = now.Add(sampleInterval)
		for i := range services {
			buf = sample(buf[:0], i, now)
			for _, p := range buf {
				a.Observe(names[i], scenarioEnv, p)
			}
		}
		return len(a.Advance())
	}
	// build starts an Analyzer the way a restarted processor does: an hour of
	// samples read back and every analysis restored where it stood, service
	// i's deploy having finished i%144 rounds (0-24 min) ago, so that all are
	// still in flight after the warm-up round and the timed ones.
	build := func() {
		a = impact.NewAnalyzer(impact.Config{Policies: impact.Policies{Default: impact.DefaultPolicy()}})
		now = base.Add(time.Duration(builds) * 2 * time.Hour)
		builds++
		for i := range services {
			finished[i] = now.Add(-time.Duration(i%144)*sampleInterval - 3*time.Second)
			var pts []impact.Point
			for r := history - 1; r >= 0; r-- {
				pts = sample(pts, i, now.Add(-time.Duration(r)*sampleInterval))
			}
			a.Load(names[i], scenarioEnv, pts)
			d := schema.Deploy{Service: names[i], Env: scenarioEnv, Version: "v2", PreviousVersion: "v1",
				Status: schema.DeploySucceeded, StartedAt: schema.At(finished[i].Add(-time.Minute)),
				FinishedAt: schema.At(finished[i])}
			d.Normalize()
			a.Restore(impact.State{Deploy: d, Next: now})
		}
		if n := round(); n != services { // one round to warm the caches
			b.Fatalf("%d verdicts in the first round; want one per service, %d", n, services)
		}
	}

	verdicts, left := 0, 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if left == 0 {
			b.StopTimer()
			build()
			left = span
			b.StartTimer()
		}
		verdicts += round()
		left--
	}
	b.StopTimer()
	// A false early verdict ends an analysis; too many and this measures
	// something else than 1,000 analyses in flight.
	if got := a.Open(); got < services*95/100 {
		b.Fatalf("%d analyses in flight at the end; want about %d", got, services)
	}
	perRound := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perRound, "ns/round")
	b.ReportMetric(perRound/float64(sampleInterval.Nanoseconds()), "cores")
	b.ReportMetric(float64(verdicts)/float64(b.N), "verdicts/round")
}
