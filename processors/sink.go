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
	// Two projections per stream: one is written while the other fills.
	streams := []struct {
		stream string
		projs  [2]projection
	}{
		{schema.ChangesStream, [2]projection{&changesProjection{}, &changesProjection{}}},
		{schema.MetricsStream, [2]projection{&metricsProjection{}, &metricsProjection{}}},
		{schema.SignalsStream, [2]projection{&signalsProjection{}, &signalsProjection{}}},
	}
	errs := make([]error, len(streams))
	var wg sync.WaitGroup
	for i, s := range streams {
		c, err := newStreamConsumer(ctx, js, ch, s.stream, s.projs, cfg)
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
// one buffer while the previous buffer is being written: decoding and
// ClickHouse's insert overlap instead of taking turns.
type streamConsumer struct {
	stream string
	cons   jetstream.Consumer
	js     jetstream.JetStream
	ch     BatchPreparer
	cfg    SinkConfig
	log    *slog.Logger

	filling    *buffer // being decoded into
	spare      *buffer // free, unless it is being written
	writing    chan error
	firstHeld  time.Time
	numPending atomic.Uint64

	batchRows   *metrics.Histogram
	writeTime   *metrics.Histogram
	writeErrors *metrics.Counter
	deadLetters *metrics.Counter
	acked       *metrics.Counter
}

// buffer is decoded rows and the messages they came from, not yet acked.
type buffer struct {
	proj projection
	held []jetstream.Msg
}

func newStreamConsumer(ctx context.Context, js jetstream.JetStream, ch BatchPreparer, stream string, projs [2]projection, cfg SinkConfig) (*streamConsumer, error) {
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
		spare:       &buffer{proj: projs[1]},
		cfg:         cfg,
		log:         cfg.Logger.With("stream", stream),
		batchRows:   cfg.Metrics.GetOrCreateHistogram(`deploywatch_sink_batch_rows` + label),
		writeTime:   cfg.Metrics.GetOrCreateHistogram(`deploywatch_sink_insert_duration_seconds` + label),
		writeErrors: cfg.Metrics.GetOrCreateCounter(`deploywatch_sink_insert_errors_total` + label),
		deadLetters: cfg.Metrics.GetOrCreateCounter(`deploywatch_sink_dead_letters_total` + label),
		acked:       cfg.Metrics.GetOrCreateCounter(`deploywatch_sink_acked_messages_total` + label),
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
	// When a burst of messages is over, waiting for the flush interval only
	// delays the rows; a buffer of a tenth of FlushRows is worth an insert.
	idle, idleRows := min(c.cfg.FlushInterval/10, 100*time.Millisecond), max(c.cfg.FlushRows/10, 1)
	for ctx.Err() == nil {
		if err := c.written(); err != nil {
			return err
		}
		wait := c.cfg.FlushInterval
		if len(c.filling.held) > 0 {
			wait = max(time.Until(c.firstHeld.Add(c.cfg.FlushInterval)), time.Millisecond)
			if c.filling.proj.rows() >= idleRows {
				wait = min(wait, idle)
			}
		}
		msg, err := iter.Next(jetstream.NextMaxWait(wait))
		timedOut := false
		switch {
		case err == nil:
			c.take(ctx, msg)
		case errors.Is(err, nats.ErrTimeout):
			timedOut = true
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return errors.Join(fmt.Errorf("the %s consumer stopped: %w", c.stream, err), c.wait(ctx))
		default:
			c.log.Warn("cannot fetch from JetStream", "err", err)
		}
		held := len(c.filling.held) > 0
		if c.filling.proj.rows() >= c.cfg.FlushRows || (held && time.Since(c.firstHeld) >= c.cfg.FlushInterval) ||
			(held && timedOut && c.filling.proj.rows() >= idleRows) {
			if err := c.flush(ctx); err != nil {
				return err
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
		return err
	}
	return c.wait(final)
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
	if len(c.filling.held) == 0 {
		c.firstHeld = time.Now()
	}
	c.filling.held = append(c.filling.held, msg)
}

// flush hands the filled buffer to a writer and goes on with the spare one.
// At most one write is under way: flush first waits for the previous one,
// and returns its error if it failed.
func (c *streamConsumer) flush(ctx context.Context) error {
	if len(c.filling.held) == 0 {
		return nil
	}
	if err := c.wait(ctx); err != nil {
		return err
	}
	full := c.filling
	c.filling, c.spare = c.spare, nil
	c.writing = make(chan error, 1)
	go func(done chan<- error) {
		err := c.write(ctx, full)
		c.spare = full // read only after receiving from done
		done <- err
	}(c.writing)
	return nil
}

// written returns the error of a write that has ended, without waiting: a
// failed write stops the consumer at once, as a crash would.
func (c *streamConsumer) written() error {
	select {
	case err := <-c.writing: // nil channel when no write is under way
		c.writing = nil
		return err
	default:
		return nil
	}
}

// wait waits for the write under way, if any, and returns its error. While
// it waits, the messages of the buffer being filled are kept from being
// redelivered.
func (c *streamConsumer) wait(ctx context.Context) error {
	if c.writing == nil {
		return nil
	}
	tick := time.NewTicker(c.cfg.AckWait / 3)
	defer tick.Stop()
	for {
		select {
		case err := <-c.writing:
			c.writing = nil
			return err
		case <-tick.C:
			for _, m := range c.filling.held {
				_ = m.InProgress()
			}
		}
	}
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
