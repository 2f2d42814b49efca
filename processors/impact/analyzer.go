package impact

import (
	"cmp"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// History gives the points of a service in (from, to] that are no longer, or
// not yet, in memory: after a restart, for a deploy that arrives late, and for
// the same windows a day and a week earlier. The processors package reads them
// from ClickHouse.
type History interface {
	Points(service, env string, from, to time.Time) ([]Point, error)
}

// Shard splits the work across processor replicas by service: replica Index
// of Count analyses the services whose name hashes to Index.
type Shard struct {
	Index, Count int
}

// Owns reports whether this shard analyses the service.
func (s Shard) Owns(service string) bool {
	if s.Count <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(service))
	return int(h.Sum32()%uint32(s.Count)) == s.Index
}

// Config tunes the Analyzer.
type Config struct {
	Policies Policies
	// EvalEvery is the event-time step between two evaluations of an analysis (default 10s).
	EvalEvery time.Duration
	// Lateness is how far behind the service's watermark a sample may arrive
	// and still count (default EvalEvery). An evaluation at t waits until the
	// watermark passes t+Lateness; later samples are dropped, so a replay sees
	// exactly what the live run saw.
	Lateness time.Duration
	// Horizon is how long samples stay in memory behind the watermark (default
	// the longest before and after windows plus one hour).
	Horizon time.Duration
	// Dependencies names, per service, the services it calls. A service with
	// dependencies is watched for regressions without a deploy of its own, and
	// their recent deploys are named as suspects.
	Dependencies map[string][]string
	// WatchEvery is the event-time step between two regression checks of a
	// watched service (default 1m); WatchRecent the minutes judged against the
	// ones before them (default 10m).
	WatchEvery  time.Duration
	WatchRecent time.Duration
	// NoDataGrace ends an analysis as inconclusive once the newest sample of
	// any service is this far past its window and its own service sent none
	// (default 10m).
	NoDataGrace time.Duration
	History     History
	Shard       Shard
}

func (c *Config) defaults() {
	if c.EvalEvery <= 0 {
		c.EvalEvery = 10 * time.Second
	}
	if c.Lateness <= 0 {
		c.Lateness = c.EvalEvery
	}
	if c.Horizon <= 0 {
		longest := c.Policies.Default.BeforeWindow + c.Policies.Default.AfterWindow
		for _, p := range c.Policies.Services {
			longest = max(longest, p.BeforeWindow+p.AfterWindow)
		}
		c.Horizon = longest + time.Hour
	}
	if c.WatchEvery <= 0 {
		c.WatchEvery = time.Minute
	}
	if c.WatchRecent <= 0 {
		c.WatchRecent = 10 * time.Minute
	}
	if c.NoDataGrace <= 0 {
		c.NoDataGrace = 10 * time.Minute
	}
}

// Analyzer follows every deploy in event time and says, every EvalEvery, how
// it is going. It is not safe for concurrent use: one goroutine feeds it.
type Analyzer struct {
	cfg    Config
	series map[seriesKey]*series
	byID   map[string]*analysis
	// recent holds the deploys of all services, newest last, for overlaps and suspects.
	recent []*analysis
	// watermark is the newest sample time of any service.
	watermark time.Time
	// Late counts samples dropped because they came after their evaluation.
	Late int
}

type seriesKey struct{ service, env string }

func (k seriesKey) less(o seriesKey) int {
	return cmp.Or(cmp.Compare(k.service, o.service), cmp.Compare(k.env, o.env))
}

// series is the recent samples of one service in one env, by time.
type series struct {
	key       seriesKey
	points    []Point
	watermark time.Time
	open      []*analysis
	// ends are the analysis windows' ends of this series' deploys, to keep a
	// later deploy's baseline clear of an earlier one's effect.
	deploys    []*analysis
	nextWatch  time.Time
	regressing bool
	intern     map[string]string
}

// analysis is one deploy being followed.
type analysis struct {
	deploy schema.Deploy
	next   time.Time // the next evaluation
	done   bool
	dirty  bool // changed since Changed last saw it
	// bad is set by a bad final verdict; recovering while the samples after
	// its rollback are judged against the baseline; recovered once they passed.
	bad, recovering, recovered bool
	rolledBack                 time.Time
	earlier                    map[time.Duration][]Point // history cache by shift
	// baseline caches the before window's points once it is complete.
	baseline     []Point
	baselineWin  schema.Window
	baselineKept bool
}

// NewAnalyzer returns an Analyzer with no state.
func NewAnalyzer(cfg Config) *Analyzer {
	if cfg.Policies.Default.AfterWindow == 0 {
		cfg.Policies.Default = DefaultPolicy()
	}
	cfg.defaults()
	return &Analyzer{cfg: cfg, series: map[seriesKey]*series{}, byID: map[string]*analysis{}}
}

func (a *Analyzer) seriesOf(service, env string) *series {
	k := seriesKey{service, env}
	s := a.series[k]
	if s == nil {
		s = &series{key: k, intern: map[string]string{}}
		a.series[k] = s
	}
	return s
}

// Observe adds one sample. A sample already seen (same time, version and
// instance) replaces the earlier copy, so redeliveries change nothing.
func (a *Analyzer) Observe(service, env string, p Point) {
	if !a.cfg.Shard.Owns(service) {
		return
	}
	s := a.seriesOf(service, env)
	if !s.watermark.IsZero() && !p.Time.After(s.watermark.Add(-a.cfg.Lateness)) {
		a.Late++
		return
	}
	a.add(s, p)
}

// add keeps p in s and moves the watermarks.
func (a *Analyzer) add(s *series, p Point) {
	p.Version = s.interned(p.Version)
	p.Instance = s.interned(p.Instance)
	s.insert(p)
	if p.Time.After(s.watermark) {
		s.watermark = p.Time
	}
	if p.Time.After(a.watermark) {
		a.watermark = p.Time
	}
}

// Metrics adds every sample of a batch.
func (a *Analyzer) Metrics(b *schema.MetricsBatch) {
	PointsOf(b, a.Observe)
}

func (s *series) interned(v string) string {
	if v == "" {
		return ""
	}
	if got, ok := s.intern[v]; ok {
		return got
	}
	if len(s.intern) > 10_000 { // a runaway label must not grow memory forever
		clear(s.intern)
	}
	s.intern[v] = v
	return v
}

// insert keeps points sorted by time; samples mostly arrive in order, so the
// search starts from the end.
func (s *series) insert(p Point) {
	i := len(s.points)
	for i > 0 && s.points[i-1].Time.After(p.Time) {
		i--
	}
	for j := i - 1; j >= 0 && s.points[j].Time.Equal(p.Time); j-- {
		if s.points[j].Version == p.Version && s.points[j].Instance == p.Instance {
			s.points[j] = p
			return
		}
	}
	s.points = slices.Insert(s.points, i, p)
}

// between returns the points in (from, to], sharing the series' memory.
func (s *series) between(from, to time.Time) []Point {
	lo, _ := slices.BinarySearchFunc(s.points, from, func(p Point, t time.Time) int {
		if p.Time.After(t) {
			return 1
		}
		return -1
	})
	hi, _ := slices.BinarySearchFunc(s.points, to, func(p Point, t time.Time) int {
		if p.Time.After(t) {
			return 1
		}
		return -1
	})
	return s.points[lo:hi]
}

// Deploy adds or updates a deploy from any of its status events.
func (a *Analyzer) Deploy(d *schema.Deploy) {
	if d.ID == "" || !a.cfg.Shard.Owns(d.Service) {
		return
	}
	an := a.byID[d.ID]
	if an == nil {
		an = &analysis{deploy: *d}
		a.byID[d.ID] = an
		s := a.seriesOf(d.Service, d.Env)
		s.open = append(s.open, an)
		s.deploys = append(s.deploys, an)
		a.recent = append(a.recent, an)
	} else if an.done {
		if d.Status == schema.DeployRolledBack && an.bad && !an.recovered && !d.FinishedAt.IsZero() {
			a.startRecovery(an, d.FinishedAt.Time)
		}
		return
	}
	an.dirty = true
	dep := &an.deploy
	if !d.StartedAt.IsZero() {
		dep.StartedAt = d.StartedAt
	}
	if d.Status == schema.DeployRolledBack {
		an.rolledBack = d.FinishedAt.Time
		return
	}
	if d.Status != schema.DeployStarted && !d.FinishedAt.IsZero() {
		dep.FinishedAt = d.FinishedAt
	}
	if rankOf(d.Status) >= rankOf(dep.Status) {
		dep.Status = d.Status
	}
	if d.PreviousVersion != "" {
		dep.PreviousVersion = d.PreviousVersion
	}
	if d.Strategy != "" {
		dep.Strategy = d.Strategy
	}
}

func rankOf(s schema.DeployStatus) int {
	switch s {
	case schema.DeployStarted:
		return 1
	case schema.DeploySucceeded, schema.DeployFailed:
		return 2
	case schema.DeployRolledBack:
		return 3
	}
	return 0
}

// start is when the deploy began changing the service.
func (an *analysis) start() time.Time {
	if !an.deploy.StartedAt.IsZero() {
		return an.deploy.StartedAt.Time
	}
	return an.deploy.FinishedAt.Time
}

// end is when its after window closes, zero while the deploy is unfinished.
func (an *analysis) end(p Policy) time.Time {
	if an.deploy.FinishedAt.IsZero() {
		return time.Time{}
	}
	return an.deploy.FinishedAt.Time.Add(p.AfterWindow)
}

// Open is the number of analyses in flight.
func (a *Analyzer) Open() int {
	n := 0
	for _, s := range a.series {
		n += len(s.open)
	}
	return n
}

// Advance evaluates every analysis whose next evaluation the watermarks have
// passed and returns the verdicts, in event-time order.
func (a *Analyzer) Advance() []schema.Verdict {
	keys := make([]seriesKey, 0, len(a.series))
	for k := range a.series {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, seriesKey.less)
	var out []schema.Verdict
	for _, k := range keys {
		s := a.series[k]
		out = a.advanceSeries(s, out)
		out = a.watch(s, out)
		a.trim(s)
	}
	a.trimRecent()
	slices.SortStableFunc(out, func(x, y schema.Verdict) int {
		return x.EvaluatedAt.Time.Compare(y.EvaluatedAt.Time)
	})
	return out
}

func (a *Analyzer) advanceSeries(s *series, out []schema.Verdict) []schema.Verdict {
	ready := s.watermark.Add(-a.cfg.Lateness)
	kept := s.open[:0]
	for _, an := range s.open {
		p := a.cfg.Policies.For(s.key.service)
		for !an.done {
			if an.next.IsZero() {
				an.next = an.start().Truncate(a.cfg.EvalEvery).Add(a.cfg.EvalEvery)
			}
			t := an.next
			if t.After(ready) {
				if v, ok := a.starved(s, an, p); ok {
					out = append(out, v)
				}
				break
			}
			an.next = t.Add(a.cfg.EvalEvery)
			an.dirty = true
			if v, ok := a.evaluate(s, an, p, t); ok {
				out = append(out, v)
			}
		}
		if !an.done {
			kept = append(kept, an)
		}
	}
	clear(s.open[len(kept):])
	s.open = kept
	return out
}

// starved ends an analysis whose service sent nothing while the rest of the
// fleet moved well past its window: without samples there is no verdict, and
// saying so beats waiting forever.
func (a *Analyzer) starved(s *series, an *analysis, p Policy) (schema.Verdict, bool) {
	end := an.end(p)
	if end.IsZero() {
		end = an.start().Add(p.AfterWindow)
	}
	if !a.watermark.After(end.Add(a.cfg.NoDataGrace)) || s.watermark.After(end) {
		return schema.Verdict{}, false
	}
	an.done, an.dirty = true, true
	v := a.verdictFor(an, schema.Verdict{
		Status:     schema.VerdictInconclusive,
		Final:      true,
		Reason:     "no samples from " + s.key.service + " in " + s.key.env + " after the deploy; send metrics for it to get a verdict",
		Comparison: schema.BeforeVsAfter,
		Metrics:    []schema.MetricVerdict{},
	}, end)
	return v, true
}

// evaluate judges the analysis at event time t.
func (a *Analyzer) evaluate(s *series, an *analysis, p Policy, t time.Time) (schema.Verdict, bool) {
	if an.recovering {
		return a.evaluateRecovery(s, an, p, t)
	}
	in, ok := a.canaryInput(s, an, t)
	if !ok {
		in, ok = a.beforeAfterInput(s, an, p, t)
	}
	rolledBack := !an.rolledBack.IsZero() && !t.Before(an.rolledBack)
	if !ok {
		if rolledBack || (an.deploy.FinishedAt.IsZero() && t.After(an.start().Add(p.AfterWindow))) {
			an.done = true
			reason := "the deploy did not finish within " + p.AfterWindow.String() + " and no samples of both versions ran side by side"
			if rolledBack {
				reason = "the deploy was rolled back before there was anything to compare"
			}
			return a.verdictFor(an, schema.Verdict{
				Status: schema.VerdictInconclusive, Final: true, Reason: reason,
				Comparison: schema.BeforeVsAfter, Metrics: []schema.MetricVerdict{},
			}, t), true
		}
		return schema.Verdict{}, false
	}
	in.Version = an.deploy.Version
	in.Final = in.Final || rolledBack
	v := Judge(in, p)
	if in.Comparison == schema.BeforeVsAfter && flagged(v) {
		if earlier := a.earlier(s, an, in); len(earlier) > 0 {
			in.Earlier = earlier
			v = Judge(in, p)
		}
	}
	if rolledBack && !v.Early {
		v.Reason = "rolled back: " + v.Reason
	}
	if v.Final {
		an.done = true
		if v.Status == schema.VerdictBad {
			an.bad = true
			if rolledBack { // already undone: watch for the recovery at once
				an.done, an.recovering = false, true
			}
		}
	}
	return a.verdictFor(an, v, t), true
}

// How the recovery after the rollback of a bad deploy is judged: at least
// recoveryMin of samples after the rollback, the last recoveryWindow of them (a
// sliding window, so that the bad minutes just after the rollback soon leave it)
// against the deploy's baseline; given up after recoveryTimeout.
const (
	recoveryMin     = 2 * time.Minute
	recoveryWindow  = 3 * time.Minute
	recoveryTimeout = time.Hour
)

// startRecovery reopens a bad deploy's analysis when it was rolled back at
// r, to tell when the service is back within its baseline.
func (a *Analyzer) startRecovery(an *analysis, r time.Time) {
	an.done, an.recovering, an.dirty = false, true, true
	an.rolledBack = r
	an.next = r.Truncate(a.cfg.EvalEvery).Add(a.cfg.EvalEvery)
	s := a.seriesOf(an.deploy.Service, an.deploy.Env)
	if !slices.Contains(s.open, an) {
		s.open = append(s.open, an)
	}
}

// evaluateRecovery says, once the samples after the rollback are back within
// the deploy's baseline, that the service recovered: the end of the incident
// the bad deploy caused. Until then it says nothing.
func (a *Analyzer) evaluateRecovery(s *series, an *analysis, p Policy, t time.Time) (schema.Verdict, bool) {
	r := an.rolledBack
	if t.Before(r.Add(recoveryMin)) {
		return schema.Verdict{}, false
	}
	from := r
	if w := t.Add(-recoveryWindow); w.After(from) {
		from = w
	}
	baseWin := a.baselineWindow(s, an, p)
	candWin := schema.Window{From: schema.At(from), To: schema.At(t)}
	v := Judge(Input{
		Comparison: schema.RecoveryVsBaseline,
		Baseline:   Group{Window: baseWin, Points: a.baselinePoints(s, an, baseWin)},
		Candidate:  Group{Window: candWin, Points: s.between(from, t)},
		Version:    an.deploy.PreviousVersion,
		Final:      true,
	}, p)
	switch {
	case v.Status == schema.VerdictHealthy || v.Status == schema.VerdictMarginal:
		v.Status = schema.VerdictHealthy
		v.Reason = "recovered " + t.Sub(r).Round(time.Second).String() + " after the rollback: " + v.Reason
		an.recovered = true
	case !t.Before(r.Add(recoveryTimeout)):
		v.Status = schema.VerdictBad
		v.Reason = "not recovered " + recoveryTimeout.String() + " after the rollback: " + v.Reason
	default:
		return schema.Verdict{}, false
	}
	v.Final, v.Early = true, false
	an.done, an.recovering, an.dirty = true, false, true
	out := a.verdictFor(an, v, t)
	out.ID = an.deploy.ID + ":recovery:" + strconv.FormatInt(t.Unix(), 10)
	return out, true
}

func flagged(v schema.Verdict) bool {
	for _, m := range v.Metrics {
		if m.Class == schema.MetricHigh || m.Class == schema.MetricLow {
			return true
		}
	}
	return false
}

// minCanaryPoints is how many samples each version needs in the shared
// minutes before the comparison is canary against baseline.
const minCanaryPoints = 3

// canaryInput compares new-version samples with old-version ones over the
// minutes in which both ran, from the deploy's start up to t.
func (a *Analyzer) canaryInput(s *series, an *analysis, t time.Time) (Input, bool) {
	window := schema.Window{From: schema.At(an.start()), To: schema.At(t)}
	var cand, base []Point
	newMinutes := map[int64]bool{}
	oldMinutes := map[int64]bool{}
	pts := s.between(an.start(), t)
	for _, p := range pts {
		switch {
		case p.Version == "":
		case p.Version == an.deploy.Version:
			newMinutes[p.Time.Unix()/60] = true
		case an.deploy.PreviousVersion == "" || p.Version == an.deploy.PreviousVersion:
			oldMinutes[p.Time.Unix()/60] = true
		}
	}
	if len(newMinutes) == 0 || len(oldMinutes) == 0 || len(pts) == 0 {
		return Input{}, false
	}
	// Only while both versions still run side by side (in the last minute,
	// and after the deploy finished if it has): once a rolling deploy has
	// replaced every instance, before/after says more, and says it at once.
	recent := 2 * a.cfg.EvalEvery
	if iv := pts[len(pts)-1].Interval + a.cfg.EvalEvery; iv > recent {
		recent = iv
	}
	recentFrom := t.Add(-recent)
	if f := an.deploy.FinishedAt.Time; !f.IsZero() && f.After(recentFrom) {
		recentFrom = f
	}
	var recentNew, recentOld bool
	for i := len(pts) - 1; i >= 0 && pts[i].Time.After(recentFrom); i-- {
		switch v := pts[i].Version; {
		case v == "":
		case v == an.deploy.Version:
			recentNew = true
		case an.deploy.PreviousVersion == "" || v == an.deploy.PreviousVersion:
			recentOld = true
		}
	}
	if !recentNew || !recentOld {
		return Input{}, false
	}
	for _, p := range pts {
		m := p.Time.Unix() / 60
		if !newMinutes[m] || !oldMinutes[m] || p.Version == "" {
			continue
		}
		if p.Version == an.deploy.Version {
			cand = append(cand, p)
		} else if an.deploy.PreviousVersion == "" || p.Version == an.deploy.PreviousVersion {
			base = append(base, p)
		}
	}
	if len(cand) < minCanaryPoints || len(base) < minCanaryPoints {
		return Input{}, false
	}
	p := a.cfg.Policies.For(s.key.service)
	final := false
	if end := an.end(p); !end.IsZero() && !t.Before(end) {
		final = true
	}
	return Input{
		Comparison: schema.CanaryVsBaseline,
		Baseline:   Group{Window: window, Points: base},
		Candidate:  Group{Window: window, Points: cand},
		Final:      final,
	}, true
}

// beforeAfterInput compares the minutes before the deploy started with the
// ones after it finished, up to t.
func (a *Analyzer) beforeAfterInput(s *series, an *analysis, p Policy, t time.Time) (Input, bool) {
	if an.deploy.FinishedAt.IsZero() || !t.After(an.deploy.FinishedAt.Time) {
		return Input{}, false
	}
	baseWin := a.baselineWindow(s, an, p)
	candTo := earliest(t, an.end(p))
	candWin := schema.Window{From: an.deploy.FinishedAt, To: schema.At(candTo)}
	return Input{
		Comparison: schema.BeforeVsAfter,
		Baseline:   Group{Window: baseWin, Points: a.baselinePoints(s, an, baseWin)},
		Candidate:  Group{Window: candWin, Points: s.between(candWin.From.Time, candWin.To.Time)},
		Final:      !t.Before(an.end(p)),
	}, true
}

// baselineWindow is the before window, cut short where an earlier deploy of
// the same service was still being judged.
func (a *Analyzer) baselineWindow(s *series, an *analysis, p Policy) schema.Window {
	start := an.start()
	from := start.Add(-p.BeforeWindow)
	for _, other := range s.deploys {
		if other == an || !other.start().Before(start) {
			continue
		}
		end := other.end(p)
		if end.IsZero() {
			end = other.start()
		}
		if end.After(from) {
			from = earliest(end, start)
		}
	}
	return schema.Window{From: schema.At(from), To: schema.At(start)}
}

// baselinePoints are the before window's points; read from History once
// when memory does not reach back that far.
func (a *Analyzer) baselinePoints(s *series, an *analysis, w schema.Window) []Point {
	if an.baselineKept && an.baselineWin == w {
		return an.baseline
	}
	pts := a.pointsIn(s, w.From.Time, w.To.Time)
	if w.To.Time.Before(s.watermark.Add(-a.cfg.Lateness)) { // complete: safe to keep
		an.baseline, an.baselineWin, an.baselineKept = slices.Clip(pts), w, true
	}
	return pts
}

// pointsIn returns the points in (from, to] from memory or, when memory no
// longer reaches back that far, from History.
func (a *Analyzer) pointsIn(s *series, from, to time.Time) []Point {
	if a.cfg.History != nil && (len(s.points) == 0 || !s.points[0].Time.Before(from.Add(a.cfg.EvalEvery))) {
		if pts, err := a.cfg.History.Points(s.key.service, s.key.env, from, to); err == nil && len(pts) > 0 {
			return pts
		}
	}
	return s.between(from, to)
}

// earlier builds the same comparison one day and one week before, where
// there is history for it.
func (a *Analyzer) earlier(s *series, an *analysis, in Input) []Earlier {
	if an.earlier == nil {
		an.earlier = map[time.Duration][]Point{}
	}
	var out []Earlier
	for _, shift := range []struct {
		d     time.Duration
		label string
	}{{24 * time.Hour, "1 day earlier"}, {7 * 24 * time.Hour, "1 week earlier"}} {
		from := in.Baseline.Window.From.Time.Add(-shift.d)
		to := an.end(a.cfg.Policies.For(s.key.service)).Add(-shift.d)
		pts, ok := an.earlier[shift.d]
		if !ok {
			pts = a.pointsIn(s, from, to)
			if len(pts) > 0 && pts[0].Time.After(from.Add(time.Minute)) && a.cfg.History == nil {
				pts = nil // memory does not reach back far enough
			}
			an.earlier[shift.d] = pts
		}
		if len(pts) == 0 {
			continue
		}
		out = append(out, Earlier{
			Label:     shift.label,
			Baseline:  shiftedGroup(in.Baseline.Window, shift.d, pts),
			Candidate: shiftedGroup(in.Candidate.Window, shift.d, pts),
		})
	}
	return out
}

func shiftedGroup(w schema.Window, by time.Duration, pts []Point) Group {
	from, to := w.From.Time.Add(-by), w.To.Time.Add(-by)
	var in []Point
	for _, p := range pts {
		if p.Time.After(from) && !p.Time.After(to) {
			in = append(in, p)
		}
	}
	return Group{Window: schema.Window{From: schema.At(from), To: schema.At(to)}, Points: in}
}

// verdictFor fills in what Judge does not know: the deploy, the id, the time
// and the deploys that overlapped.
func (a *Analyzer) verdictFor(an *analysis, v schema.Verdict, t time.Time) schema.Verdict {
	d := &an.deploy
	v.ID = d.ID + ":verdict:" + strconv.FormatInt(t.Unix(), 10)
	v.Type = schema.TypeVerdict
	v.DeployID = d.ID
	v.Service, v.Env = d.Service, d.Env
	v.Version, v.PreviousVersion = d.Version, d.PreviousVersion
	v.EvaluatedAt = schema.At(t)
	v.Overlapping = a.overlapping(an, v)
	return v
}

// maxListed bounds the deploys a verdict names.
const maxListed = 20

// overlapping lists the other deploys in the same env whose own analysis
// span (from their start to the end of their after window) crossed this
// verdict's windows.
func (a *Analyzer) overlapping(an *analysis, v schema.Verdict) []schema.DeployRef {
	p := a.cfg.Policies.For(an.deploy.Service)
	from := an.start().Add(-p.BeforeWindow)
	if b := v.Baseline.From.Time; !b.IsZero() && b.After(from) {
		from = b
	}
	to := v.EvaluatedAt.Time
	var out []schema.DeployRef
	for _, other := range a.recent {
		if other == an || other.deploy.Env != an.deploy.Env {
			continue
		}
		st := other.start()
		end := other.end(a.cfg.Policies.For(other.deploy.Service))
		if end.IsZero() {
			end = st.Add(p.AfterWindow)
		}
		if !st.After(to) && end.After(from) {
			out = append(out, refOf(other))
			if len(out) == maxListed {
				break
			}
		}
	}
	return out
}

func refOf(an *analysis) schema.DeployRef {
	return schema.DeployRef{
		ID: an.deploy.ID, Service: an.deploy.Service, Env: an.deploy.Env,
		Version: an.deploy.Version, StartedAt: schema.At(an.start()),
	}
}

// watch judges a service with dependencies and no deploy of its own in
// flight: its last minutes against the ones before them. When it regresses,
// the recent deploys of its dependencies are the suspects.
func (a *Analyzer) watch(s *series, out []schema.Verdict) []schema.Verdict {
	deps := a.cfg.Dependencies[s.key.service]
	if len(deps) == 0 || s.watermark.IsZero() {
		return out
	}
	ready := s.watermark.Add(-a.cfg.Lateness)
	if s.nextWatch.IsZero() {
		s.nextWatch = ready.Truncate(a.cfg.WatchEvery).Add(a.cfg.WatchEvery)
	}
	p := a.cfg.Policies.For(s.key.service)
	for !s.nextWatch.After(ready) {
		t := s.nextWatch
		s.nextWatch = t.Add(a.cfg.WatchEvery)
		if a.ownDeployNear(s, p, t) {
			s.regressing = false
			continue
		}
		recent := schema.Window{From: schema.At(t.Add(-a.cfg.WatchRecent)), To: schema.At(t)}
		before := schema.Window{From: schema.At(t.Add(-a.cfg.WatchRecent - p.BeforeWindow)), To: recent.From}
		in := Input{
			Comparison: schema.RecentVsEarlier,
			Baseline:   Group{Window: before, Points: s.between(before.From.Time, before.To.Time)},
			Candidate:  Group{Window: recent, Points: s.between(recent.From.Time, recent.To.Time)},
			Final:      true,
		}
		v := Judge(in, p)
		bad := v.Status == schema.VerdictBad
		if bad && !s.regressing {
			v.ID = "regression:" + s.key.service + ":" + s.key.env + ":" + strconv.FormatInt(t.Unix(), 10)
			v.Type = schema.TypeVerdict
			v.Service, v.Env = s.key.service, s.key.env
			v.EvaluatedAt = schema.At(t)
			v.Suspects = a.suspects(deps, s.key.env, t.Add(-p.BeforeWindow-a.cfg.WatchRecent), t)
			v.Reason = "without a deploy of its own: " + v.Reason
			out = append(out, v)
		}
		s.regressing = bad
	}
	return out
}

// ownDeployNear reports whether one of the service's own deploys could
// explain a change at t: its analysis covers t.
func (a *Analyzer) ownDeployNear(s *series, p Policy, t time.Time) bool {
	for _, an := range s.deploys {
		end := an.end(p)
		if end.IsZero() {
			end = an.start().Add(p.AfterWindow)
		}
		if !an.start().After(t) && !end.Before(t.Add(-a.cfg.WatchRecent)) {
			return true
		}
	}
	return false
}

func (a *Analyzer) suspects(deps []string, env string, from, to time.Time) []schema.DeployRef {
	var out []schema.DeployRef
	for i := len(a.recent) - 1; i >= 0 && len(out) < maxListed; i-- {
		an := a.recent[i]
		if an.deploy.Env != env || !slices.Contains(deps, an.deploy.Service) {
			continue
		}
		if st := an.start(); st.After(from) && !st.After(to) {
			out = append(out, refOf(an))
		}
	}
	return out
}

// trim forgets samples and finished deploys that no window can reach any more.
func (a *Analyzer) trim(s *series) {
	keepFrom := s.watermark.Add(-a.cfg.Horizon)
	for _, an := range s.open {
		if b := an.start().Add(-a.cfg.Policies.For(s.key.service).BeforeWindow); b.Before(keepFrom) {
			keepFrom = b
		}
	}
	i, _ := slices.BinarySearchFunc(s.points, keepFrom, func(p Point, t time.Time) int {
		return p.Time.Compare(t)
	})
	if i > 0 {
		if i > len(s.points)/2 { // copy now and then so the old samples' memory goes
			s.points = append([]Point(nil), s.points[i:]...)
		} else {
			s.points = s.points[i:]
		}
	}
	kept := s.deploys[:0]
	for _, an := range s.deploys {
		if !an.done || an.start().After(keepFrom) {
			kept = append(kept, an)
		}
	}
	clear(s.deploys[len(kept):])
	s.deploys = kept
}

func (a *Analyzer) trimRecent() {
	keepFrom := a.watermark.Add(-a.cfg.Horizon)
	kept := a.recent[:0]
	for _, an := range a.recent {
		if !an.done || an.start().After(keepFrom) {
			kept = append(kept, an)
		} else {
			delete(a.byID, an.deploy.ID)
		}
	}
	clear(a.recent[len(kept):])
	a.recent = kept
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
