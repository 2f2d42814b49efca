package processors

import (
	"slices"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// sampleRows are metric_samples rows, column by column, ready for a columnar insert.
type sampleRows struct {
	service, env, version, instance []string
	time                            []time.Time
	intervalS                       []float64
	requests, errors                []uint64
	p50, p90, p95, p99, max         []*float64
	histBounds                      [][]float64
	histCounts                      [][]uint64
	sourceID                        []string
}

// sampleColumns names the columns in the order sampleRows.columns returns them.
const sampleColumns = "service, env, version, instance, time, interval_s, requests, errors, " +
	"latency_p50, latency_p90, latency_p95, latency_p99, latency_max, hist_bounds_ms, hist_counts, source_id"

func (r *sampleRows) len() int { return len(r.time) }

// add appends the samples of one batch; sourceID is the message they came in.
func (r *sampleRows) add(b *schema.MetricsBatch, sourceID string) {
	// The Nullable quantile columns take pointers and the histogram columns
	// slices: they point into one array per batch rather than one allocation
	// per value.
	var values []float64
	var counts []uint64
	for i := range b.Samples {
		s := &b.Samples[i]
		r.service = append(r.service, s.ResolvedService(b))
		r.env = append(r.env, s.ResolvedEnv(b))
		r.version = append(r.version, s.Version)
		r.instance = append(r.instance, s.Instance)
		r.time = append(r.time, s.Time.Time)
		r.intervalS = append(r.intervalS, s.IntervalS.Value)
		r.requests = append(r.requests, s.Requests.Value)
		r.errors = append(r.errors, s.Errors.Value)
		if q := s.LatencyMs; q != nil {
			if cap(values)-len(values) < 5 {
				values = make([]float64, 0, 5*(len(b.Samples)-i))
			}
			r.p50 = append(r.p50, optional(&values, q.P50))
			r.p90 = append(r.p90, optional(&values, q.P90))
			r.p95 = append(r.p95, optional(&values, q.P95))
			r.p99 = append(r.p99, optional(&values, q.P99))
			r.max = append(r.max, optional(&values, q.Max))
		} else {
			r.p50, r.p90, r.p95, r.p99, r.max = append(r.p50, nil), append(r.p90, nil), append(r.p95, nil), append(r.p99, nil), append(r.max, nil)
		}
		if h := s.LatencyHistogram; h != nil {
			r.histBounds = append(r.histBounds, h.BoundsMs)
			if cap(counts)-len(counts) < len(h.Counts) {
				counts = make([]uint64, 0, len(h.Counts)*(len(b.Samples)-i))
			}
			from := len(counts)
			for _, c := range h.Counts {
				counts = append(counts, c.Value)
			}
			r.histCounts = append(r.histCounts, counts[from:len(counts):len(counts)])
		} else {
			r.histBounds = append(r.histBounds, []float64{})
			r.histCounts = append(r.histCounts, []uint64{})
		}
		r.sourceID = append(r.sourceID, sourceID)
	}
}

func (r *sampleRows) columns() []any {
	return []any{r.service, r.env, r.version, r.instance, r.time, r.intervalS, r.requests, r.errors,
		r.p50, r.p90, r.p95, r.p99, r.max, r.histBounds, r.histCounts, r.sourceID}
}

// reset empties the rows and keeps their memory for the next batch.
func (r *sampleRows) reset() {
	for _, col := range []*[]string{&r.service, &r.env, &r.version, &r.instance, &r.sourceID} {
		clear(*col) // let the strings go
		*col = (*col)[:0]
	}
	for _, col := range []*[]*float64{&r.p50, &r.p90, &r.p95, &r.p99, &r.max} {
		clear(*col)
		*col = (*col)[:0]
	}
	clear(r.histBounds)
	clear(r.histCounts)
	r.time, r.intervalS, r.requests, r.errors = r.time[:0], r.intervalS[:0], r.requests[:0], r.errors[:0]
	r.histBounds, r.histCounts = r.histBounds[:0], r.histCounts[:0]
}

// optional appends n's value to values and points at it; nil when n is absent.
func optional(values *[]float64, n schema.Number) *float64 {
	if !n.Set {
		return nil
	}
	*values = append(*values, n.Value)
	return &(*values)[len(*values)-1]
}

// eventRows are rows of the raw `events` table.
type eventRows struct {
	eventID, typ, service, env []string
	time, receivedAt           []time.Time
	payload                    []string
}

const eventColumns = "event_id, type, service, env, time, received_at, payload"

func (r *eventRows) add(ev schema.Event, receivedAt time.Time, payload []byte) {
	r.eventID = append(r.eventID, ev.EventID())
	r.typ = append(r.typ, string(ev.EventType()))
	r.service = append(r.service, ev.EventService())
	r.env = append(r.env, eventEnv(ev))
	r.time = append(r.time, ev.EventTime().Time)
	r.receivedAt = append(r.receivedAt, receivedAt)
	r.payload = append(r.payload, string(payload))
}

func (r *eventRows) len() int { return len(r.eventID) }

func (r *eventRows) columns() []any {
	return []any{r.eventID, r.typ, r.service, r.env, r.time, r.receivedAt, r.payload}
}

func eventEnv(ev schema.Event) string {
	switch e := ev.(type) {
	case *schema.Deploy:
		return e.Env
	case *schema.Incident:
		return e.Env
	case *schema.MetricsBatch:
		return e.Env
	case *schema.Verdict:
		return e.Env
	case *schema.Delivery:
		return e.Env
	case *schema.Alert:
		return e.Env
	case *schema.RollbackSignal:
		return e.Env
	case *schema.Silence:
		return e.Env
	case *schema.Acknowledgement:
		return e.Env
	}
	return ""
}

// deployRows are rows of `deploy_changes`: one per status change.
type deployRows struct {
	deployID, status                []string
	statusRank                      []uint8
	service, env, version, previous []string
	eventTime                       []time.Time
	startedAt, finishedAt           []*time.Time
	author, strategy, url           []string
	labelKeys, labelValues          [][]string
	commitSHAs                      [][]string
	commitTimes                     [][]time.Time
	commitAuthors, commitMessages   [][]string
}

const deployColumns = "deploy_id, status, status_rank, service, env, version, previous_version, event_time, " +
	"started_at, finished_at, author, strategy, url, label_keys, label_values, " +
	"commit_shas, commit_times, commit_authors, commit_messages"

func (r *deployRows) add(d *schema.Deploy) {
	r.deployID = append(r.deployID, d.ID)
	r.status = append(r.status, string(d.Status))
	r.statusRank = append(r.statusRank, d.Status.Rank())
	r.service = append(r.service, d.Service)
	r.env = append(r.env, d.Env)
	r.version = append(r.version, d.Version)
	r.previous = append(r.previous, d.PreviousVersion)
	r.eventTime = append(r.eventTime, d.EventTime().Time)
	r.startedAt = append(r.startedAt, optionalTime(d.StartedAt))
	r.finishedAt = append(r.finishedAt, optionalTime(d.FinishedAt))
	r.author = append(r.author, d.Author)
	r.strategy = append(r.strategy, string(d.Strategy))
	r.url = append(r.url, d.URL)
	keys, values := sortedLabels(d.Labels)
	r.labelKeys = append(r.labelKeys, keys)
	r.labelValues = append(r.labelValues, values)
	shas, times, authors, messages := make([]string, len(d.Commits)), make([]time.Time, len(d.Commits)), make([]string, len(d.Commits)), make([]string, len(d.Commits))
	for i, c := range d.Commits {
		shas[i], times[i], authors[i], messages[i] = c.SHA, c.Time.Time, c.Author, c.Message
		if c.Time.Time.IsZero() {
			times[i] = time.Unix(0, 0).UTC() // ClickHouse DateTime has no null inside arrays: epoch means unknown
		}
	}
	r.commitSHAs = append(r.commitSHAs, shas)
	r.commitTimes = append(r.commitTimes, times)
	r.commitAuthors = append(r.commitAuthors, authors)
	r.commitMessages = append(r.commitMessages, messages)
}

func (r *deployRows) len() int { return len(r.deployID) }

func (r *deployRows) columns() []any {
	return []any{r.deployID, r.status, r.statusRank, r.service, r.env, r.version, r.previous, r.eventTime,
		r.startedAt, r.finishedAt, r.author, r.strategy, r.url, r.labelKeys, r.labelValues,
		r.commitSHAs, r.commitTimes, r.commitAuthors, r.commitMessages}
}

// incidentRows are rows of `incident_changes`.
type incidentRows struct {
	incidentID, status, service, env []string
	time                             []time.Time
	title, source, deployID          []string
}

const incidentColumns = "incident_id, status, service, env, time, title, source, deploy_id"

func (r *incidentRows) add(in *schema.Incident) {
	r.incidentID = append(r.incidentID, in.ID)
	r.status = append(r.status, string(in.Status))
	r.service = append(r.service, in.Service)
	r.env = append(r.env, in.Env)
	r.time = append(r.time, in.Time.Time)
	r.title = append(r.title, in.Title)
	r.source = append(r.source, in.Source)
	r.deployID = append(r.deployID, in.DeployID)
}

func (r *incidentRows) len() int { return len(r.incidentID) }

func (r *incidentRows) columns() []any {
	return []any{r.incidentID, r.status, r.service, r.env, r.time, r.title, r.source, r.deployID}
}

// commitRows are rows of `commits`: one per commit a push carried, keyed by
// (service, head_sha, sha), so a redelivered push replaces its copy.
type commitRows struct {
	service, repo, ref, sha []string
	commitTime              []time.Time
	author, message         []string
	headSHA, pushID         []string
	pushedAt                []time.Time
}

const commitColumns = "service, repo, ref, sha, commit_time, author, message, head_sha, push_id, pushed_at"

func (r *commitRows) add(p *schema.Push) {
	for _, c := range p.Commits {
		r.service = append(r.service, p.Service)
		r.repo = append(r.repo, p.Repo)
		r.ref = append(r.ref, p.Ref)
		r.sha = append(r.sha, c.SHA)
		r.commitTime = append(r.commitTime, c.Time.Time)
		r.author = append(r.author, c.Author)
		r.message = append(r.message, c.Message)
		r.headSHA = append(r.headSHA, p.HeadSHA)
		r.pushID = append(r.pushID, p.ID)
		r.pushedAt = append(r.pushedAt, p.PushedAt.Time)
	}
}

func (r *commitRows) len() int { return len(r.sha) }

func (r *commitRows) columns() []any {
	return []any{r.service, r.repo, r.ref, r.sha, r.commitTime, r.author, r.message, r.headSHA, r.pushID, r.pushedAt}
}

func optionalTime(t schema.Time) *time.Time {
	if t.Time.IsZero() {
		return nil
	}
	v := t.Time
	return &v
}

func sortedLabels(labels map[string]string) (keys, values []string) {
	keys = make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	values = make([]string, len(keys))
	for i, k := range keys {
		values[i] = labels[k]
	}
	return keys, values
}
