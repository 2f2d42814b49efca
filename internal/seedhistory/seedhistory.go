// Package seedhistory writes a realistic deploy history into a migrated
// deploywatch ClickHouse database, for tests and benchmarks that read it:
// several services over weeks, with deploys (rolling and canary, some failed,
// some bad, some rolled back), per-minute traffic samples with latency
// quantiles and histograms (a daily rhythm, noise, regressions after bad
// deploys), the impact analysis' verdicts (and, after a rollback, its
// verdict on the service's recovery), incidents (most linked to a bad
// deploy, some without one, some still open), commits and team labels.
//
// It writes the projection tables directly, as columnar batches with named
// columns (the metrics_1m rollup fills itself from metric_samples through its
// materialized view): the benchmark's history is millions of samples, which
// the NATS path would take minutes to carry. Rows have the shape the sink
// writes, and the same history comes out for the same Config.
package seedhistory

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/deploywatch/deploywatch/schema"
)

// Batcher is the part of a ClickHouse connection the seed needs.
type Batcher interface {
	PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error)
}

// Config sizes the history.
type Config struct {
	Services int       // default 4
	Days     int       // default 30
	End      time.Time // the newest minute of data; default now
	Env      string    // default "production"
	Seed     uint64    // the same seed gives the same history
}

// Teams are the team labels of the services, in turn.
var Teams = []string{"payments", "discovery", "platform", "growth"}

// knownServices name the first services; the rest are svc-NNN.
var knownServices = []string{"checkout", "search", "payments", "accounts", "catalog", "cart", "auth", "notifications"}

// ServiceName is the name of service i.
func ServiceName(i int) string {
	if i < len(knownServices) {
		return knownServices[i]
	}
	return fmt.Sprintf("svc-%03d", i)
}

// Summary counts what Write wrote.
type Summary struct {
	Services                                    []string
	Deploys, Failed, RolledBack, Canaries       int
	Verdicts, Bad, Marginal, Inconclusive       int // the deploys' own final verdicts
	Recoveries                                  int // recovery verdicts after a rollback, healthy
	Incidents, OpenIncidents, IncidentsNoDeploy int
	Samples, Commits, DeploysWithoutCommits     int
	From, To                                    time.Time
}

func (c *Config) defaults() {
	if c.Services <= 0 {
		c.Services = 4
	}
	if c.Days <= 0 {
		c.Days = 30
	}
	if c.End.IsZero() {
		c.End = time.Now().UTC()
	}
	c.End = c.End.UTC().Truncate(time.Minute)
	if c.Env == "" {
		c.Env = "production"
	}
}

// verdict classes of deploys, by their index within a service: every class
// shows up in any week of history.
func classOf(k int) schema.VerdictStatus {
	switch k % 10 {
	case 3:
		return schema.VerdictBad
	case 6:
		return schema.VerdictMarginal
	case 8:
		return schema.VerdictInconclusive
	}
	return schema.VerdictHealthy
}

type deploy struct {
	id, service, team, version, previous string
	strategy                             schema.Strategy
	started, finished                    time.Time
	failed                               bool
	rolledBackAt                         time.Time // zero: not rolled back
	class                                schema.VerdictStatus
	score                                int
	commits                              []schema.Commit
}

// segment is a version serving a service from a time on.
type segment struct {
	from    time.Time
	version string
	bad     bool
	// canary: until canaryTo, the previous version serves on the baseline
	// instance and this one on a canary instance.
	canaryTo time.Time
	previous string
}

// Write generates the history and inserts it.
func Write(ctx context.Context, ch Batcher, cfg Config) (Summary, error) {
	cfg.defaults()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	from := cfg.End.Add(-time.Duration(cfg.Days) * 24 * time.Hour)
	sum := Summary{From: from, To: cfg.End}

	var deploys []deploy
	segments := make([][]segment, cfg.Services)
	for s := 0; s < cfg.Services; s++ {
		name := ServiceName(s)
		sum.Services = append(sum.Services, name)
		team := Teams[s%len(Teams)]
		minor := 0
		version := func() string { return fmt.Sprintf("v1.%d.0", minor) }
		segments[s] = []segment{{from: from.Add(-time.Hour), version: version()}}
		k := 0
		for day := 0; day < cfg.Days; day++ {
			dayStart := from.Truncate(24 * time.Hour).Add(time.Duration(day) * 24 * time.Hour)
			n := rng.IntN(2) + 2 // 2-3 a working day
			if wd := dayStart.Weekday(); wd == time.Saturday || wd == time.Sunday {
				n = rng.IntN(2) // 0-1 at the weekend
			}
			last := dayStart.Add(8 * time.Hour)
			for i := 0; i < n; i++ {
				start := last.Add(time.Duration(20+rng.IntN(180)) * time.Minute)
				last = start.Add(90 * time.Minute) // the next one after this one's analysis
				if !start.After(from) || start.Add(40*time.Minute).After(cfg.End) {
					continue
				}
				prev := version()
				minor++
				d := deploy{
					id:       fmt.Sprintf("seed-%s-%04d", name, k),
					service:  name,
					team:     team,
					version:  version(),
					previous: prev,
					strategy: schema.StrategyRolling,
					started:  start,
					finished: start.Add(time.Duration(3+rng.IntN(8)) * time.Minute),
					class:    classOf(k),
				}
				if k%3 == 0 {
					d.strategy = schema.StrategyCanary
					sum.Canaries++
				}
				if k%25 == 12 {
					d.failed = true // never served: no segment, no verdict
					minor--
					d.version = fmt.Sprintf("v1.%d.0-rc", minor+1)
				}
				if k%7 != 5 {
					for c := 0; c < 1+rng.IntN(4); c++ {
						at := start.Add(-time.Duration(20+rng.IntN(3*24*60)) * time.Minute)
						d.commits = append(d.commits, schema.Commit{
							SHA:     sha(d.id, c),
							Time:    schema.At(at),
							Author:  []string{"ana", "bo", "chen", "dee"}[rng.IntN(4)],
							Message: fmt.Sprintf("change %d of %s", c+1, d.version),
						})
					}
				}
				switch d.class {
				case schema.VerdictHealthy:
					d.score = 90 + rng.IntN(11)
				case schema.VerdictMarginal:
					d.score = 60 + rng.IntN(25)
				case schema.VerdictBad:
					d.score = 10 + rng.IntN(40)
				case schema.VerdictInconclusive:
					d.score = 50
				}
				if !d.failed {
					seg := segment{from: d.finished, version: d.version, bad: d.class == schema.VerdictBad, previous: prev}
					if d.strategy == schema.StrategyCanary {
						seg.canaryTo = d.finished.Add(30 * time.Minute)
					}
					segments[s] = append(segments[s], seg)
					if d.class == schema.VerdictBad && ((k/10)%3 != 2 || d.finished.After(cfg.End.Add(-8*24*time.Hour))) {
						// Two bad deploys of three are rolled back 25 minutes in,
						// and every one of the last 8 days: a week's view of one
						// service shows a rollback whatever day the history ends.
						d.rolledBackAt = d.finished.Add(25 * time.Minute)
						segments[s] = append(segments[s], segment{from: d.rolledBackAt, version: prev})
					}
				}
				deploys = append(deploys, d)
				k++
			}
		}
	}

	if err := writeDeploys(ctx, ch, deploys, cfg.Env, &sum); err != nil {
		return sum, err
	}
	if err := writeVerdicts(ctx, ch, deploys, cfg.Env, &sum); err != nil {
		return sum, err
	}
	if err := writeIncidents(ctx, ch, deploys, cfg, &sum); err != nil {
		return sum, err
	}
	if err := writeCommits(ctx, ch, deploys, &sum); err != nil {
		return sum, err
	}
	if err := writeSamples(ctx, ch, segments, cfg, rng, &sum); err != nil {
		return sum, err
	}
	return sum, nil
}

func sha(id string, i int) string {
	h := sha1.Sum([]byte(fmt.Sprintf("%s/%d", id, i)))
	return hex.EncodeToString(h[:])
}

// insert writes columns into table in one batch; columns names them.
func insert(ctx context.Context, ch Batcher, table, columns string, cols ...any) error {
	batch, err := ch.PrepareBatch(ctx, "INSERT INTO "+table+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("cannot prepare an insert into %s: %w", table, err)
	}
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			batch.Abort()
			return fmt.Errorf("cannot append column %d of %s: %w", i, table, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("cannot insert into %s: %w", table, err)
	}
	return nil
}

func writeDeploys(ctx context.Context, ch Batcher, deploys []deploy, env string, sum *Summary) error {
	var (
		id, status, service, envs, version, previous, author, strategy, url []string
		rank                                                                []uint8
		eventTime                                                           []time.Time
		started, finished                                                   []*time.Time
		labelKeys, labelValues, shas, authors, messages                     [][]string
		commitTimes                                                         [][]time.Time
	)
	add := func(d *deploy, st schema.DeployStatus, at time.Time, fin *time.Time, withCommits bool) {
		id, status, rank = append(id, d.id), append(status, string(st)), append(rank, st.Rank())
		service, envs = append(service, d.service), append(envs, env)
		version, previous = append(version, d.version), append(previous, d.previous)
		eventTime = append(eventTime, at)
		s := d.started
		started, finished = append(started, &s), append(finished, fin)
		author = append(author, "ci")
		strategy = append(strategy, string(d.strategy))
		url = append(url, "https://ci.example.com/"+d.id)
		labelKeys, labelValues = append(labelKeys, []string{"team"}), append(labelValues, []string{d.team})
		var cs, ca, cm []string
		var ct []time.Time
		if withCommits {
			for _, c := range d.commits {
				cs, ca, cm, ct = append(cs, c.SHA), append(ca, c.Author), append(cm, c.Message), append(ct, c.Time.Time)
			}
		}
		shas, authors, messages, commitTimes = append(shas, cs), append(authors, ca), append(messages, cm), append(commitTimes, ct)
	}
	for i := range deploys {
		d := &deploys[i]
		sum.Deploys++
		if len(d.commits) == 0 {
			sum.DeploysWithoutCommits++
		}
		add(d, schema.DeployStarted, d.started, nil, true)
		fin := d.finished
		if d.failed {
			sum.Failed++
			add(d, schema.DeployFailed, fin, &fin, false)
			continue
		}
		add(d, schema.DeploySucceeded, fin, &fin, false)
		if !d.rolledBackAt.IsZero() {
			sum.RolledBack++
			rb := d.rolledBackAt
			add(d, schema.DeployRolledBack, rb, &rb, false)
		}
	}
	return insert(ctx, ch, "deploy_changes",
		"deploy_id, status, status_rank, service, env, version, previous_version, event_time, "+
			"started_at, finished_at, author, strategy, url, label_keys, label_values, "+
			"commit_shas, commit_times, commit_authors, commit_messages",
		id, status, rank, service, envs, version, previous, eventTime, started, finished, author, strategy, url,
		labelKeys, labelValues, shas, commitTimes, authors, messages)
}

var reasons = map[schema.VerdictStatus]string{
	schema.VerdictHealthy:      "no metric moved beyond its tolerance",
	schema.VerdictMarginal:     "latency p95 up 22% (tolerance 20%), other metrics passed",
	schema.VerdictBad:          "error rate 6.1x the baseline's (p < 0.001)",
	schema.VerdictInconclusive: "too little traffic after the deploy to judge",
	schema.VerdictPending:      "analysis under way",
}

func writeVerdicts(ctx context.Context, ch Batcher, deploys []deploy, env string, sum *Summary) error {
	var (
		id, deployID, service, envs, version, previous, status, reason, comparison []string
		score, final, early                                                        []uint8
		evaluatedAt, bFrom, bTo, cFrom, cTo, receivedAt                            []time.Time
		names, classes                                                             [][]string
		ratios, pValues                                                            [][]float64
		body                                                                       []string
	)
	verdict := func(d *deploy, st schema.VerdictStatus, sc int, fin, earlyCall bool, at time.Time) schema.Verdict {
		cmp := schema.BeforeVsAfter
		if d.strategy == schema.StrategyCanary {
			cmp = schema.CanaryVsBaseline
		}
		return schema.Verdict{
			ID: fmt.Sprintf("%s:verdict:%d", d.id, at.Unix()), Type: schema.TypeVerdict,
			DeployID: d.id, Service: d.service, Env: env, Version: d.version, PreviousVersion: d.previous,
			Status: st, Score: sc, Final: fin, Early: earlyCall, Reason: reasons[st],
			EvaluatedAt: schema.At(at), Comparison: cmp,
			Baseline:  schema.Window{From: schema.At(d.started.Add(-30 * time.Minute)), To: schema.At(d.started)},
			Candidate: schema.Window{From: schema.At(d.finished), To: schema.At(at)},
			Metrics:   verdictMetrics(st),
		}
	}
	add := func(v schema.Verdict) error {
		data, err := json.Marshal(&v)
		if err != nil {
			return err
		}
		mNames, mClasses := make([]string, len(v.Metrics)), make([]string, len(v.Metrics))
		mRatios, mPValues := make([]float64, len(v.Metrics)), make([]float64, len(v.Metrics))
		for i, m := range v.Metrics { // as the sink fills the columns
			mNames[i], mClasses[i], mRatios[i], mPValues[i] = m.Name, string(m.Class), m.Ratio, m.PValue
		}
		id, deployID, service, envs = append(id, v.ID), append(deployID, v.DeployID), append(service, v.Service), append(envs, v.Env)
		version, previous, status = append(version, v.Version), append(previous, v.PreviousVersion), append(status, string(v.Status))
		score, final, early = append(score, uint8(v.Score)), append(final, b2u(v.Final)), append(early, b2u(v.Early))
		reason, comparison = append(reason, v.Reason), append(comparison, string(v.Comparison))
		evaluatedAt = append(evaluatedAt, v.EvaluatedAt.Time)
		bFrom, bTo = append(bFrom, v.Baseline.From.Time), append(bTo, v.Baseline.To.Time)
		cFrom, cTo = append(cFrom, v.Candidate.From.Time), append(cTo, v.Candidate.To.Time)
		names, classes = append(names, mNames), append(classes, mClasses)
		ratios, pValues = append(ratios, mRatios), append(pValues, mPValues)
		body, receivedAt = append(body, string(data)), append(receivedAt, v.EvaluatedAt.Time.Add(time.Second))
		return nil
	}
	for i := range deploys {
		d := &deploys[i]
		if d.failed {
			continue
		}
		// An interim verdict ten minutes in, then the final one.
		if err := add(verdict(d, schema.VerdictPending, 0, false, false, d.finished.Add(10*time.Minute))); err != nil {
			return err
		}
		finalAt := d.finished.Add(30 * time.Minute)
		earlyCall := d.class == schema.VerdictBad
		if earlyCall {
			finalAt = d.finished.Add(15 * time.Minute)
		}
		if err := add(verdict(d, d.class, d.score, true, earlyCall, finalAt)); err != nil {
			return err
		}
		sum.Verdicts++
		switch d.class {
		case schema.VerdictBad:
			sum.Bad++
		case schema.VerdictMarginal:
			sum.Marginal++
		case schema.VerdictInconclusive:
			sum.Inconclusive++
		}
		if !d.rolledBackAt.IsZero() {
			// After the rollback the analysis judges the service's recovery:
			// the previous version's minutes against the deploy's baseline,
			// a final verdict newer than the deploy's own, which it does not
			// replace (the deploy stays bad).
			at := d.rolledBackAt.Add(3 * time.Minute)
			v := verdict(d, schema.VerdictHealthy, 100, true, false, at)
			v.ID = fmt.Sprintf("%s:recovery:%d", d.id, at.Unix())
			v.Comparison, v.Version = schema.RecoveryVsBaseline, d.previous
			v.Candidate = schema.Window{From: schema.At(at.Add(-3 * time.Minute)), To: schema.At(at)}
			v.Reason = "recovered 3m0s after the rollback: " + reasons[schema.VerdictHealthy]
			if err := add(v); err != nil {
				return err
			}
			sum.Recoveries++
		}
	}
	return insert(ctx, ch, "deploy_verdicts",
		"id, deploy_id, service, env, version, previous_version, status, score, final, early, "+
			"reason, comparison, evaluated_at, baseline_from, baseline_to, candidate_from, candidate_to, "+
			"metric_names, metric_classes, metric_ratios, metric_p_values, body, received_at",
		id, deployID, service, envs, version, previous, status, score, final, early,
		reason, comparison, evaluatedAt, bFrom, bTo, cFrom, cTo, names, classes, ratios, pValues, body, receivedAt)
}

// verdictMetrics is the evidence of a verdict of status st, shaped as the
// impact analysis publishes it: the baseline's and the candidate's figures
// (medians; the pooled rate for errors), their ratio, class and p-value. A
// bad deploy's error rate is 6.1 times its baseline's, a marginal one's p95
// 22% slower; the rest moved within noise.
func verdictMetrics(st schema.VerdictStatus) []schema.MetricVerdict {
	errRatio, p95Ratio, errClass, p95Class := 1.02, 1.05, schema.MetricPass, schema.MetricPass
	errP, p95P := 0.6, 0.3
	switch st {
	case schema.VerdictBad:
		errRatio, errClass, errP = 6.1, schema.MetricHigh, 0.0004
	case schema.VerdictMarginal:
		p95Ratio, p95Class, p95P = 1.22, schema.MetricHigh, 0.004
	}
	m := func(name string, class schema.MetricClass, harm, test string, weight, base, ratio, p float64, n int) schema.MetricVerdict {
		return schema.MetricVerdict{Name: name, Class: class, Harm: harm, Weight: weight,
			Baseline: schema.Stats{N: n, Value: base}, Candidate: schema.Stats{N: n, Value: base * ratio},
			Test: test, PValue: p, Shift: base*ratio - base, Ratio: ratio, Effect: ratio - 1, Tolerance: 0.2}
	}
	return []schema.MetricVerdict{
		m("request_rate", schema.MetricPass, "decrease", "mann_whitney", 1, 5.4, 1.01, 0.6, 30),
		m("error_rate", errClass, "increase", "poisson_rate_ratio", 2, 0.002, errRatio, errP, 9000),
		m("latency_p95", p95Class, "increase", "mann_whitney", 1, 130, p95Ratio, p95P, 30),
		m("latency_p99", schema.MetricPass, "increase", "mann_whitney", 1, 310, 1.03, 0.5, 30),
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func writeIncidents(ctx context.Context, ch Batcher, deploys []deploy, cfg Config, sum *Summary) error {
	var (
		id, status, service, envs, title, source, deployID []string
		at                                                 []time.Time
	)
	add := func(incID string, st schema.IncidentStatus, svc string, t time.Time, ttl, dep string) {
		id, status, service, envs = append(id, incID), append(status, string(st)), append(service, svc), append(envs, cfg.Env)
		at, title, source, deployID = append(at, t), append(title, ttl), append(source, "deploywatch"), append(deployID, dep)
	}
	// A bad deploy opens an incident, and so does a marginal one (users
	// noticed the slowdown); the newest bad deploy of the first service
	// leaves its incident open.
	newestBad := -1
	for i := range deploys {
		if deploys[i].service == ServiceName(0) && deploys[i].class == schema.VerdictBad && !deploys[i].failed &&
			(newestBad < 0 || deploys[i].finished.After(deploys[newestBad].finished)) {
			newestBad = i
		}
	}
	for i := range deploys {
		d := &deploys[i]
		if d.failed || (d.class != schema.VerdictBad && d.class != schema.VerdictMarginal) {
			continue
		}
		incID := "inc-" + d.id
		opened := d.finished.Add(15 * time.Minute)
		title := "bad deploy " + d.version + " of " + d.service
		if d.class == schema.VerdictMarginal {
			title = d.service + " slower since " + d.version
			opened = d.finished.Add(2 * time.Hour)
		}
		add(incID, schema.IncidentOpened, d.service, opened, title, d.id)
		sum.Incidents++
		if i == newestBad {
			sum.OpenIncidents++
			continue
		}
		resolved := opened.Add(time.Duration(15+(i*37)%150) * time.Minute)
		if !d.rolledBackAt.IsZero() {
			resolved = d.rolledBackAt.Add(time.Duration(5+i%20) * time.Minute)
		}
		add(incID, schema.IncidentResolved, d.service, resolved, "", d.id)
	}
	// Incidents without a deploy: an outage upstream every other service
	// (resolved).
	for s := 0; s < cfg.Services; s += 2 {
		opened := cfg.End.Add(-time.Duration(3+s%20) * 24 * time.Hour).Add(-3 * time.Hour)
		incID := fmt.Sprintf("inc-upstream-%s", ServiceName(s))
		add(incID, schema.IncidentOpened, ServiceName(s), opened, "upstream database failover", "")
		add(incID, schema.IncidentResolved, ServiceName(s), opened.Add(42*time.Minute), "", "")
		sum.Incidents++
		sum.IncidentsNoDeploy++
	}
	// And one still open on every service, opened in the last hours.
	for s := 0; s < cfg.Services; s++ {
		add("inc-open-"+ServiceName(s), schema.IncidentOpened, ServiceName(s),
			cfg.End.Add(-time.Duration(30+s%240)*time.Minute), "elevated 502s from the load balancer", "")
		sum.Incidents++
		sum.IncidentsNoDeploy++
		sum.OpenIncidents++
	}
	return insert(ctx, ch, "incident_changes", "incident_id, status, service, env, time, title, source, deploy_id",
		id, status, service, envs, at, title, source, deployID)
}

func writeCommits(ctx context.Context, ch Batcher, deploys []deploy, sum *Summary) error {
	var (
		service, repo, ref, shaCol, author, message, head, pushID []string
		commitTime, pushedAt                                      []time.Time
	)
	for i := range deploys {
		d := &deploys[i]
		if len(d.commits) == 0 {
			continue
		}
		headSHA := d.commits[len(d.commits)-1].SHA
		var newest time.Time
		for _, c := range d.commits {
			if c.Time.Time.After(newest) {
				newest = c.Time.Time
			}
		}
		for _, c := range d.commits {
			service, repo, ref = append(service, d.service), append(repo, "example/"+d.service), append(ref, "refs/heads/main")
			shaCol, author, message = append(shaCol, c.SHA), append(author, c.Author), append(message, c.Message)
			head, pushID = append(head, headSHA), append(pushID, "push-"+d.id)
			commitTime, pushedAt = append(commitTime, c.Time.Time), append(pushedAt, newest.Add(time.Minute))
			sum.Commits++
		}
	}
	return insert(ctx, ch, "commits",
		"service, repo, ref, sha, commit_time, author, message, head_sha, push_id, pushed_at",
		service, repo, ref, shaCol, commitTime, author, message, head, pushID, pushedAt)
}

// sampleBuf holds metric_samples rows, column by column.
type sampleBuf struct {
	service, env, version, instance, sourceID []string
	time                                      []time.Time
	intervalS                                 []float64
	requests, errors                          []uint64
	p50, p90, p95, p99, max                   []*float64
	bounds                                    [][]float64
	counts                                    [][]uint64
}

var histBounds = []float64{10, 25, 50, 100, 250, 500, 1000}

// histShape is the share of requests per histogram bucket (one more than bounds).
var histShape = []float64{0.04, 0.22, 0.38, 0.22, 0.1, 0.03, 0.009, 0.001}

func (b *sampleBuf) add(service, env, version, instance, source string, t time.Time, requests uint64, errRate, slow float64) {
	b.service, b.env, b.version, b.instance = append(b.service, service), append(b.env, env), append(b.version, version), append(b.instance, instance)
	b.sourceID, b.time, b.intervalS = append(b.sourceID, source), append(b.time, t), append(b.intervalS, 60)
	b.requests = append(b.requests, requests)
	b.errors = append(b.errors, uint64(math.Round(float64(requests)*errRate)))
	q := []float64{42 * slow, 95 * slow, 130 * slow, 310 * slow, 900 * slow}
	b.p50, b.p90, b.p95, b.p99, b.max = append(b.p50, &q[0]), append(b.p90, &q[1]), append(b.p95, &q[2]), append(b.p99, &q[3]), append(b.max, &q[4])
	counts := make([]uint64, len(histShape))
	for i, share := range histShape {
		counts[i] = uint64(float64(requests) * share)
	}
	if slow > 1 { // a slow version moves requests up a bucket
		copy(counts[1:], counts[:len(counts)-1])
		counts[0] = 0
	}
	b.bounds, b.counts = append(b.bounds, histBounds), append(b.counts, counts)
}

func (b *sampleBuf) reset() { *b = sampleBuf{} }

// writeSamples writes a sample a minute per service (and one from the canary
// instance while a canary runs), a day per insert.
func writeSamples(ctx context.Context, ch Batcher, segments [][]segment, cfg Config, rng *rand.Rand, sum *Summary) error {
	from := cfg.End.Add(-time.Duration(cfg.Days) * 24 * time.Hour)
	var buf sampleBuf
	flush := func() error {
		if len(buf.time) == 0 {
			return nil
		}
		sum.Samples += len(buf.time)
		err := insert(ctx, ch, "metric_samples",
			"service, env, version, instance, time, interval_s, requests, errors, "+
				"latency_p50, latency_p90, latency_p95, latency_p99, latency_max, hist_bounds_ms, hist_counts, source_id",
			buf.service, buf.env, buf.version, buf.instance, buf.time, buf.intervalS, buf.requests, buf.errors,
			buf.p50, buf.p90, buf.p95, buf.p99, buf.max, buf.bounds, buf.counts, buf.sourceID)
		buf.reset()
		return err
	}
	pos := make([]int, len(segments)) // each service's current segment
	day := -1
	for t := from.Add(time.Minute); !t.After(cfg.End); t = t.Add(time.Minute) {
		if d := int(t.Sub(from) / (24 * time.Hour)); d != day {
			if err := flush(); err != nil {
				return err
			}
			day = d
		}
		source := fmt.Sprintf("seed:%d:%d", cfg.Seed, day)
		// Traffic follows the time of day: lowest around 03:00 UTC.
		hour := float64(t.Hour()) + float64(t.Minute())/60
		rhythm := 1 + 0.6*math.Sin((hour-9)/24*2*math.Pi)
		for s, segs := range segments {
			for pos[s]+1 < len(segs) && !segs[pos[s]+1].from.After(t) {
				pos[s]++
			}
			seg := segs[pos[s]]
			service := ServiceName(s)
			base := float64(300 + 60*(s%7))
			requests := uint64(base * rhythm * (0.9 + 0.2*rng.Float64()))
			errRate, slow := 0.002*(0.5+rng.Float64()), 1.0
			if seg.bad {
				errRate, slow = errRate*6, 1.6
			}
			if t.Before(seg.canaryTo) {
				// The canary instance takes a quarter of the traffic.
				add := requests / 4
				buf.add(service, cfg.Env, seg.previous, "web-1", source, t, requests-add, 0.002*(0.5+rng.Float64()), 1)
				buf.add(service, cfg.Env, seg.version, "canary-1", source, t, add, errRate, slow)
				continue
			}
			buf.add(service, cfg.Env, seg.version, "web-1", source, t, requests, errRate, slow)
		}
	}
	return flush()
}
