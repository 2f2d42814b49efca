package processors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/VictoriaMetrics/metrics"
	"github.com/cenkalti/backoff/v4"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BatchPreparer is the part of a ClickHouse connection the sink needs.
type BatchPreparer interface {
	PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error)
}

// SinkConfig tunes the ClickHouse sink.
type SinkConfig struct {
	// FlushRows writes a batch once this many rows are buffered (default 50,000).
	FlushRows int
	// FlushInterval writes a batch at the latest this long after its first row (default 1s).
	FlushInterval time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering (default 60s).
	AckWait time.Duration
	// MaxRetryInterval bounds the backoff between failed inserts (default 30s).
	MaxRetryInterval time.Duration
	// ConsumerName prefixes the durable consumers' names (default "clickhouse-sink").
	ConsumerName string
	Logger       *slog.Logger
	Metrics      *metrics.Set

	// afterWrite, when set by a test, runs after a batch was written and
	// before it is acked; returning an error stops the consumer there, as a
	// crash would.
	afterWrite func() error
}

func (c *SinkConfig) defaults() {
	if c.FlushRows <= 0 {
		c.FlushRows = 50_000
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 60 * time.Second
	}
	if c.MaxRetryInterval <= 0 {
		c.MaxRetryInterval = 30 * time.Second
	}
	if c.ConsumerName == "" {
		c.ConsumerName = "clickhouse-sink"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
}

// RunSink projects the changes, metrics and signals streams into ClickHouse
// until ctx is cancelled; then it writes and acks what it holds and returns.
func RunSink(ctx context.Context, js jetstream.JetStream, ch BatchPreparer, cfg SinkConfig) error {
	cfg.defaults()
	// Projections per stream: one fills while the others are written.
	streams := []struct {
		stream string
		proj   func() projection
	}{
		{schema.ChangesStream, func() projection { return &changesProjection{} }},
		{schema.MetricsStream, func() projection { return &metricsProjection{} }},
		{schema.SignalsStream, func() projection { return &signalsProjection{} }},
	}
	errs := make([]error, len(streams))
	var wg sync.WaitGroup
	for i, s := range streams {
		var projs [writers + 1]projection
		for j := range projs {
			projs[j] = s.proj()
		}
		c, err := newStreamConsumer(ctx, js, ch, s.stream, projs, cfg)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.run(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// streamConsumer moves one stream into ClickHouse. It decodes messages into
// one buffer while the previous one is being written: decoding and
// ClickHouse's insert overlap instead of taking turns. A buffer is written
// when it holds FlushRows rows, when its first message is FlushInterval old,
// or when the stream went quiet for a moment after it took 1,000 rows or
// more: waiting for the interval then would only delay the rows.
type streamConsumer struct {
	stream string
	cons   jetstream.Consumer
	js     jetstream.JetStream
	ch     BatchPreparer
	cfg    SinkConfig
	log    *slog.Logger

	filling    *buffer      // being decoded into
	free       []*buffer    // neither being filled nor being written
	written    chan written // writes that ended
	writing    int          // writes under way
	firstHeld  time.Time    // when the filling buffer took its first message
	lastTaken  time.Time    // when it took its last one
	kept       time.Time    // when its messages were last said to be in progress
	numPending atomic.Uint64

	batchRows   *metrics.Histogram
	writeTime   *metrics.PrometheusHistogram
	writeErrors *metrics.Counter
	deadLetters *metrics.Counter
	acked       *metrics.Counter
}

// buffer is decoded rows and the messages they came from, not yet acked.
type buffer struct {
	proj projection
	held []jetstream.Msg
}

// written is a write that ended, and how.
type written struct {
	buf *buffer
	err error
}

// writers is how many writes of one stream may be under way at once. Two
// made no difference on two cores (ClickHouse's inserts took twice as long
// each), and take more memory.
const writers = 1

func newStreamConsumer(ctx context.Context, js jetstream.JetStream, ch BatchPreparer, stream string, projs [writers + 1]projection, cfg SinkConfig) (*streamConsumer, error) {
	name := cfg.ConsumerName + "-" + stream
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "deploywatch: projects " + stream + " into ClickHouse",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 20_000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot create the JetStream consumer %s on %s: %w", name, stream, err)
	}
	label := `{stream="` + stream + `"}`
	c := &streamConsumer{
		stream:      stream,
		cons:        cons,
		js:          js,
		ch:          ch,
		filling:     &buffer{proj: projs[0]},
		written:     make(chan written, len(projs)),
		cfg:         cfg,
		log:         cfg.Logger.With("stream", stream),
		batchRows:   cfg.Metrics.GetOrCreateHistogram(`deploywatch_sink_batch_rows` + label),
		writeTime:   cfg.Metrics.GetOrCreatePrometheusHistogram(`deploywatch_sink_insert_duration_seconds` + label),
		writeErrors: cfg.Metrics.GetOrCreateCounter(`deploywatch_sink_insert_errors_total` + label),
		deadLetters: cfg.Metrics.GetOrCreateCounter(`deploywatch_sink_dead_letters_total` + label),
		acked:       cfg.Metrics.GetOrCreateCounter(`deploywatch_sink_acked_messages_total` + label),
	}
	for _, p := range projs[1:] {
		c.free = append(c.free, &buffer{proj: p})
	}
	cfg.Metrics.GetOrCreateGauge(`deploywatch_sink_consumer_pending`+label, func() float64 { return float64(c.numPending.Load()) })
	return c, nil
}

func (c *streamConsumer) run(ctx context.Context) error {
	iter, err := c.cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(256, 16<<20))
	if err != nil {
		return fmt.Errorf("cannot consume %s: %w", c.stream, err)
	}
	defer iter.Stop()
	for ctx.Err() == nil {
		msg, err := iter.Next(jetstream.NextMaxWait(c.wait()))
		switch {
		case err == nil:
			c.take(ctx, msg)
		case errors.Is(err, nats.ErrTimeout):
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return errors.Join(fmt.Errorf("the %s consumer stopped: %w", c.stream, err), c.awaitAll())
		default:
			c.log.Warn("cannot fetch from JetStream", "err", err)
		}
		if err := c.collect(); err != nil {
			return errors.Join(err, c.awaitAll())
		}
		if c.writing > 0 {
			c.keep() // a write that takes long may be retrying: keep what this buffer holds
		}
		full := c.filling.proj.rows() >= c.cfg.FlushRows
		if full || (c.due() && len(c.free) > 0) {
			// A full buffer waits for a write to end; one that is only due
			// goes on filling meanwhile, and is written after one.
			if err := c.flush(ctx); err != nil {
				return errors.Join(err, c.awaitAll())
			}
		}
	}
	// Shutting down: take what was already delivered, write it, ack it.
	iter.Drain()
	for {
		msg, err := iter.Next(jetstream.NextMaxWait(100 * time.Millisecond))
		if err != nil {
			break
		}
		c.take(ctx, msg)
	}
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.flush(final); err != nil {
		return errors.Join(err, c.awaitAll())
	}
	return c.awaitAll()
}

// idleRows is the least a buffer holds to be written as soon as its stream
// goes quiet, before the flush interval: ClickHouse asks for inserts of at
// least 1,000 rows or at most one a second.
const idleRows = 1000

// quiet is how long without a message makes a stream quiet.
func (c *streamConsumer) quiet() time.Duration {
	return min(c.cfg.FlushInterval/10, 100*time.Millisecond)
}

// due reports whether the buffer should be written now although it is not
// full: its first row waited FlushInterval, or the stream went quiet after
// it took idleRows rows.
func (c *streamConsumer) due() bool {
	if len(c.filling.held) == 0 {
		return false
	}
	return time.Since(c.firstHeld) >= c.cfg.FlushInterval ||
		(c.filling.proj.rows() >= min(idleRows, c.cfg.FlushRows) && time.Since(c.lastTaken) >= c.quiet())
}

// wait is how long to wait for the next message before looking at the buffer again.
func (c *streamConsumer) wait() time.Duration {
	if len(c.filling.held) == 0 {
		return c.cfg.FlushInterval
	}
	if len(c.free) == 0 && c.due() {
		return 5 * time.Millisecond // to write the buffer as soon as a write ends
	}
	wait := time.Until(c.firstHeld.Add(c.cfg.FlushInterval))
	if c.filling.proj.rows() >= min(idleRows, c.cfg.FlushRows) {
		wait = min(wait, time.Until(c.lastTaken.Add(c.quiet())))
	}
	return max(wait, time.Millisecond)
}

// take decodes a message into the buffer, or dead-letters it when it can never be decoded.
func (c *streamConsumer) take(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		c.deadLetter(ctx, msg, "not a JetStream message: "+err.Error())
		return
	}
	c.numPending.Store(meta.NumPending)
	if err := c.filling.proj.add(msg, meta); err != nil {
		c.deadLetter(ctx, msg, err.Error())
		return
	}
	c.lastTaken = time.Now()
	if len(c.filling.held) == 0 {
		c.firstHeld, c.kept = c.lastTaken, c.lastTaken
	}
	c.filling.held = append(c.filling.held, msg)
}

// flush hands the filled buffer to a writer and goes on with a free one,
// first waiting for a write to end when all the others are being written.
// It returns the error of a write that failed.
func (c *streamConsumer) flush(ctx context.Context) error {
	if len(c.filling.held) == 0 {
		return nil
	}
	for len(c.free) == 0 {
		if err := c.awaitOne(); err != nil {
			return err
		}
	}
	full := c.filling
	c.filling, c.free = c.free[len(c.free)-1], c.free[:len(c.free)-1]
	c.writing++
	go func() {
		err := c.write(ctx, full)
		c.written <- written{full, err}
	}()
	return nil
}

// collect takes in the writes that ended, without waiting, and returns the
// first error: a failed write stops the consumer at once, as a crash would.
func (c *streamConsumer) collect() error {
	for {
		select {
		case w := <-c.written:
			if err := c.done(w); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

func (c *streamConsumer) done(w written) error {
	c.writing--
	c.free = append(c.free, w.buf)
	return w.err
}

// awaitOne waits for a write to end and returns its error. While it waits,
// the messages of the buffer being filled are kept from being redelivered.
func (c *streamConsumer) awaitOne() error {
	tick := time.NewTicker(c.cfg.AckWait / 6)
	defer tick.Stop()
	for {
		select {
		case w := <-c.written:
			return c.done(w)
		case <-tick.C:
			c.keep()
		}
	}
}

// awaitAll waits for every write under way and returns their errors.
func (c *streamConsumer) awaitAll() error {
	var errs []error
	for c.writing > 0 {
		errs = append(errs, c.awaitOne())
	}
	return errors.Join(errs...)
}

// keep keeps JetStream from redelivering the messages of the buffer being
// filled while a write holds it up, telling it every third of AckWait that
// they are in progress.
func (c *streamConsumer) keep() {
	if time.Since(c.kept) < c.cfg.AckWait/3 {
		return
	}
	for _, m := range c.filling.held {
		_ = m.InProgress()
	}
	c.kept = time.Now()
}

// write writes a buffer to ClickHouse, retrying with backoff until it
// succeeds or ctx ends, and acks its messages only then.
func (c *streamConsumer) write(ctx context.Context, buf *buffer) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = c.cfg.MaxRetryInterval
	b.MaxElapsedTime = 0
	lastProgress := time.Now()
	attempt := func() error {
		// An insert under way finishes even when shutdown begins, so that
		// what it wrote is acked; ctx only stops further retries.
		writeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), insertTimeout)
		defer cancel()
		start := time.Now()
		err := buf.proj.write(writeCtx, c.insert)
		if err != nil {
			c.writeErrors.Inc()
			return err
		}
		c.writeTime.UpdateDuration(start)
		return nil
	}
	notify := func(err error, next time.Duration) {
		c.log.Warn("cannot write to ClickHouse; holding the messages and retrying", "rows", buf.proj.rows(), "retry_in", next.Round(time.Millisecond), "err", err)
		// Keep JetStream from redelivering what we still hold.
		if time.Since(lastProgress) > c.cfg.AckWait/3 {
			for _, m := range buf.held {
				_ = m.InProgress()
			}
			lastProgress = time.Now()
		}
	}
	if err := backoff.RetryNotify(attempt, backoff.WithContext(b, ctx), notify); err != nil {
		return fmt.Errorf("cannot write %d rows from %s to ClickHouse, stopping without acking them (JetStream will redeliver): %w", buf.proj.rows(), c.stream, err)
	}
	if c.cfg.afterWrite != nil {
		if err := c.cfg.afterWrite(); err != nil {
			return err
		}
	}
	c.batchRows.Update(float64(buf.proj.rows()))
	for _, m := range buf.held {
		if err := m.Ack(); err != nil {
			// Not fatal: the message comes again and its write is idempotent.
			c.log.Warn("cannot ack a message; it will be redelivered and deduplicated", "err", err)
		}
	}
	c.acked.Add(len(buf.held))
	clear(buf.held)
	buf.held = buf.held[:0]
	buf.proj.reset()
	return nil
}

// insertTimeout bounds one insert attempt.
const insertTimeout = 2 * time.Minute

// insert writes columns into table in one columnar batch.
func (c *streamConsumer) insert(ctx context.Context, table, columns string, cols []any) error {
	return insertColumns(ctx, c.ch, table, columns, cols)
}

// insertColumns writes columns into table through ch in one columnar batch.
func insertColumns(ctx context.Context, ch BatchPreparer, table, columns string, cols []any) error {
	batch, err := ch.PrepareBatch(ctx, "INSERT INTO "+table+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("cannot prepare an insert into %s: %w", table, err)
	}
	defer batch.Abort()
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			return fmt.Errorf("cannot append column %d to the insert into %s: %w", i, table, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("cannot insert into %s: %w", table, err)
	}
	return nil
}

// deadLetter moves a message that can never be processed to the dead-letter
// stream with the reason, then terminates it so the consumer moves on. If the
// dead-letter stream cannot take it, the message is left for redelivery.
func (c *streamConsumer) deadLetter(ctx context.Context, msg jetstream.Msg, reason string) {
	c.log.Warn("dead-lettering a message that cannot be processed", "subject", msg.Subject(), "reason", reason)
	dl := &nats.Msg{Subject: schema.DeadLetterSubject(c.stream), Data: msg.Data(), Header: nats.Header{}}
	dl.Header.Set(schema.DeadLetterReasonHeader, reason)
	dl.Header.Set(schema.DeadLetterSubjectHeader, msg.Subject())
	if enc := msg.Headers().Get(schema.EncodingHeader); enc != "" {
		dl.Header.Set(schema.EncodingHeader, enc)
	}
	opts := []jetstream.PublishOpt{}
	if meta, err := msg.Metadata(); err == nil {
		opts = append(opts, jetstream.WithMsgID(fmt.Sprintf("%s-%d", c.stream, meta.Sequence.Stream)))
	}
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := c.js.PublishMsg(pubCtx, dl, opts...); err != nil {
		c.log.Error("cannot dead-letter a message; leaving it for redelivery", "err", err)
		_ = msg.NakWithDelay(30 * time.Second)
		return
	}
	c.deadLetters.Inc()
	_ = msg.Term()
}
