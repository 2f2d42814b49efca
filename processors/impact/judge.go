package impact

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aclements/go-moremath/stats"
	"github.com/deploywatch/deploywatch/schema"
)

// Judge compares the candidate with the baseline metric by metric and turns
// the evidence into a verdict: status, score, reason, and one MetricVerdict
// per enabled metric in the order request_rate, error_rate, latency_p50,
// latency_p95, latency_p99. The caller fills in the id, the deploy, the
// service, the env, the versions and the evaluation time.
//
// Latency and request rate are compared sample by sample with the
// Mann-Whitney U test and a Hodges-Lehmann estimate of the shift; the error
// rate with an exact test for counts (the conditional binomial test of two
// Poisson rates, requests being the exposure). A metric whose data could not
// show a harmful change of its tolerance's size is nodata, never a silent
// pass. A recent_vs_earlier comparison, which watches a service all day,
// decides at EarlyAlpha throughout. Nothing in the verdict is NaN or
// infinite.
//
// Judge is safe for concurrent use and does not modify in.
func Judge(in Input, p Policy) schema.Verdict {
	j := judges.Get().(*judge)
	defer judges.Put(j)
	j.in, j.p = &in, &p
	j.total = in.Comparison != schema.CanaryVsBaseline
	j.alpha = p.Alpha
	if in.Comparison == schema.RecentVsEarlier {
		// A watched service is judged every minute, all day: each look
		// is final, so each needs the evidence of an early call.
		j.alpha = p.EarlyAlpha
	}
	v := j.run()
	j.in, j.p = nil, nil
	return v
}

var judges = sync.Pool{New: func() any { return new(judge) }}

// judge holds the scratch space of one Judge call, reused across calls.
type judge struct {
	in *Input
	p  *Policy
	// alpha is the significance level of this comparison's decisions.
	alpha float64
	// total makes the request rate the service's total per interval (the
	// sum over the points of one time) rather than per point.
	total        bool
	base, cand   obs
	ebase, ecand obs // an Earlier comparison's groups
	stamps       []stamp
	buf          []float64
	keys, tmp    []uint64
	// improved describes the metrics that changed beyond their tolerance in
	// the harmless direction; rhythm holds, for the metrics the rhythm guard
	// passed, what explains their change.
	improved [numMetrics]string
	rhythm   [numMetrics]string
}

// obs is one group's observations.
type obs struct {
	rate []float64    // requests per second per sample
	lat  [3][]float64 // p50, p95, p99 in ms
	// samples is the number of samples: points, or times when total.
	samples int
	// times is the number of distinct sample times: samples of the same
	// time share its conditions (a cold start, a slow dependency), so early
	// evidence is counted in times.
	times            int
	requests, errors float64
	sorted           [numMetrics]bool
}

type stamp struct {
	t    int64
	rate float64
}

// values returns the observations of metric i (not the error rate),
// sorted on first use: a metric that is disabled, or that the rhythm guard
// does not look at, costs no sort.
func (j *judge) values(o *obs, i int) []float64 {
	s := o.rate
	if i != metricRequestRate {
		s = o.lat[i-metricP50]
	}
	if !o.sorted[i] {
		j.keys, j.tmp = sortFloats(s, j.keys, j.tmp)
		o.sorted[i] = true
	}
	return s
}

func (j *judge) observe(o *obs, pts []Point) {
	o.rate = o.rate[:0]
	for k := range o.lat {
		o.lat[k] = o.lat[k][:0]
	}
	o.requests, o.errors = 0, 0
	j.stamps = j.stamps[:0]
	for i := range pts {
		pt := &pts[i]
		req := pt.Requests
		if !(req > 0) || math.IsInf(req, 1) {
			req = 0
		}
		errs := pt.Errors
		if !(errs > 0) {
			errs = 0
		}
		errs = min(errs, req)
		o.requests += req
		o.errors += errs
		// A sample that served nothing has no latency worth the name.
		if req > 0 {
			for k, q := range [3]float64{pt.P50, pt.P95, pt.P99} {
				if finite(q) {
					o.lat[k] = append(o.lat[k], q)
				}
			}
		}
		if pt.Interval <= 0 {
			continue
		}
		r := req / pt.Interval.Seconds()
		j.stamps = append(j.stamps, stamp{pt.Time.UnixNano(), r})
		if !j.total {
			o.rate = append(o.rate, r)
		}
	}
	cmpStamp := func(a, b stamp) int { return cmp.Compare(a.t, b.t) }
	if !slices.IsSortedFunc(j.stamps, cmpStamp) {
		slices.SortFunc(j.stamps, cmpStamp)
	}
	o.times = 0
	for k := 0; k < len(j.stamps); {
		t, sum := j.stamps[k].t, 0.0
		for ; k < len(j.stamps) && j.stamps[k].t == t; k++ {
			sum += j.stamps[k].rate
		}
		o.times++
		if j.total {
			o.rate = append(o.rate, sum)
		}
	}
	o.samples = len(o.rate)
	o.sorted = [numMetrics]bool{}
}

// sortFloats sorts s (no NaN) through integer keys ordered like the
// numbers, with a radix sort from 128 values on: its cost does not depend on
// the order of the data, where a comparison sort of a few hundred values
// costs several times more on fresh data than a benchmark that sorts the
// same array again shows. keys and tmp are scratch.
func sortFloats(s []float64, keys, tmp []uint64) ([]uint64, []uint64) {
	keys = keys[:0]
	for _, v := range s {
		b := math.Float64bits(v + 0) // + 0 turns -0 into 0
		keys = append(keys, b^(uint64(int64(b)>>63)|1<<63))
	}
	if len(keys) < 128 {
		slices.Sort(keys)
	} else {
		tmp = radixSort(keys, tmp)
	}
	for i, k := range keys {
		s[i] = math.Float64frombits(k ^ (^uint64(int64(k)>>63) | 1<<63))
	}
	return keys, tmp
}

// radixSort sorts keys a byte at a time from the lowest, skipping the bytes
// all keys share. tmp is scratch.
func radixSort(keys, tmp []uint64) []uint64 {
	var counts [8][256]uint32
	for _, k := range keys {
		for b := range 8 {
			counts[b][byte(k>>(8*b))]++
		}
	}
	tmp = slices.Grow(tmp[:0], len(keys))[:len(keys)]
	src, dst := keys, tmp
	n := uint32(len(keys))
	for b := range 8 {
		c := &counts[b]
		shift := uint(8 * b)
		if c[byte(src[0]>>shift)] == n {
			continue
		}
		var sum uint32
		for i, x := range c {
			c[i], sum = sum, sum+x
		}
		for _, k := range src {
			d := byte(k >> shift)
			dst[c[d]] = k
			c[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &keys[0] {
		copy(keys, src)
	}
	return tmp
}

// dirP holds the one-sided p-values of a comparison: that the candidate is
// higher, and that it is lower, than the baseline.
type dirP struct{ up, down float64 }

func (d dirP) toward(effect float64) float64 {
	if effect < 0 {
		return d.down
	}
	return d.up
}

func (j *judge) run() schema.Verdict {
	in, p := j.in, j.p
	v := schema.Verdict{
		Comparison: in.Comparison,
		Baseline:   in.Baseline.Window,
		Candidate:  in.Candidate.Window,
		Metrics:    make([]schema.MetricVerdict, 0, numMetrics),
	}
	j.improved, j.rhythm = [numMetrics]string{}, [numMetrics]string{}
	j.observe(&j.base, in.Baseline.Points)
	j.observe(&j.cand, in.Candidate.Points)
	flagged := false
	for i := range numMetrics {
		mp := p.Metrics.metric(i)
		if mp.Disabled {
			continue
		}
		mv, _, improved := j.compare(i, mp, &j.base, &j.cand)
		if improved {
			j.improved[i] = strings.TrimSuffix(mv.Note, harmless)
		}
		flagged = flagged || harmful(mv.Class)
		v.Metrics = append(v.Metrics, mv)
	}
	if flagged && in.Comparison == schema.BeforeVsAfter {
		j.guardRhythm(v.Metrics)
	}
	j.decide(&v)
	return v
}

func harmful(c schema.MetricClass) bool {
	return c == schema.MetricHigh || c == schema.MetricLow
}

func metricIndex(name string) int {
	for i, n := range metricNames {
		if n == name {
			return i
		}
	}
	return -1
}

// compare judges metric i of the candidate against the baseline.
func (j *judge) compare(i int, mp *MetricPolicy, b, c *obs) (mv schema.MetricVerdict, d dirP, improved bool) {
	mv = schema.MetricVerdict{
		Name:      metricNames[i],
		Class:     schema.MetricPass,
		Harm:      string(mp.Harm),
		Critical:  mp.Critical,
		Weight:    mp.Weight,
		Tolerance: mp.Tolerance,
		PValue:    1,
		Ratio:     1,
	}
	if i == metricErrorRate {
		d, improved = j.compareErrors(mp, b, c, &mv)
	} else {
		d, improved = j.compareShift(i, mp, b, c, &mv)
	}
	mv.PValue, mv.Shift, mv.Ratio, mv.Effect = finite0(mv.PValue), finite0(mv.Shift), finite0(mv.Ratio), finite0(mv.Effect)
	for _, st := range []*schema.Stats{&mv.Baseline, &mv.Candidate} {
		st.Value, st.Requests, st.Errors = finite0(st.Value), finite0(st.Requests), finite0(st.Errors)
	}
	return mv, d, improved
}

// classify applies the policy to a comparison: harmful (high or low) when the
// change is significant, beyond the tolerance and beyond MinDelta in the
// harmful direction; improved when the same holds in the harmless one.
func classify(mp *MetricPolicy, d dirP, effect, shift, alpha float64) (class schema.MetricClass, improved bool) {
	if mp.Harm == HarmBoth {
		alpha /= 2 // a two-sided test
	}
	up := d.up < alpha && effect > mp.Tolerance && shift > mp.MinDelta
	down := d.down < alpha && effect < -mp.Tolerance/(1+mp.Tolerance) && -shift > mp.MinDelta
	switch {
	case up && mp.Harm != HarmDecrease:
		return schema.MetricHigh, false
	case down && mp.Harm != HarmIncrease:
		return schema.MetricLow, false
	}
	return schema.MetricPass, up || down
}

// harmP is the p-value of the test for harm.
func harmP(h Harm, d dirP) float64 {
	switch h {
	case HarmIncrease:
		return d.up
	case HarmDecrease:
		return d.down
	}
	return min(1, 2*min(d.up, d.down))
}

// harmless ends the note of a metric that changed beyond its tolerance the
// other way.
const harmless = ": in the harmless direction"

// compareShift judges latency or request rate, sample by sample.
func (j *judge) compareShift(i int, mp *MetricPolicy, b, c *obs, mv *schema.MetricVerdict) (dirP, bool) {
	p := j.p
	x, y := j.values(c, i), j.values(b, i)
	mv.Test = "mann_whitney"
	mv.Baseline = schema.Stats{N: len(y), Value: medianOf(y)}
	mv.Candidate = schema.Stats{N: len(x), Value: medianOf(x)}
	if i == metricRequestRate {
		mv.Baseline.Requests, mv.Candidate.Requests = b.requests, c.requests
	}
	none := dirP{1, 1}
	switch {
	case len(y) < p.MinSamples:
		mv.Class = schema.MetricNoData
		mv.SamplesNeeded = max(0, p.MinSamples-len(x))
		mv.Note = thousands(len(y)) + " samples " + j.baseWord() + ", at least " + thousands(p.MinSamples) + " needed"
		return none, false
	case len(x) < p.MinSamples:
		mv.Class = schema.MetricNoData
		mv.SamplesNeeded = p.MinSamples - len(x)
		mv.Note = thousands(len(x)) + " samples, at least " + thousands(p.MinSamples) + " needed"
		return none, false
	case i == metricRequestRate && b.requests/float64(b.samples) < p.MinSampleRequests:
		mv.Class = schema.MetricNoData
		mv.Note = sig2(b.requests/float64(b.samples)) + " requests per sample " + j.baseWord() +
			", too few to compare rates sample by sample (at least " + sig2(p.MinSampleRequests) + " needed)"
		return none, false
	}
	d := mannWhitney(x, y)
	var shift float64
	shift, j.buf = hodgesLehmann(x, y, j.buf)
	den := mv.Baseline.Value
	if den <= 0 {
		den = meanOf(y)
	}
	if den > 0 {
		mv.Effect = shift / den
	}
	if mv.Baseline.Value > 0 {
		mv.Ratio = mv.Candidate.Value / mv.Baseline.Value
	} else {
		mv.Ratio = 1 + mv.Effect
	}
	mv.Shift = shift
	mv.PValue = harmP(mp.Harm, d)
	class, improved := classify(mp, d, mv.Effect, shift, j.alpha)
	mv.Class = class
	switch {
	case improved:
		mv.Note = j.change(i, mv, d.toward(mv.Effect)) + harmless
	case class == schema.MetricPass:
		sides := 1.0
		if mp.Harm == HarmBoth {
			sides = 2
		}
		if need := mwuNeeded(len(x), len(y), j.alpha/sides); need > 0 {
			mv.Class = schema.MetricNoData
			mv.SamplesNeeded = need
			mv.Note = thousands(len(x)) + " samples against " + thousands(len(y)) + " " + j.baseWord() +
				": too few for the test to reach p < " + strconv.FormatFloat(j.alpha, 'g', -1, 64) +
				", about " + roughly(need) + " more needed"
		}
	}
	return d, improved
}

// compareErrors judges the error rate with the exact conditional test of two
// Poisson rates: given the errors of both groups, the candidate's share is
// binomial with the candidate's share of the requests under no change.
func (j *judge) compareErrors(mp *MetricPolicy, b, c *obs, mv *schema.MetricVerdict) (dirP, bool) {
	nb, eb := math.Round(b.requests), math.Round(b.errors)
	nc, ec := math.Round(c.requests), math.Round(c.errors)
	mv.Test = "poisson_rate_ratio"
	mv.Baseline = schema.Stats{N: int(nb), Value: ratio0(eb, nb), Requests: nb, Errors: eb}
	mv.Candidate = schema.Stats{N: int(nc), Value: ratio0(ec, nc), Requests: nc, Errors: ec}
	none := dirP{1, 1}
	if nb == 0 {
		mv.Class = schema.MetricNoData
		mv.Note = "no requests " + j.baseWord()
		return none, false
	}
	rb, rc := eb/nb, ec/nc
	if nc == 0 {
		rc = 0
	}
	mv.Shift = rc - rb
	switch {
	case ec == 0 && eb == 0:
		mv.Ratio = 1
	case eb == 0: // continuity correction: half an error where there was none
		mv.Ratio = ((ec + 0.5) / nc) / (0.5 / nb)
	default:
		mv.Ratio = rc / rb
	}
	mv.Effect = mv.Ratio - 1
	d := none
	if nc > 0 {
		e, share := ec+eb, nc/(nc+nb)
		d = dirP{up: binomGE(ec, e, share), down: binomLE(ec, e, share)}
	}
	mv.PValue = harmP(mp.Harm, d)
	class, improved := classify(mp, d, mv.Effect, mv.Shift, j.alpha)
	mv.Class = class
	if improved {
		mv.Note = j.change(metricErrorRate, mv, d.toward(mv.Effect)) + harmless
	}
	if class != schema.MetricPass || improved {
		return d, improved
	}
	need := j.errorPower(mp, nb, eb, nc)
	if need.more == 0 {
		return d, false
	}
	mv.Class = schema.MetricNoData
	mv.SamplesNeeded = need.more
	tell := " to tell " + percent(need.from) + " from " + percent(need.to)
	if need.baseToo {
		mv.Note = thousands(nc) + " requests, and the " + thousands(nb) + " " + j.baseWord() + " are too few as well: about " +
			roughly(int(nc)+need.more) + " on each side needed" + tell
	} else {
		mv.Note = thousands(nc) + " requests, about " + roughly(need.more) + " more needed" + tell
	}
	return d, false
}

type errorNeed struct {
	more     int     // more candidate requests needed
	baseToo  bool    // the baseline needs as many as well
	from, to float64 // the rates to tell apart
}

// errorPower reports whether the requests suffice for a rise of the
// tolerance's size (and at least MinDelta) from the baseline rate, floored
// at ErrorRateFloor, to come out significant, and if not how many more
// candidate requests would.
func (j *judge) errorPower(mp *MetricPolicy, nb, eb, nc float64) errorNeed {
	p := j.p
	rb := max(eb/nb, p.ErrorRateFloor)
	var ra float64
	if mp.Harm == HarmDecrease {
		ra = max(0, min(rb/(1+mp.Tolerance), rb-mp.MinDelta))
	} else {
		ra = min(1, max(rb*(1+mp.Tolerance), rb+mp.MinDelta))
	}
	out := errorNeed{from: rb, to: ra}
	if ra == rb {
		return out
	}
	detects := func(n, base float64) bool {
		ec, ebx := math.Round(ra*n), math.Round(rb*base)
		if base == nb && eb/nb >= p.ErrorRateFloor {
			ebx = eb
		}
		e, share := ec+ebx, n/(n+base)
		var pv float64
		if ra > rb {
			pv = binomGE(ec, e, share)
		} else {
			pv = binomLE(ec, e, share)
		}
		if mp.Harm == HarmBoth {
			pv *= 2
		}
		return pv < j.alpha
	}
	if detects(nc, nb) {
		return out
	}
	if n, ok := smallestN(nc, func(n float64) bool { return detects(n, nb) }); ok {
		out.more = int(n - nc)
		return out
	}
	out.baseToo = true
	if n, ok := smallestN(nc, func(n float64) bool { return detects(n, max(nb, n)) }); ok {
		out.more = int(n - nc)
	} else {
		out.more = math.MaxInt32
	}
	out.more = max(out.more, 1)
	return out
}

// smallestN finds about the smallest n > from for which ok holds, assuming
// ok holds from some n on; false when not even a huge n will do.
func smallestN(from float64, ok func(float64) bool) (float64, bool) {
	const limit = 1e10
	lo, hi := from, max(2*from, 64)
	for !ok(hi) {
		if hi > limit {
			return 0, false
		}
		lo, hi = hi, 2*hi
	}
	for hi-lo > max(1, hi/200) {
		mid := math.Floor((lo + hi) / 2)
		if ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return math.Ceil(hi), true
}

// guardRhythm reclassifies a harmful change as a pass when the same change,
// at least about half as large and significant, happened at the same time
// of an earlier day or week: the service's rhythm, not the deploy.
func (j *judge) guardRhythm(ms []schema.MetricVerdict) {
	for _, e := range j.in.Earlier {
		j.observe(&j.ebase, e.Baseline.Points)
		j.observe(&j.ecand, e.Candidate.Points)
		for k := range ms {
			mv := &ms[k]
			if !harmful(mv.Class) {
				continue
			}
			i := metricIndex(mv.Name)
			em, d, _ := j.compare(i, j.p.Metrics.metric(i), &j.ebase, &j.ecand)
			if em.Class == schema.MetricNoData || math.Signbit(em.Effect) != math.Signbit(mv.Effect) ||
				math.Abs(em.Effect) < 0.5*math.Abs(mv.Effect) || d.toward(mv.Effect) >= j.alpha {
				continue
			}
			word := "rise"
			if mv.Effect < 0 {
				word = "fall"
			}
			kind := "daily"
			if strings.Contains(e.Label, "week") {
				kind = "weekly"
			}
			j.rhythm[i] = "the same " + word + " happened " + e.Label + " at this time (" + signedPct(em.Effect) +
				", " + pText(d.toward(mv.Effect)) + "): " + kind + " rhythm, not this deploy"
			mv.Class = schema.MetricPass
			mv.Note = j.change(i, mv, mv.PValue) + ", but " + j.rhythm[i]
		}
	}
}

// decide sets the score, the status and the reason from the metrics.
func (j *judge) decide(v *schema.Verdict) {
	in, p := j.in, j.p
	var passW, judgedW float64
	judged, bad := 0, 0
	for _, m := range v.Metrics {
		if m.Class == schema.MetricNoData {
			continue
		}
		judged++
		judgedW += m.Weight
		if m.Class == schema.MetricPass {
			passW += m.Weight
		} else {
			bad++
		}
	}
	switch {
	case judgedW > 0:
		v.Score = int(math.Round(100 * passW / judgedW))
	case judged > 0 && bad == 0:
		v.Score = 100
	}
	after := j.afterWords()

	if !in.Final {
		early := j.worst(v.Metrics, func(m *schema.MetricVerdict) bool {
			return m.Critical && m.PValue < p.EarlyAlpha && j.cand.times >= p.MinSamples
		})
		if early != nil {
			v.Status, v.Final, v.Early = schema.VerdictBad, true, true
			v.Reason = j.change(metricIndex(early.Name), early, early.PValue) + " " + after + ", called before the window ended"
			return
		}
		v.Status = schema.VerdictPending
		switch w := j.worst(v.Metrics, nil); {
		case w != nil && w.Critical && w.PValue < p.EarlyAlpha:
			v.Reason = "so far " + j.change(metricIndex(w.Name), w, w.PValue) + " " + after + "; waiting for " +
				thousands(p.MinSamples) + " sample times before calling it"
		case w != nil:
			v.Reason = "so far " + j.change(metricIndex(w.Name), w, w.PValue) + " " + after + "; not yet strong enough to call before the window ends"
		case j.missing(v.Metrics, true) != nil:
			v.Reason = "so far " + j.noDataWords(j.missing(v.Metrics, true), after)
		case judged == 0:
			v.Reason = "so far " + j.noDataWords(j.missing(v.Metrics, false), after)
		default:
			v.Reason = "so far " + j.calm(v.Metrics, after)
		}
		return
	}

	v.Final = true
	if w := j.worst(v.Metrics, func(m *schema.MetricVerdict) bool { return m.Critical }); w != nil {
		v.Status = schema.VerdictBad
		v.Reason = j.change(metricIndex(w.Name), w, w.PValue) + " " + after
		return
	}
	if m := j.missing(v.Metrics, true); m != nil {
		v.Status = schema.VerdictInconclusive
		v.Reason = j.noDataWords(m, after)
		return
	}
	if judged == 0 {
		v.Status = schema.VerdictInconclusive
		v.Reason = j.noDataWords(j.missing(v.Metrics, false), after)
		return
	}
	switch {
	case v.Score >= p.PassScore:
		v.Status = schema.VerdictHealthy
	case v.Score >= p.MarginalScore:
		v.Status = schema.VerdictMarginal
	default:
		v.Status = schema.VerdictBad
	}
	if w := j.worst(v.Metrics, nil); w != nil {
		v.Reason = j.change(metricIndex(w.Name), w, w.PValue) + " " + after + " (score " + strconv.Itoa(v.Score) + ")"
		return
	}
	v.Reason = j.calm(v.Metrics, after)
}

// calm is the reason when no metric is harmful: what the rhythm guard
// explained, else what improved, else the headline numbers.
func (j *judge) calm(ms []schema.MetricVerdict, after string) string {
	for k := range ms {
		if i := metricIndex(ms[k].Name); j.rhythm[i] != "" {
			return j.change(i, &ms[k], ms[k].PValue) + " " + after + ", but " + j.rhythm[i]
		}
	}
	for k := range ms {
		if i := metricIndex(ms[k].Name); j.improved[i] != "" {
			return "no metric got worse beyond its tolerance " + after + "; " + j.improved[i]
		}
	}
	return "no metric moved beyond its tolerance " + after + j.summary(ms)
}

// worst returns the harmful metric, among those ok accepts, that went
// furthest beyond its tolerance.
func (j *judge) worst(ms []schema.MetricVerdict, ok func(*schema.MetricVerdict) bool) *schema.MetricVerdict {
	var w *schema.MetricVerdict
	var sev float64
	for k := range ms {
		m := &ms[k]
		if !harmful(m.Class) || (ok != nil && !ok(m)) {
			continue
		}
		s := math.Abs(m.Effect) / max(m.Tolerance, 0.01)
		if m.Critical {
			s += 1e9 // critical metrics first
		}
		if w == nil || s > sev {
			w, sev = m, s
		}
	}
	return w
}

// missing returns the nodata metric to name, critical ones only if critical
// is set: the error rate if it is one of them, else the one that needs the
// most samples.
func (j *judge) missing(ms []schema.MetricVerdict, critical bool) *schema.MetricVerdict {
	var w *schema.MetricVerdict
	for k := range ms {
		m := &ms[k]
		if m.Class != schema.MetricNoData || (critical && !m.Critical) {
			continue
		}
		switch {
		case w == nil:
			w = m
		case w.Name == "error_rate": // its note is the most useful: requests needed
		case m.Name == "error_rate" || m.SamplesNeeded > w.SamplesNeeded:
			w = m
		}
	}
	return w
}

func (j *judge) noDataWords(m *schema.MetricVerdict, after string) string {
	if m == nil {
		return "no metric to judge " + after
	}
	i := metricIndex(m.Name)
	what := "too few samples to judge " + metricLabel(i)
	switch {
	case strings.Contains(m.Note, "requests"):
		what = "too little traffic to judge the " + metricLabel(i)
	case i == metricRequestRate:
		what = "too few samples to judge the " + metricLabel(i)
	}
	return what + " " + after + ": " + m.Note
}

// summary lists the headline metrics for a verdict where nothing moved.
func (j *judge) summary(ms []schema.MetricVerdict) string {
	var parts []string
	for _, name := range []string{"error_rate", "latency_p99", "request_rate", "latency_p95", "latency_p50"} {
		if len(parts) == 2 {
			break
		}
		for k := range ms {
			m := &ms[k]
			if m.Name == name && m.Class != schema.MetricNoData {
				i := metricIndex(name)
				parts = append(parts, metricLabel(i)+" "+metricValue(i, m.Baseline.Value)+" → "+metricValue(i, m.Candidate.Value))
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// change describes how metric i moved, with its numbers: "latency p99 rose
// from 120 ms to 310 ms (+158%, p < 0.001)".
func (j *judge) change(i int, m *schema.MetricVerdict, pv float64) string {
	verb := "rose"
	if m.Effect < 0 {
		verb = "fell"
	}
	s := metricLabel(i) + " " + verb + " from " + metricValue(i, m.Baseline.Value) + " to " + metricValue(i, m.Candidate.Value)
	if i != metricErrorRate {
		return s + " (" + signedPct(m.Effect) + ", " + pText(pv) + ")"
	}
	if m.Baseline.Errors == 0 && m.Candidate.Errors > 0 {
		s += " (" + thousands(m.Candidate.Errors) + " errors where there were none, " + pText(pv) + ")"
	} else {
		s += " (" + fmtRatio(m.Ratio) + ", " + pText(pv) + ")"
	}
	return s + " on " + thousands(m.Candidate.Requests) + " requests"
}

// afterWords names the candidate: "after v1.4.2", "after the deploy", for a
// service watched without a deploy "in the last 10 minutes", and after a
// rollback "since the rollback to v1.4.1".
func (j *judge) afterWords() string {
	if j.in.Comparison == schema.RecentVsEarlier {
		w := j.in.Candidate.Window
		if d := w.To.Time.Sub(w.From.Time); d > 0 {
			return "in the last " + spoken(d)
		}
		return "recently"
	}
	if j.in.Comparison == schema.RecoveryVsBaseline {
		if j.in.Version == "" {
			return "since the rollback"
		}
		return "since the rollback to " + j.in.Version
	}
	if j.in.Version == "" {
		return "after the deploy"
	}
	return "after " + j.in.Version
}

// baseWord says where the baseline comes from.
func (j *judge) baseWord() string {
	switch j.in.Comparison {
	case schema.CanaryVsBaseline:
		return "on the old version"
	case schema.RecentVsEarlier:
		return "in the window before"
	}
	return "before the deploy"
}

func metricLabel(i int) string {
	return [numMetrics]string{"request rate", "error rate", "latency p50", "latency p95", "latency p99"}[i]
}

// metricValue formats a metric's value in its unit.
func metricValue(i int, v float64) string {
	switch i {
	case metricRequestRate:
		return perSecond(v)
	case metricErrorRate:
		return percent(v)
	}
	return millis(v)
}

// --- statistics ---

// mannWhitney is the Mann-Whitney U test of sorted x (the candidate) against
// sorted y (the baseline): the one-sided p-values that x tends to be higher,
// and lower. It counts U in one merge of the sorted groups. Up to
// exactMWULimit pairs without ties the p-values come from the exact
// distribution of U, beyond with the normal approximation with tie and
// continuity corrections, the way stats.MannWhitneyUTest computes them;
// unlike that function it neither copies nor sorts, and it never takes the
// exact distribution with ties, which costs milliseconds at 25 samples a side.
func mannWhitney(x, y []float64) dirP {
	n1, n2 := len(x), len(y)
	var u, ties float64
	i, k := 0, 0
	for i < n1 {
		v := x[i]
		// y values below v: each a tie group of its own or with its equals.
		for k < n2 && y[k] < v {
			k0 := k
			for k++; k < n2 && y[k] == y[k0]; k++ {
			}
			if t := float64(k - k0); t > 1 {
				ties += t*t*t - t
			}
		}
		i0, k0 := i, k
		for i++; i < n1 && x[i] == v; i++ {
		}
		for k < n2 && y[k] == v {
			k++
		}
		cx, cy := float64(i-i0), float64(k-k0)
		u += cx * (float64(k0) + cy/2)
		if t := cx + cy; t > 1 {
			ties += t*t*t - t
		}
	}
	for k < n2 {
		k0 := k
		for k++; k < n2 && y[k] == y[k0]; k++ {
		}
		if t := float64(k - k0); t > 1 {
			ties += t*t*t - t
		}
	}
	if ties == 0 && n1*n2 <= exactMWULimit {
		dist := stats.UDist{N1: n1, N2: n2}
		return dirP{up: 1 - dist.CDF(u-1), down: dist.CDF(u)}
	}
	nn := float64(n1 + n2)
	mu := float64(n1) * float64(n2) / 2
	sigma := math.Sqrt(float64(n1) * float64(n2) / 12 * ((nn + 1) - ties/(nn*(nn-1))))
	if !(sigma > 0) {
		return dirP{1, 1}
	}
	zUp := (u - mu - 0.5) / sigma
	zDown := (u - mu + 0.5) / sigma
	return dirP{
		up:   min(1, math.Erfc(zUp/math.Sqrt2)/2),
		down: min(1, math.Erfc(-zDown/math.Sqrt2)/2),
	}
}

// exactMWULimit is the largest n1·n2 for which mannWhitney uses the exact
// distribution (tens of microseconds at most).
const exactMWULimit = 256

// mwuNeeded returns how many more candidate samples the Mann-Whitney test
// needs before its smallest possible p-value, 1/C(n1+n2, n1), is below
// alpha: 0 when it already is.
func mwuNeeded(n1, n2 int, alpha float64) int {
	target := -math.Log(alpha)
	ok := func(n int) bool { return lchoose(n+n2, n) > target }
	if ok(n1) {
		return 0
	}
	lo, hi := n1, max(2*n1, 8) // !ok(lo), ok(hi): C(n+n2, n) grows with n
	for !ok(hi) {
		if hi > 1<<30 {
			return 1 << 30
		}
		lo, hi = hi, 2*hi
	}
	for hi-lo > 1 {
		if mid := lo + (hi-lo)/2; ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi - n1
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// hlBatch is how many pairs hodgesLehmann sorts once it has narrowed the
// bracket around the median down to them.
const hlBatch = 128

// hodgesLehmann returns the median of x[i]-y[k] over all pairs, for sorted x
// and y, without forming the len(x)·len(y) pairs. It narrows a bracket
// (lo, hi] around the median by counting the pairs at or below a value, one
// O(len(x)+len(y)) pass a step: first two steps either side of the
// difference of the medians, about two standard errors away, then steps
// guessed by interpolation with every third one a bisection. Then it sorts
// the few pairs left in the bracket. The result is exact but where pairs
// differ by rounding only (within 1e-12 of the largest value). buf is
// scratch space, returned for reuse.
func hodgesLehmann(x, y, buf []float64) (float64, []float64) {
	n, m := len(x), len(y)
	total := n * m
	// The median is the mean of the pairs ranked kA and kB (1-based).
	kA, kB := (total+1)/2, total/2+1
	lo, hi := math.Nextafter(x[0]-y[m-1], math.Inf(-1)), x[n-1]-y[0]
	cLo, cHi := 0, total
	// The smallest pair above lo and the largest at or below hi: when they
	// are equal, every pair in the bracket has that value (ties), and when
	// they differ by rounding only, the median is between them: the result
	// is then within eps of the exact one.
	loNext, hiPair := x[0]-y[m-1], hi
	eps := 1e-12 * max(math.Abs(x[0]), math.Abs(x[n-1]), math.Abs(y[0]), math.Abs(y[m-1]))
	result, done := hiPair, hiPair-loNext <= eps
	// try narrows the bracket to mid, or finds the median when mid splits
	// the two middle pairs (kA == countLE < kB).
	try := func(mid float64) {
		if done || !(mid > lo && mid < hi) {
			return
		}
		c, below, above := countAround(x, y, mid)
		switch {
		case c >= kB:
			hi, cHi, hiPair = mid, c, below
		case c < kA:
			lo, cLo, loNext = mid, c, above
		default:
			result, done = below/2+above/2, true
			return
		}
		if hiPair-loNext <= eps {
			result, done = loNext/2+hiPair/2, true
		}
	}
	guess := medianOf(x) - medianOf(y)
	if w := 2 * hlStdErr(x, y); w > 0 {
		for s := 1.0; s <= 1024 && !done; s *= 8 {
			if l := guess - s*w; l > lo {
				try(l)
			}
			if lo >= guess-s*w {
				break
			}
		}
		for s := 1.0; s <= 1024 && !done; s *= 8 {
			if h := guess + s*w; h < hi {
				try(h)
			}
			if hi <= guess+s*w {
				break
			}
		}
	}
	for iter := 0; !done && cHi-cLo > hlBatch; iter++ {
		mid := lo + (hi-lo)/2
		if iter%3 != 2 {
			// Aim a little inside the side of the bracket that is further off.
			target := float64(kB + hlBatch/4)
			if kA-cLo > cHi-kB {
				target = float64(kA - hlBatch/4)
			}
			if t := lo + (hi-lo)*(target-float64(cLo))/float64(cHi-cLo); t > lo && t < hi {
				mid = t
			}
		}
		if !(mid > lo && mid < hi) {
			return hi, buf // no number between: every pair in the bracket is hi
		}
		try(mid)
	}
	if done {
		return result, buf
	}
	buf = buf[:0]
	iLo, iHi := 0, 0
	for _, xv := range x {
		for iHi < m && xv-y[iHi] > hi {
			iHi++
		}
		for iLo < m && xv-y[iLo] > lo {
			iLo++
		}
		for k := iHi; k < iLo; k++ {
			buf = append(buf, xv-y[k])
		}
	}
	slices.Sort(buf)
	return buf[kA-cLo-1]/2 + buf[kB-cLo-1]/2, buf
}

// hlStdErr is a rough standard error of the Hodges-Lehmann shift from the
// groups' interquartile ranges, to start the search near it.
func hlStdErr(x, y []float64) float64 {
	iqr := func(s []float64) float64 { return s[len(s)*3/4] - s[len(s)/4] }
	sigma := (iqr(x) + iqr(y)) / 2 / 1.35
	return sigma * math.Sqrt(1/float64(len(x))+1/float64(len(y)))
}

// countAround counts the pairs with x[i]-y[k] <= d and finds the largest
// pair at or below d and the smallest above it, in one pass. For each x the
// pairs at or below d are those from the first y with x-y <= d on, and that
// first y moves only right as x grows.
func countAround(x, y []float64, d float64) (c int, below, above float64) {
	below, above = math.Inf(-1), math.Inf(1)
	m, k := len(y), 0
	for _, xv := range x {
		for k < m && xv-y[k] > d {
			k++
		}
		c += m - k
		if k < m && xv-y[k] > below {
			below = xv - y[k]
		}
		if k > 0 && xv-y[k-1] < above {
			above = xv - y[k-1]
		}
	}
	return c, below, above
}

// binomGE returns P(X >= k) for X ~ Binomial(n, p), k and n whole numbers.
// It sums the probabilities from k away from the mean in log space, which
// stays exact where a continued fraction fails to converge (errors by the
// hundred thousand).
func binomGE(k, n, p float64) float64 {
	switch {
	case k <= 0:
		return 1
	case k > n || p <= 0:
		return 0
	case p >= 1:
		return 1
	case k > n*p:
		return binomSum(k, n, p, 1)
	}
	return max(0, 1-binomLE(k-1, n, p))
}

// binomLE returns P(X <= k) for X ~ Binomial(n, p).
func binomLE(k, n, p float64) float64 {
	switch {
	case k < 0:
		return 0
	case k >= n || p <= 0:
		return 1
	case p >= 1:
		return 0
	case k < n*p:
		return binomSum(k, n, p, -1)
	}
	return max(0, 1-binomGE(k+1, n, p))
}

// binomSum adds the binomial probabilities from k on in direction dir (+1
// up, -1 down), away from the mode, where they only shrink.
func binomSum(k, n, p float64, dir int) float64 {
	q := 1 - p
	lgn, _ := math.Lgamma(n + 1)
	lgk, _ := math.Lgamma(k + 1)
	lgnk, _ := math.Lgamma(n - k + 1)
	term := math.Exp(lgn - lgk - lgnk + k*math.Log(p) + (n-k)*math.Log1p(-p))
	sum := term
	for x := k; term > sum*1e-17; {
		if dir > 0 {
			if x >= n {
				break
			}
			term *= (n - x) / (x + 1) * p / q
			x++
		} else {
			if x <= 0 {
				break
			}
			term *= x / (n - x + 1) * q / p
			x--
		}
		sum += term
	}
	return min(1, sum)
}

func medianOf(s []float64) float64 {
	n := len(s)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return s[n/2]
	}
	return s[n/2-1]/2 + s[n/2]/2
}

func meanOf(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	var sum float64
	for _, v := range s {
		sum += v
	}
	return sum / float64(len(s))
}

func ratio0(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// finite0 keeps NaN and infinities out of verdicts, which are JSON.
func finite0(v float64) float64 {
	if finite(v) {
		return v
	}
	return 0
}

// --- numbers for people ---

// thousands formats a whole number with thousands separators: 1,840.
func thousands[T int | float64](v T) string {
	f := math.Round(float64(v))
	if !finite(f) || math.Abs(f) >= 1e18 {
		return strconv.FormatFloat(float64(v), 'g', 3, 64)
	}
	s := strconv.FormatInt(int64(f), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// roughly rounds a count to two significant digits: about 1,200.
func roughly(n int) string {
	if n < 100 {
		return thousands(n)
	}
	scale := math.Pow(10, math.Floor(math.Log10(float64(n)))-1)
	return thousands(math.Round(float64(n)/scale) * scale)
}

// sig2 formats v with two significant digits and no exponent: 0.05, 0.0042, 12.
func sig2(v float64) string {
	if v == 0 || !finite(v) {
		return "0"
	}
	prec := max(0, 1-int(math.Floor(math.Log10(math.Abs(v)))))
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func millis(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return thousands(v) + " ms"
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
}

func perSecond(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return thousands(v) + "/s"
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
	}
	return sig2(v) + "/s"
}

// percent formats a fraction as a percentage: 0.021 is 2.1%.
func percent(f float64) string {
	v := 100 * f
	if v == 0 {
		return "0%"
	}
	if math.Abs(v) >= 0.1 {
		return strconv.FormatFloat(v, 'f', 1, 64) + "%"
	}
	return sig2(v) + "%"
}

// signedPct formats a relative change: +158%, -7.5%.
func signedPct(effect float64) string {
	v := 100 * effect
	prec := 1
	if math.Abs(v) >= 10 {
		prec = 0
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if s == "-0" || s == "-0.0" {
		s = s[1:]
	}
	if !strings.HasPrefix(s, "-") {
		s = "+" + s
	}
	return s + "%"
}

// fmtRatio formats a ratio: 5.2x, 0.19x, 2,003x.
func fmtRatio(r float64) string {
	switch {
	case r >= 100:
		return thousands(r) + "x"
	case r >= 10:
		return strconv.FormatFloat(r, 'f', 0, 64) + "x"
	case r >= 1:
		return strconv.FormatFloat(r, 'f', 1, 64) + "x"
	}
	return sig2(r) + "x"
}

// pText formats a p-value: p < 0.001, p = 0.004, p = 0.21.
func pText(p float64) string {
	switch {
	case p < 0.001:
		return "p < 0.001"
	case p < 0.01:
		return "p = " + strconv.FormatFloat(p, 'f', 3, 64)
	}
	return "p = " + strconv.FormatFloat(p, 'f', 2, 64)
}

// spoken formats a window for a sentence: 10 minutes, 1 hour, 90 seconds.
func spoken(d time.Duration) string {
	unit := func(n int64, word string) string {
		if n == 1 {
			return "1 " + word
		}
		return strconv.FormatInt(n, 10) + " " + word + "s"
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	}
	return unit(int64(d.Round(time.Second)/time.Second), "second")
}
