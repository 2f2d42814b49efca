package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/schema"
)

// Prometheus splits the series of one scrape over several requests
// (queue_config.max_samples_per_send, several shards), so a sample cannot be
// built from one request: POST /api/v1/write stores what each request gives
// to each sample (a part) in RemoteWriteParts, and RemoteWriteFinisher folds
// a sample's parts into one complete sample once no more are expected.

// RemoteWriteParts stores the parts of remote_write samples (a JetStream
// key-value bucket: eventlog.Bucket).
type RemoteWriteParts interface {
	// Put returns once value is stored under key.
	Put(ctx context.Context, key string, value []byte) error
}

// RemoteWritePartLog is what RemoteWriteFinisher reads parts from.
type RemoteWritePartLog interface {
	// Watch calls fn with every key stored, then with key "" once those
	// were all sent, then with every change, until ctx is done or the
	// watch fails. A deleted key comes with a nil value.
	Watch(ctx context.Context, fn func(key string, value []byte)) error
	Delete(ctx context.Context, key string) error
}

// DefaultRemoteWriteFinishDelay is longer than Prometheus' default
// queue_config.batch_send_deadline (5 s), within which the parts of a scrape
// are sent.
const DefaultRemoteWriteFinishDelay = 10 * time.Second

// sampleKeyHash names a sample in part keys and in its message id.
func sampleKeyHash(k rwSampleKey) string {
	h := sha256.New()
	for _, s := range []string{k.service, k.env, k.version, k.instance} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(k.tsMs)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// partKey is <sample key hash>.<hash of the part's series>: a retried
// request stores the same part under the same key.
func partKey(p *rwPart) string {
	series := make([]uint64, len(p.contribs))
	for i, c := range p.contribs {
		series[i] = c.series
	}
	slices.Sort(series)
	h := fnv.New128a()
	var b [8]byte
	for _, s := range series {
		binary.BigEndian.PutUint64(b[:], s)
		h.Write(b[:])
	}
	return sampleKeyHash(p.key) + "." + hex.EncodeToString(h.Sum(nil))
}

const partEncodingV1 = 1

func appendPart(b []byte, p *rwPart) []byte {
	b = append(b, partEncodingV1)
	for _, s := range []string{p.key.service, p.key.env, p.key.version, p.key.instance} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, p.key.tsMs)
	b = binary.AppendUvarint(b, uint64(len(p.contribs)))
	for _, c := range p.contribs {
		b = binary.LittleEndian.AppendUint64(b, c.series)
		var flags byte
		if c.hist {
			flags |= 1
		}
		if c.isError {
			flags |= 2
		}
		b = append(b, flags)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.le))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.delta))
		b = binary.AppendVarint(b, c.intervalMs)
	}
	return b
}

var errBadPart = errors.New("not a remote_write part")

func decodePart(b []byte) (*rwPart, error) {
	if len(b) == 0 || b[0] != partEncodingV1 {
		return nil, errBadPart
	}
	b = b[1:]
	str := func() (string, bool) {
		n, m := binary.Uvarint(b)
		if m <= 0 || n > uint64(len(b)-m) {
			return "", false
		}
		s := string(b[m : m+int(n)])
		b = b[m+int(n):]
		return s, true
	}
	p := &rwPart{}
	for _, s := range []*string{&p.key.service, &p.key.env, &p.key.version, &p.key.instance} {
		v, ok := str()
		if !ok {
			return nil, errBadPart
		}
		*s = v
	}
	ts, m := binary.Varint(b)
	if m <= 0 {
		return nil, errBadPart
	}
	p.key.tsMs, b = ts, b[m:]
	n, m := binary.Uvarint(b)
	const fixed = 8 + 1 + 8 + 8 + 1
	if m <= 0 || n > uint64(len(b)-m)/fixed {
		return nil, errBadPart
	}
	b = b[m:]
	p.contribs = make([]rwContrib, n)
	for i := range p.contribs {
		if len(b) < fixed {
			return nil, errBadPart
		}
		c := &p.contribs[i]
		c.series = binary.LittleEndian.Uint64(b)
		c.hist, c.isError = b[8]&1 != 0, b[8]&2 != 0
		c.le = math.Float64frombits(binary.LittleEndian.Uint64(b[9:]))
		c.delta = math.Float64frombits(binary.LittleEndian.Uint64(b[17:]))
		b = b[25:]
		iv, m := binary.Varint(b)
		if m <= 0 {
			return nil, errBadPart
		}
		c.intervalMs, b = iv, b[m:]
	}
	if len(b) != 0 {
		return nil, errBadPart
	}
	return p, nil
}

// eachParallel calls fn for every key, at most n at once, and returns the
// first error.
func eachParallel(ctx context.Context, n int, keys []string, fn func(ctx context.Context, key string) error) error {
	if len(keys) == 1 {
		return fn(ctx, keys[0])
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	slots := make(chan struct{}, n)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for _, k := range keys {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := fn(ctx, k); err != nil {
				once.Do(func() { first = err })
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// RemoteWriteFinisherConfig holds the finisher's settings.
type RemoteWriteFinisherConfig struct {
	// FinishDelay is how long a sample waits for its parts, from both its
	// timestamp and its first part's arrival; 0 means
	// DefaultRemoteWriteFinishDelay.
	FinishDelay time.Duration
	// MaxMessageBytes bounds the encoded size of one message; 0 means 960 KiB.
	MaxMessageBytes int
	Logger          *slog.Logger
	Metrics         *metrics.Set
}

// RemoteWriteFinisher folds the parts of each remote_write sample into one
// complete sample, publishes it with an id derived from the sample (so that
// publishing it again is deduplicated by the event log), then deletes its
// parts. A part arriving after its sample was finished is dropped: published,
// it would replace the complete sample with a partial one.
type RemoteWriteFinisher struct {
	parts RemoteWritePartLog
	pub   Publisher
	cfg   RemoteWriteFinisherConfig
	log   *slog.Logger

	pending  *metrics.Gauge
	late     *metrics.Counter
	samples  *metrics.Counter
	dropped  *metrics.Counter
	failures *metrics.Counter
}

// NewRemoteWriteFinisher builds a finisher; Run runs it.
func NewRemoteWriteFinisher(parts RemoteWritePartLog, pub Publisher, cfg RemoteWriteFinisherConfig) *RemoteWriteFinisher {
	if cfg.FinishDelay <= 0 {
		cfg.FinishDelay = DefaultRemoteWriteFinishDelay
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 960 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	return &RemoteWriteFinisher{
		parts: parts, pub: pub, cfg: cfg, log: cfg.Logger,
		pending:  cfg.Metrics.GetOrCreateGauge(`deploywatch_remote_write_pending_samples`, nil),
		late:     cfg.Metrics.GetOrCreateCounter(`deploywatch_remote_write_late_parts_total`),
		samples:  cfg.Metrics.GetOrCreateCounter(`deploywatch_remote_write_samples_total`),
		dropped:  cfg.Metrics.GetOrCreateCounter(`deploywatch_remote_write_dropped_samples_total`),
		failures: cfg.Metrics.GetOrCreateCounter(`deploywatch_remote_write_finish_errors_total`),
	}
}

// rwPending is a sample waiting for its parts.
type rwPending struct {
	key   rwSampleKey
	hash  string
	first time.Time          // when its first part arrived
	parts map[string]*rwPart // by part key
}

// rwFinishState is what the finisher holds between ticks.
type rwFinishState struct {
	ready    bool // the parts stored before the watch began were all read
	pending  map[string]*rwPending
	finished map[string]time.Time // sample key hash -> when it was finished
}

type rwPartEvent struct {
	key   string
	value []byte
}

// Run finishes samples until ctx is done; it then returns nil. A failed
// watch of the parts is started again: it replays the parts stored.
func (f *RemoteWriteFinisher) Run(ctx context.Context) error {
	st := &rwFinishState{finished: map[string]time.Time{}}
	for {
		err := f.run(ctx, st)
		if ctx.Err() != nil {
			return nil
		}
		f.failures.Inc()
		f.log.Warn("the watch of remote_write parts failed; watching again", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (f *RemoteWriteFinisher) run(ctx context.Context, st *rwFinishState) error {
	st.ready, st.pending = false, map[string]*rwPending{}
	f.pending.Set(0)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan rwPartEvent, 1024)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- f.parts.Watch(wctx, func(key string, value []byte) {
			select {
			case events <- rwPartEvent{key, value}:
			case <-wctx.Done():
			}
		})
	}()
	tick := time.NewTicker(min(max(f.cfg.FinishDelay/10, 50*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-watchDone
			return ctx.Err()
		case err := <-watchDone:
			return err
		case e := <-events:
			f.receive(ctx, st, e)
		case now := <-tick.C:
			if st.ready {
				f.finishDue(ctx, st, now)
			}
		}
	}
}

// receive takes one change of the stored parts.
func (f *RemoteWriteFinisher) receive(ctx context.Context, st *rwFinishState, e rwPartEvent) {
	if e.key == "" {
		st.ready = true
		return
	}
	hash, _, ok := strings.Cut(e.key, ".")
	if !ok {
		return
	}
	if e.value == nil {
		// Deleted, by this finisher or another replica's: once all of a
		// sample's parts are gone it was finished elsewhere.
		if p := st.pending[hash]; p != nil {
			delete(p.parts, e.key)
			if len(p.parts) == 0 {
				delete(st.pending, hash)
				st.finished[hash] = time.Now()
				f.pending.Set(float64(len(st.pending)))
			}
		}
		return
	}
	if _, done := st.finished[hash]; done {
		f.late.Inc()
		f.log.Warn("dropping a remote_write part that arrived after its sample was finished: raise --remote-write-finish-delay if this recurs", "part", e.key)
		f.deleteParts(ctx, []string{e.key})
		return
	}
	part, err := decodePart(e.value)
	if err != nil || sampleKeyHash(part.key) != hash {
		f.dropped.Inc()
		f.log.Warn("dropping a stored remote_write part that cannot be decoded", "part", e.key, "bytes", len(e.value))
		f.deleteParts(ctx, []string{e.key})
		return
	}
	p := st.pending[hash]
	if p == nil {
		p = &rwPending{key: part.key, hash: hash, first: time.Now(), parts: map[string]*rwPart{}}
		st.pending[hash] = p
		f.pending.Set(float64(len(st.pending)))
	}
	p.parts[e.key] = part
}

// finishDue publishes the samples whose delay has passed, then deletes their parts.
func (f *RemoteWriteFinisher) finishDue(ctx context.Context, st *rwFinishState, now time.Time) {
	// Late parts are recognised for a while; one later still is taken for
	// a new sample (and its part would then replace the complete sample).
	forget := now.Add(-max(15*time.Minute, 10*f.cfg.FinishDelay))
	for h, at := range st.finished {
		if at.Before(forget) {
			delete(st.finished, h)
		}
	}
	var due []*rwPending
	for _, p := range st.pending {
		at := time.UnixMilli(p.key.tsMs)
		if p.first.After(at) {
			at = p.first
		}
		if !now.Before(at.Add(f.cfg.FinishDelay)) {
			due = append(due, p)
		}
	}
	if len(due) == 0 {
		return
	}
	slices.SortFunc(due, func(a, b *rwPending) int { return strings.Compare(a.hash, b.hash) })
	const perPublish = 1000
	for len(due) > 0 && ctx.Err() == nil {
		chunk := due[:min(perPublish, len(due))]
		due = due[len(chunk):]
		var msgs []schema.Message
		var keys []string
		published := 0
		for _, p := range chunk {
			for k := range p.parts {
				keys = append(keys, k)
			}
			b := f.fold(p)
			if err := b.Validate(); err != nil {
				f.dropped.Inc()
				f.log.Warn("dropping a remote_write sample that is not a valid deploywatch sample", "service", b.Service, "env", b.Env, "err", err)
				continue
			}
			m, err := schema.EncodeMessages(&b, 1, f.cfg.MaxMessageBytes)
			if err != nil {
				f.dropped.Inc()
				f.log.Warn("dropping a remote_write sample that cannot be encoded", "service", b.Service, "env", b.Env, "err", err)
				continue
			}
			msgs = append(msgs, m...)
			published++
		}
		if err := f.pub.Publish(ctx, msgs); err != nil {
			f.failures.Inc()
			if ctx.Err() == nil {
				f.log.Warn("cannot publish finished remote_write samples; retrying", "samples", len(msgs), "err", err)
			}
			return
		}
		f.samples.Add(published)
		for _, p := range chunk {
			delete(st.pending, p.hash)
			st.finished[p.hash] = now
		}
		f.pending.Set(float64(len(st.pending)))
		f.deleteParts(ctx, keys)
	}
}

// fold builds the sample's batch, with an id derived from the sample alone.
func (f *RemoteWriteFinisher) fold(p *rwPending) schema.MetricsBatch {
	keys := make([]string, 0, len(p.parts))
	for k := range p.parts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]*rwPart, len(keys))
	for i, k := range keys {
		parts[i] = p.parts[k]
	}
	b := schema.MetricsBatch{
		Type: schema.TypeMetrics, ID: "remote_write:" + p.hash,
		Service: p.key.service, Env: p.key.env,
		Samples: []schema.Sample{foldSample(p.key, parts)},
	}
	b.Normalize(nil)
	return b
}

// deleteParts deletes parts whose sample was published: a part left behind
// (a failed delete) is finished again after a restart, under the same id.
func (f *RemoteWriteFinisher) deleteParts(ctx context.Context, keys []string) {
	if len(keys) == 0 {
		return
	}
	err := eachParallel(ctx, 16, keys, func(ctx context.Context, k string) error { return f.parts.Delete(ctx, k) })
	if err != nil && ctx.Err() == nil {
		f.failures.Inc()
		f.log.Warn("cannot delete finished remote_write parts", "parts", len(keys), "err", err)
	}
}

// storeParts stores a request's parts, returning once every one is stored.
func storeParts(ctx context.Context, store RemoteWriteParts, parts map[rwSampleKey]*rwPart) error {
	keys := make([]string, 0, len(parts))
	values := make(map[string][]byte, len(parts))
	for _, p := range parts {
		k := partKey(p)
		keys = append(keys, k)
		values[k] = appendPart(nil, p)
	}
	if err := eachParallel(ctx, 16, keys, func(ctx context.Context, k string) error { return store.Put(ctx, k, values[k]) }); err != nil {
		return fmt.Errorf("cannot store %d remote_write parts: %w", len(keys), err)
	}
	return nil
}
