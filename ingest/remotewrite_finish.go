package ingest

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
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

// RemoteWritePartLog is what RemoteWriteFinisher reads parts from, and where
// it marks the samples it finished. It should drop keys after a while (the
// JetStream bucket's MaxAge): the marks are never deleted otherwise.
type RemoteWritePartLog interface {
	RemoteWriteParts
	// Watch calls fn with every key stored, then with key "" once those
	// were all sent, then with every change, until ctx is done or the
	// watch fails. A deleted key comes with a nil value.
	Watch(ctx context.Context, fn func(key string, value []byte)) error
	// Has tells whether key is stored.
	Has(ctx context.Context, key string) (bool, error)
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

// maxContribBytes is the longest encoding of one contribution in a part.
const maxContribBytes = 8 + 1 + 8 + 8 + binary.MaxVarintLen64

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

// finishedSuffix ends the key <sample key hash>.finished, the mark of a
// finished sample. The finisher stores it, once the sample was published and
// before its parts are deleted, with the digests of the parts it folded: a
// part of a marked sample, left behind by a delete that failed or arriving
// late, is never folded into a partial sample that would replace the
// complete one, and a part stored again unchanged (a retried request) is
// told from a late one.
const finishedSuffix = "finished"

func markerKey(hash string) string { return hash + "." + finishedSuffix }

const markerEncodingV1 = 1

// partDigest identifies a stored part by its key and value.
func partDigest(key string, value []byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(value)
	return h.Sum64()
}

// appendMarker encodes a marker: when the sample was finished and the
// digests of the parts folded.
func appendMarker(b []byte, at time.Time, digests []uint64) []byte {
	b = append(b, markerEncodingV1)
	b = binary.AppendVarint(b, at.UnixMilli())
	b = binary.AppendUvarint(b, uint64(len(digests)))
	for _, d := range digests {
		b = binary.LittleEndian.AppendUint64(b, d)
	}
	return b
}

// decodeMarker decodes a marker; ok is false for one it cannot decode,
// which still marks its sample finished.
func decodeMarker(b []byte) (at time.Time, digests []uint64, ok bool) {
	if len(b) == 0 || b[0] != markerEncodingV1 {
		return time.Time{}, nil, false
	}
	b = b[1:]
	ms, m := binary.Varint(b)
	if m <= 0 {
		return time.Time{}, nil, false
	}
	b = b[m:]
	n, m := binary.Uvarint(b)
	if m <= 0 || len(b[m:])%8 != 0 || n != uint64(len(b[m:])/8) {
		return time.Time{}, nil, false
	}
	b = b[m:]
	digests = make([]uint64, n)
	for i := range digests {
		digests[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return time.UnixMilli(ms), digests, true
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
// publishing it again is deduplicated by the event log), marks it finished in
// the part log, then deletes its parts. A part arriving after its sample was
// finished is dropped: published, it would replace the complete sample with
// a partial one.
type RemoteWriteFinisher struct {
	parts RemoteWritePartLog
	pub   Publisher
	cfg   RemoteWriteFinisherConfig
	log   *slog.Logger

	pending     *metrics.Gauge
	late        *metrics.Counter
	samples     *metrics.Counter
	invalid     *metrics.Counter
	unencodable *metrics.Counter
	badParts    *metrics.Counter
	failures    *metrics.Counter
}

// cleanupTimeout bounds the marking of finished samples and the deleting of
// their parts. Both run on after the finisher's context is cancelled: a
// shutdown between a sample's publish and its marker would otherwise leave
// parts behind.
const cleanupTimeout = 10 * time.Second

// warnEvery is how often a warning of one kind is logged: a sender that gets
// every sample wrong would otherwise log one per sample.
const warnEvery = time.Minute

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
		pending:     cfg.Metrics.GetOrCreateGauge(`deploywatch_remote_write_pending_samples`, nil),
		late:        cfg.Metrics.GetOrCreateCounter(`deploywatch_remote_write_late_parts_total`),
		samples:     cfg.Metrics.GetOrCreateCounter(`deploywatch_remote_write_samples_total`),
		invalid:     droppedSamplesCounter(cfg.Metrics, "invalid"),
		unencodable: droppedSamplesCounter(cfg.Metrics, "unencodable"),
		badParts:    droppedSamplesCounter(cfg.Metrics, "bad_part"),
		failures:    cfg.Metrics.GetOrCreateCounter(`deploywatch_remote_write_finish_errors_total`),
	}
}

// rwPending is a sample waiting for its parts.
type rwPending struct {
	key     rwSampleKey
	hash    string
	first   time.Time          // when its first part arrived
	parts   map[string]*rwPart // by part key
	digests map[string]uint64  // partDigest by part key
}

// rwFinished is a sample finished, by this finisher or another.
type rwFinished struct {
	at      time.Time
	digests []uint64 // of the parts folded, when known
}

// rwFinishState is what the finisher holds between ticks.
type rwFinishState struct {
	ready    bool // the parts stored before the watch began were all read
	pending  map[string]*rwPending
	finished map[string]rwFinished // by sample key hash
	warnings map[string]*rwWarning // by message
}

// rwWarning is when a warning may be logged again, and how many were held
// back since it last was.
type rwWarning struct {
	next time.Time
	held int
}

// warn logs msg at most once per warnEvery, with the number held back.
func (f *RemoteWriteFinisher) warn(st *rwFinishState, msg string, args ...any) {
	w := st.warnings[msg]
	if w == nil {
		w = &rwWarning{}
		st.warnings[msg] = w
	}
	now := time.Now()
	if now.Before(w.next) {
		w.held++
		return
	}
	if w.held > 0 {
		args = append(args, "held_back", w.held)
	}
	w.next, w.held = now.Add(warnEvery), 0
	f.log.Warn(msg, args...)
}

// forgetAfter is how long a finished sample is remembered in memory; its
// marker stays in the part log longer, and a sample older than half of it
// is looked up there before it is published.
func (f *RemoteWriteFinisher) forgetAfter() time.Duration {
	return max(15*time.Minute, 10*f.cfg.FinishDelay)
}

type rwPartEvent struct {
	key   string
	value []byte
}

// Run finishes samples until ctx is done; it then returns nil. A failed
// watch of the parts is started again: it replays the parts stored.
func (f *RemoteWriteFinisher) Run(ctx context.Context) error {
	st := &rwFinishState{finished: map[string]rwFinished{}, warnings: map[string]*rwWarning{}}
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
	hash, rest, ok := strings.Cut(e.key, ".")
	if !ok {
		return
	}
	if rest == finishedSuffix {
		if e.value != nil {
			at, digests, _ := decodeMarker(e.value)
			f.marked(ctx, st, hash, at, digests)
		}
		return
	}
	if e.value == nil {
		// Deleted, by this finisher or another replica's: once all of a
		// sample's parts are gone it was finished elsewhere (a replica
		// that marks samples is seen to by its marker).
		if p := st.pending[hash]; p != nil {
			delete(p.parts, e.key)
			delete(p.digests, e.key)
			if len(p.parts) == 0 {
				delete(st.pending, hash)
				if _, ok := st.finished[hash]; !ok {
					st.finished[hash] = rwFinished{at: time.Now()}
				}
				f.pending.Set(float64(len(st.pending)))
			}
		}
		return
	}
	digest := partDigest(e.key, e.value)
	if fin, done := st.finished[hash]; done {
		// A part folded already, stored again by a retried request, is
		// no news; another is late.
		if !slices.Contains(fin.digests, digest) {
			f.latePart(st, e.key)
		}
		f.deleteParts(ctx, st, []string{e.key})
		return
	}
	part, err := decodePart(e.value)
	if err != nil || sampleKeyHash(part.key) != hash {
		f.badParts.Inc()
		f.warn(st, "dropping a stored remote_write part that cannot be decoded", "part", e.key, "bytes", len(e.value))
		f.deleteParts(ctx, st, []string{e.key})
		return
	}
	p := st.pending[hash]
	if p == nil {
		p = &rwPending{key: part.key, hash: hash, first: time.Now(), parts: map[string]*rwPart{}, digests: map[string]uint64{}}
		st.pending[hash] = p
		f.pending.Set(float64(len(st.pending)))
	}
	p.parts[e.key] = part
	p.digests[e.key] = digest
}

// marked takes the marker of a sample finished at at (zero: unknown): its
// parts still pending were left behind (a delete that failed) or are late,
// and are deleted. A sample finished long ago is not remembered: the markers
// the bucket replays after a restart are an hour's.
func (f *RemoteWriteFinisher) marked(ctx context.Context, st *rwFinishState, hash string, at time.Time, digests []uint64) {
	now := time.Now()
	if at.IsZero() || at.After(now) {
		at = now
	}
	if at.After(now.Add(-f.forgetAfter())) {
		st.finished[hash] = rwFinished{at: at, digests: digests}
	}
	p := st.pending[hash]
	if p == nil {
		return
	}
	delete(st.pending, hash)
	f.pending.Set(float64(len(st.pending)))
	keys := make([]string, 0, len(p.parts))
	for k := range p.parts {
		keys = append(keys, k)
		if !slices.Contains(digests, p.digests[k]) {
			f.latePart(st, k)
		}
	}
	f.deleteParts(ctx, st, keys)
}

func (f *RemoteWriteFinisher) latePart(st *rwFinishState, key string) {
	f.late.Inc()
	f.warn(st, "dropping a remote_write part that arrived after its sample was finished: raise --remote-write-finish-delay if this recurs", "part", key)
}

// finishDue publishes the samples whose delay has passed, marks them
// finished, then deletes their parts.
func (f *RemoteWriteFinisher) finishDue(ctx context.Context, st *rwFinishState, now time.Time) {
	// Finished samples are remembered for a while, and looked up in the
	// part log once they may have been forgotten (see forgetAfter).
	forget := now.Add(-f.forgetAfter())
	for h, fin := range st.finished {
		if fin.at.Before(forget) {
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
	due = f.dropMarked(ctx, st, due, now)
	const perPublish = 1000
	for len(due) > 0 && ctx.Err() == nil {
		chunk := due[:min(perPublish, len(due))]
		due = due[len(chunk):]
		var msgs []schema.Message
		valid := make([]bool, len(chunk))
		for i, p := range chunk {
			b := f.fold(p)
			if err := b.Validate(); err != nil {
				f.invalid.Inc()
				f.warn(st, "dropping a remote_write sample that is not a valid deploywatch sample", "service", b.Service, "env", b.Env, "err", err)
				continue
			}
			m, err := schema.EncodeMessages(&b, 1, f.cfg.MaxMessageBytes)
			if err != nil {
				f.unencodable.Inc()
				f.warn(st, "dropping a remote_write sample that cannot be encoded", "service", b.Service, "env", b.Env, "err", err)
				continue
			}
			msgs = append(msgs, m...)
			valid[i] = true
		}
		if err := f.pub.Publish(ctx, msgs); err != nil {
			f.failures.Inc()
			if ctx.Err() == nil {
				f.warn(st, "cannot publish finished remote_write samples; retrying", "samples", len(msgs), "err", err)
			}
			return
		}
		// Published: from here on the context's cancellation (a shutdown)
		// must not stop the marking and deleting half way.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		digests := make([][]uint64, len(chunk))
		markers := make(map[string][]byte, len(chunk))
		for i, p := range chunk {
			digests[i] = p.digestList()
			markers[markerKey(p.hash)] = appendMarker(nil, now, digests[i])
		}
		var mu sync.Mutex
		stored := make(map[string]bool, len(chunk))
		err := eachParallel(cctx, 16, slices.Collect(maps.Keys(markers)), func(ctx context.Context, k string) error {
			if err := f.parts.Put(ctx, k, markers[k]); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			stored[k] = true
			return nil
		})
		cancel()
		var keys []string
		published := 0
		for i, p := range chunk {
			if !stored[markerKey(p.hash)] {
				// Stays pending with its parts: published again (the
				// event log deduplicates it) and marked on the next tick.
				continue
			}
			if valid[i] {
				published++
			}
			for k := range p.parts {
				keys = append(keys, k)
			}
			delete(st.pending, p.hash)
			st.finished[p.hash] = rwFinished{at: now, digests: digests[i]}
		}
		f.samples.Add(published)
		f.pending.Set(float64(len(st.pending)))
		f.deleteParts(ctx, st, keys)
		if err != nil {
			f.failures.Inc()
			f.warn(st, "cannot mark finished remote_write samples; their parts are kept until they are", "samples", len(chunk)-len(stored), "err", err)
			return
		}
	}
}

// digestList is the digests of the sample's parts.
func (p *rwPending) digestList() []uint64 {
	out := make([]uint64, 0, len(p.digests))
	for _, d := range p.digests {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// dropMarked looks up in the part log the markers of the due samples old
// enough to have been finished and forgotten: the parts of a sample marked
// finished are late, and deleted. It returns the others; a sample it could
// not look up waits for the next tick.
func (f *RemoteWriteFinisher) dropMarked(ctx context.Context, st *rwFinishState, due []*rwPending, now time.Time) []*rwPending {
	old := now.Add(-f.forgetAfter() / 2).UnixMilli()
	var check []string
	for _, p := range due {
		if p.key.tsMs < old {
			check = append(check, p.hash)
		}
	}
	if len(check) == 0 {
		return due
	}
	var mu sync.Mutex
	isMarked, failed := map[string]bool{}, map[string]bool{}
	err := eachParallel(ctx, 16, check, func(ctx context.Context, h string) error {
		ok, err := f.parts.Has(ctx, markerKey(h))
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed[h] = true
			return nil
		}
		isMarked[h] = ok
		return nil
	})
	if err != nil || len(failed) > 0 {
		f.failures.Inc()
		if ctx.Err() == nil {
			f.warn(st, "cannot look up whether old remote_write samples were finished; they wait", "samples", len(failed))
		}
	}
	out := due[:0]
	for _, p := range due {
		switch {
		case isMarked[p.hash]:
			f.marked(ctx, st, p.hash, time.Time{}, nil)
		case p.key.tsMs >= old || (err == nil && !failed[p.hash]):
			out = append(out, p)
		}
	}
	return out
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

// deleteParts deletes parts of samples marked finished. It runs on, for
// cleanupTimeout, after ctx is cancelled; a part it leaves behind is
// recognised by its sample's marker.
func (f *RemoteWriteFinisher) deleteParts(ctx context.Context, st *rwFinishState, keys []string) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	// Every delete is tried: one that fails does not stop the others.
	var mu sync.Mutex
	failed := 0
	var first error
	_ = eachParallel(ctx, 16, keys, func(ctx context.Context, k string) error {
		if err := f.parts.Delete(ctx, k); err != nil {
			mu.Lock()
			defer mu.Unlock()
			failed++
			first = cmp.Or(first, err)
		}
		return nil
	})
	if failed > 0 {
		f.failures.Inc()
		f.warn(st, "cannot delete finished remote_write parts; their samples' markers keep them from being finished again", "parts", failed, "err", first)
	}
}

// storeParts stores a request's parts, returning once every one is stored.
// A part whose encoding is above maxBytes (a NATS message; 0: no limit) is
// stored as several.
func storeParts(ctx context.Context, store RemoteWriteParts, parts map[rwSampleKey]*rwPart, maxBytes int) error {
	keys := make([]string, 0, len(parts))
	values := make(map[string][]byte, len(parts))
	for _, p := range parts {
		v := appendPart(nil, p)
		if maxBytes <= 0 || len(v) <= maxBytes {
			k := partKey(p)
			keys = append(keys, k)
			values[k] = v
			continue
		}
		for _, q := range splitPart(p, maxBytes) {
			k := partKey(q)
			keys = append(keys, k)
			values[k] = appendPart(nil, q)
		}
	}
	if err := eachParallel(ctx, 16, keys, func(ctx context.Context, k string) error { return store.Put(ctx, k, values[k]) }); err != nil {
		return fmt.Errorf("cannot store %d remote_write parts: %w", len(keys), err)
	}
	return nil
}

// splitPart splits a part into parts of at most maxBytes each. The series
// are ordered by their hash first, so that a retried request gives the same
// parts, under the same keys; folding sums them as one.
func splitPart(p *rwPart, maxBytes int) []*rwPart {
	head := len(appendPart(nil, &rwPart{key: p.key})) + binary.MaxVarintLen64
	per := max((maxBytes-head)/maxContribBytes, 1)
	cs := slices.Clone(p.contribs)
	slices.SortFunc(cs, func(a, b rwContrib) int { return cmp.Compare(a.series, b.series) })
	out := make([]*rwPart, 0, (len(cs)+per-1)/per)
	for len(cs) > 0 {
		n := min(per, len(cs))
		out = append(out, &rwPart{key: p.key, contribs: cs[:n:n]})
		cs = cs[n:]
	}
	return out
}
