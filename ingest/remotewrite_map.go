package ingest

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/deploywatch/deploywatch/schema"
)

// RemoteWriteConfig says how POST /api/v1/write maps Prometheus series to
// deploywatch samples. The zero value of a field means its default.
type RemoteWriteConfig struct {
	// RequestCounters are the names of the request counters; default
	// http_requests_total and http_server_requests_total.
	RequestCounters []string
	// LatencyHistograms are the names of the histograms' bucket series;
	// default http_request_duration_seconds_bucket and
	// http_server_request_duration_seconds_bucket. Bounds of a name ending in
	// _seconds_bucket are converted to milliseconds.
	LatencyHistograms []string
	// StatusLabels name a counter's status code, first found wins; default code, status.
	StatusLabels []string
	// ErrorStatus matches the status codes counted as errors; default 5.. (anchored).
	ErrorStatus string
	// ServiceLabels name the service, first found wins; default service, job.
	ServiceLabels []string
	// EnvLabel, VersionLabel and InstanceLabel default to env, version and instance.
	EnvLabel, VersionLabel, InstanceLabel string
	// DefaultEnv is the env of series without an env label; default production.
	DefaultEnv string
	// MaxSeries bounds the series whose last value is remembered; default 200000.
	MaxSeries int
	// MaxInflight bounds the remote_write requests handled at once; more are
	// answered 429. Default 16.
	MaxInflight int
	// MaxInflightBytes bounds the decoded size of the remote_write requests
	// handled at once (decoding one takes a few times its decoded size in
	// memory): a request that would go above it is answered 429, unless no
	// other is in flight. Default 32 MiB.
	MaxInflightBytes int64
	// Parts stores what each request gives to each sample until
	// RemoteWriteFinisher folds them; required to take samples.
	Parts RemoteWriteParts
}

// withDefaults fills in the defaults of unset fields.
func (c RemoteWriteConfig) withDefaults() RemoteWriteConfig {
	if len(c.RequestCounters) == 0 {
		c.RequestCounters = []string{"http_requests_total", "http_server_requests_total"}
	}
	if len(c.LatencyHistograms) == 0 {
		c.LatencyHistograms = []string{"http_request_duration_seconds_bucket", "http_server_request_duration_seconds_bucket"}
	}
	if len(c.StatusLabels) == 0 {
		c.StatusLabels = []string{"code", "status"}
	}
	if c.ErrorStatus == "" {
		c.ErrorStatus = "5.."
	}
	if len(c.ServiceLabels) == 0 {
		c.ServiceLabels = []string{"service", "job"}
	}
	if c.EnvLabel == "" {
		c.EnvLabel = "env"
	}
	if c.VersionLabel == "" {
		c.VersionLabel = "version"
	}
	if c.InstanceLabel == "" {
		c.InstanceLabel = "instance"
	}
	if c.DefaultEnv == "" {
		c.DefaultEnv = "production"
	}
	if c.MaxSeries <= 0 {
		c.MaxSeries = 200_000
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 16
	}
	if c.MaxInflightBytes <= 0 {
		c.MaxInflightBytes = 32 << 20
	}
	return c
}

// Validate reports every problem of the configuration at once.
func (c RemoteWriteConfig) Validate() error {
	var errs []error
	c = c.withDefaults()
	if _, err := regexp.Compile("^(?:" + c.ErrorStatus + ")$"); err != nil {
		errs = append(errs, fmt.Errorf("remote_write ErrorStatus %q is not a regular expression: %v", c.ErrorStatus, err))
	}
	for _, n := range c.LatencyHistograms {
		if !strings.HasSuffix(n, "_bucket") {
			errs = append(errs, fmt.Errorf("remote_write LatencyHistograms: %q is not a histogram's bucket series: name the one ending in _bucket", n))
		}
	}
	if s := sanitizeName(c.DefaultEnv); s != c.DefaultEnv {
		errs = append(errs, fmt.Errorf("remote_write DefaultEnv %q is not an env name: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. %q", c.DefaultEnv, s))
	}
	return errors.Join(errs...)
}

// rwPoint is the last value seen of one series.
type rwPoint struct {
	value float64
	tsMs  int64
}

// rwMapper turns remote_write series into samples. Counters become deltas
// between consecutive samples of a series, so it remembers each series' last
// value; the first sample of a series only primes it.
type rwMapper struct {
	cfg        RemoteWriteConfig
	errStatus  *regexp.Regexp
	counters   map[string]bool
	histograms map[string]bool
	dropped    [rwDropReasons]*metrics.Counter
	evicted    *metrics.Counter

	mu   sync.Mutex
	last map[string]rwPoint
}

// rwDrop is why the samples of a series cannot be used.
type rwDrop int

const (
	dropNoService rwDrop = iota // no service label, or one without a letter or digit
	dropBadEnv                  // an env label without a letter or digit
	dropLongLabel               // a version or instance label above 256 bytes
	dropBadLe                   // a histogram bucket whose le is not +Inf or a finite number >= 0
	rwDropReasons
)

// rwDropNames are the reasons of deploywatch_remote_write_dropped_samples_total.
var rwDropNames = [rwDropReasons]string{"no_service", "bad_env", "long_label", "bad_le"}

// droppedSamplesCounter counts samples dropped for reason; remote_write's
// mapper and finisher share the metric.
func droppedSamplesCounter(set *metrics.Set, reason string) *metrics.Counter {
	return set.GetOrCreateCounter(`deploywatch_remote_write_dropped_samples_total{reason="` + reason + `"}`)
}

// maxLabelText is the longest version or instance a sample takes.
const maxLabelText = 256

func newRWMapper(cfg RemoteWriteConfig, set *metrics.Set) (*rwMapper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if set == nil {
		set = metrics.NewSet()
	}
	cfg = cfg.withDefaults()
	re := regexp.MustCompile("^(?:" + cfg.ErrorStatus + ")$")
	m := &rwMapper{cfg: cfg, errStatus: re, counters: map[string]bool{}, histograms: map[string]bool{}, last: map[string]rwPoint{},
		evicted: set.GetOrCreateCounter(`deploywatch_remote_write_evicted_series_total`)}
	for i, r := range rwDropNames {
		m.dropped[i] = droppedSamplesCounter(set, r)
	}
	for _, n := range cfg.RequestCounters {
		m.counters[n] = true
	}
	for _, n := range cfg.LatencyHistograms {
		m.histograms[n] = true
	}
	return m, nil
}

// rwSampleKey identifies one output sample.
type rwSampleKey struct {
	service, env, version, instance string
	tsMs                            int64
}

type rwAgg struct {
	requests, errors float64
	counted          bool
	intervalMs       int64
	buckets          map[float64]float64 // bound in ms (+Inf included) -> count delta
}

// rwContrib is what one series gives to one sample: a counter's increase,
// or a histogram bucket's.
type rwContrib struct {
	series     uint64 // hash of the series' labels
	hist       bool
	isError    bool
	le         float64 // the bucket's bound in ms
	delta      float64
	intervalMs int64
}

// rwPart is what one request gives to one sample. Prometheus splits a
// scrape's series over several requests, so a sample is only complete once
// every part arrived: see rwFinisher.
type rwPart struct {
	key      rwSampleKey
	contribs []rwContrib
}

// rwUpdates are the series' new last values and the count of the samples
// that cannot be used, applied by commit once the samples the request
// produced were stored, so a retried request maps the same and counts once.
type rwUpdates struct {
	last    map[string]rwPoint
	dropped [rwDropReasons]int
}

// maxIntervalMs is the longest gap between two samples of a series that
// still gives a delta (schema's limit on interval_s).
const maxIntervalMs = 86400 * 1000

// mapParts maps series to the parts they give to samples.
func (m *rwMapper) mapParts(series []rwSeries) (map[rwSampleKey]*rwPart, rwUpdates) {
	updates := rwUpdates{last: map[string]rwPoint{}}
	parts := map[rwSampleKey]*rwPart{}
	var key strings.Builder
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range series {
		s := &series[i]
		name := labelValue(s.Labels, "__name__")
		isCounter, isHist := m.counters[name], m.histograms[name]
		if !isCounter && !isHist || len(s.Samples) == 0 {
			continue
		}
		var le float64
		if isHist {
			v, ok := parseLe(labelValue(s.Labels, "le"))
			if !ok {
				updates.dropped[dropBadLe] += len(s.Samples)
				continue
			}
			le = v
			if strings.HasSuffix(name, "_seconds_bucket") && !math.IsInf(le, 1) {
				le *= 1000
			}
		}
		isError := false
		if isCounter {
			for _, l := range m.cfg.StatusLabels {
				if v := labelValue(s.Labels, l); v != "" {
					isError = m.errStatus.MatchString(v)
					break
				}
			}
		}
		// Service and env become parts of JetStream subjects: a value such
		// as PodMonitor's job ns/name is made a name (ns-name) here, as a
		// sample the finisher found invalid would be dropped after the 204.
		service := ""
		for _, l := range m.cfg.ServiceLabels {
			if service = labelValue(s.Labels, l); service != "" {
				break
			}
		}
		if service = sanitizeName(service); service == "" {
			updates.dropped[dropNoService] += len(s.Samples)
			continue
		}
		env := m.cfg.DefaultEnv
		if v := labelValue(s.Labels, m.cfg.EnvLabel); v != "" {
			if env = sanitizeName(v); env == "" {
				updates.dropped[dropBadEnv] += len(s.Samples)
				continue
			}
		}
		version := labelValue(s.Labels, m.cfg.VersionLabel)
		instance := labelValue(s.Labels, m.cfg.InstanceLabel)
		if len(version) > maxLabelText || len(instance) > maxLabelText {
			updates.dropped[dropLongLabel] += len(s.Samples)
			continue
		}

		key.Reset()
		for _, l := range s.Labels {
			key.WriteString(l.Name)
			key.WriteByte('=')
			key.WriteString(l.Value)
			key.WriteByte(0)
		}
		k := key.String()
		prev, ok := updates.last[k]
		if !ok {
			prev, ok = m.last[k]
		}
		var seriesHash uint64
		for _, smp := range s.Samples {
			if math.IsNaN(smp.Value) || math.IsInf(smp.Value, 0) || smp.Value < 0 {
				continue // a stale marker or nonsense
			}
			if ok && smp.TimestampMs <= prev.tsMs {
				continue // out of order or a duplicate
			}
			cur := rwPoint{value: smp.Value, tsMs: smp.TimestampMs}
			if !ok || cur.tsMs-prev.tsMs > maxIntervalMs {
				prev, ok = cur, true // primes the series
				continue
			}
			delta := cur.value - prev.value
			if delta < 0 {
				delta = cur.value // a counter reset
			}
			interval := cur.tsMs - prev.tsMs
			prev = cur
			sk := rwSampleKey{service, env, version, instance, cur.tsMs}
			p := parts[sk]
			if p == nil {
				p = &rwPart{key: sk}
				parts[sk] = p
			}
			if seriesHash == 0 {
				h := fnv.New64a()
				h.Write([]byte(k))
				seriesHash = h.Sum64()
			}
			p.contribs = append(p.contribs, rwContrib{series: seriesHash, hist: isHist, isError: isError, le: le, delta: delta, intervalMs: interval})
		}
		if ok {
			updates.last[k] = prev
		}
	}
	return parts, updates
}

// commit remembers the series' new last values, dropping arbitrary series
// (counted as evicted: their next sample only primes them again) when more
// than MaxSeries are remembered, and counts the samples dropped.
func (m *rwMapper) commit(u rwUpdates) {
	for i, n := range u.dropped {
		if n > 0 {
			m.dropped[i].Add(n)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, p := range u.last {
		if old, ok := m.last[k]; ok && old.tsMs >= p.tsMs {
			continue
		}
		if _, ok := m.last[k]; !ok && len(m.last) >= m.cfg.MaxSeries {
			for victim := range m.last {
				delete(m.last, victim)
				m.evicted.Inc()
				break
			}
		}
		m.last[k] = p
	}
}

// foldSample folds the parts of one sample into the sample: requests and
// errors summed over the counter series, histogram buckets summed per bound,
// the longest interval. A series found in several parts (a request that was
// stored twice) counts once, so folding is idempotent.
func foldSample(k rwSampleKey, parts []*rwPart) schema.Sample {
	var a rwAgg
	seen := map[uint64]bool{}
	for _, p := range parts {
		for _, c := range p.contribs {
			if seen[c.series] {
				continue
			}
			seen[c.series] = true
			a.intervalMs = max(a.intervalMs, c.intervalMs)
			if c.hist {
				if a.buckets == nil {
					a.buckets = map[float64]float64{}
				}
				a.buckets[c.le] += c.delta
				continue
			}
			a.counted = true
			a.requests += c.delta
			if c.isError {
				a.errors += c.delta
			}
		}
	}
	s := schema.Sample{
		Time:      schema.At(time.UnixMilli(k.tsMs)),
		IntervalS: schema.NumberOf(float64(a.intervalMs) / 1000),
		Version:   k.version,
		Instance:  k.instance,
	}
	if a.buckets != nil {
		s.LatencyHistogram = histogram(a.buckets) // nil when it has no usable bounds
	}
	switch {
	case a.counted:
		s.Requests = schema.CountOf(uint64(math.Round(a.requests)))
		s.Errors = schema.CountOf(min(uint64(math.Round(a.errors)), s.Requests.Value))
	case a.buckets != nil:
		// Without a request counter the histogram's count stands in.
		s.Requests = schema.CountOf(uint64(math.Round(a.buckets[math.Inf(1)])))
		s.Errors = schema.CountOf(0)
	}
	return s
}

// histogram turns cumulative bucket deltas (by upper bound, +Inf included)
// into deploywatch's per-bucket counts. It returns nil for buckets that make
// no deploywatch histogram (only +Inf, as when the part with the finite
// buckets came too late, or more bounds than a sample may have): the sample
// then keeps its requests and errors without a histogram, rather than being
// refused whole after Prometheus got its 204.
func histogram(buckets map[float64]float64) *schema.LatencyHistogram {
	bounds := make([]float64, 0, len(buckets))
	for b := range buckets {
		if !math.IsInf(b, 1) {
			bounds = append(bounds, b)
		}
	}
	if len(bounds) == 0 || len(bounds) > schema.MaxHistogramBounds {
		return nil
	}
	slices.Sort(bounds)
	h := &schema.LatencyHistogram{BoundsMs: bounds, Counts: make([]schema.Count, len(bounds)+1)}
	prev := 0.0
	for i, b := range bounds {
		c := buckets[b]
		h.Counts[i] = schema.CountOf(uint64(math.Round(max(c-prev, 0))))
		prev = max(prev, c)
	}
	inf, ok := buckets[math.Inf(1)]
	if !ok {
		inf = prev
	}
	h.Counts[len(bounds)] = schema.CountOf(uint64(math.Round(max(inf-prev, 0))))
	return h
}

func labelValue(ls []rwLabel, name string) string {
	for i := range ls {
		if ls[i].Name == name {
			return ls[i].Value
		}
	}
	return ""
}

// parseLe parses a bucket's upper bound: +Inf or a finite number >= 0. NaN
// would be a bound no other equals, -Inf or a negative bound no latency.
func parseLe(s string) (float64, bool) {
	if s == "+Inf" {
		return math.Inf(1), true
	}
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil || math.IsNaN(v) || math.IsInf(v, -1) || v < 0:
		return 0, false
	case v == 0:
		return 0, true // -0 too
	}
	return v, true
}

// sanitizeName makes a label value a deploywatch service or env name (1-128
// letters, digits, '.', '_' or '-', starting with a letter or digit): every
// other character becomes '-', leading '.', '_' and '-' are dropped, and the
// rest is cut to 128 bytes. It returns "" for a value without a letter or
// digit to start with.
func sanitizeName(v string) string {
	const maxName = 128
	valid := len(v) > 0 && len(v) <= maxName && isAlnum(v[0])
	for i := 0; valid && i < len(v); i++ {
		valid = isNameByte(v[i])
	}
	if valid {
		return v
	}
	b := make([]byte, 0, min(len(v), maxName))
	for _, r := range v {
		if len(b) == maxName {
			break
		}
		c := byte('-')
		if r < 0x80 && isNameByte(byte(r)) {
			c = byte(r)
		}
		if len(b) == 0 && !isAlnum(c) {
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isNameByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '-'
}
