package processors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// InboxConfig tunes the inbox processor.
type InboxConfig struct {
	// ConsumerName names the durable consumer (default "inbox").
	ConsumerName string
	// AckWait is how long JetStream waits for an ack before redelivering (default 30s).
	AckWait time.Duration
	// MaxSamplesPerMessage and MaxMessageBytes split metric batches into
	// event log messages as the HTTP API does (defaults 1000 and 960 KiB).
	// MaxMessageBytes bounds every message, so set it below the event log's
	// max_payload: an event that does not fit is dead-lettered, not retried.
	MaxSamplesPerMessage int
	MaxMessageBytes      int
	// RetryDelay is the first delay before a message whose event could not be
	// published is delivered again; it doubles up to MaxRetryDelay (defaults 1s, 30s).
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	Logger        *slog.Logger
	Metrics       *metrics.Set

	// afterPublish, when set by a test, runs after a batch's events were
	// published and before their inbox messages are acked; returning an
	// error stops the processor there, as a crash would.
	afterPublish func() error
}

func (c *InboxConfig) defaults() {
	if c.ConsumerName == "" {
		c.ConsumerName = "inbox"
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxSamplesPerMessage <= 0 {
		c.MaxSamplesPerMessage = 1000
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 960 << 10
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = time.Second
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
}

// inboxBatch is how many inbox messages are validated and published together.
const inboxBatch = 256

// RunInbox moves the events that outside publishers put on the inbox
// (deploywatch.in.<type>.<service>) onto the event log until ctx is
// cancelled. Each is validated exactly as the HTTP API validates it; a valid
// one is published to its stream with its event id as Nats-Msg-Id, and its
// inbox message is acked only after JetStream acknowledged that publish, so
// a crash in between publishes it again and JetStream drops the copy. An
// invalid one, or one too large for an event log message, goes to the
// dead-letter stream with the reason. When the event log cannot take the
// write, the message is delivered again later.
func RunInbox(ctx context.Context, js jetstream.JetStream, pub Publisher, cfg InboxConfig) error {
	cfg.defaults()
	cons, err := js.CreateOrUpdateConsumer(ctx, schema.InboxStream, jetstream.ConsumerConfig{
		Durable:       cfg.ConsumerName,
		Description:   "deploywatch: validates published events and moves them onto the event log",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 4 * inboxBatch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("cannot create the JetStream consumer %s on %s: %w", cfg.ConsumerName, schema.InboxStream, err)
	}
	p := &inbox{
		js:           js,
		pub:          pub,
		cfg:          cfg,
		log:          cfg.Logger,
		accepted:     cfg.Metrics.GetOrCreateCounter(`deploywatch_inbox_messages_total{result="accepted"}`),
		deadLettered: cfg.Metrics.GetOrCreateCounter(`deploywatch_inbox_messages_total{result="dead_lettered"}`),
		retried:      cfg.Metrics.GetOrCreateCounter(`deploywatch_inbox_messages_total{result="retried"}`),
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(inboxBatch))
	if err != nil {
		return fmt.Errorf("cannot consume %s: %w", schema.InboxStream, err)
	}
	defer iter.Stop()
	for ctx.Err() == nil {
		msg, err := iter.Next(jetstream.NextMaxWait(time.Second))
		switch {
		case err == nil:
		case errors.Is(err, nats.ErrTimeout):
			continue
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return fmt.Errorf("the %s consumer stopped: %w", schema.InboxStream, err)
		default:
			p.log.Warn("cannot fetch from JetStream", "err", err)
			continue
		}
		// Take what else was already delivered, to publish it in one go.
		batch := []jetstream.Msg{msg}
		for len(batch) < inboxBatch {
			m, err := iter.Next(jetstream.NextMaxWait(time.Millisecond))
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		if err := p.process(ctx, batch); err != nil {
			return err
		}
	}
	// Shutting down: move what was already delivered rather than leave it
	// waiting for AckWait.
	iter.Drain()
	var rest []jetstream.Msg
	for {
		m, err := iter.Next(jetstream.NextMaxWait(100 * time.Millisecond))
		if err != nil {
			break
		}
		rest = append(rest, m)
	}
	return p.process(ctx, rest)
}

type inbox struct {
	js  jetstream.JetStream
	pub Publisher
	cfg InboxConfig
	log *slog.Logger

	accepted, deadLettered, retried *metrics.Counter
}

// process validates a batch of inbox messages, dead-letters the invalid ones,
// publishes the events of the others and acks them once that publish was
// acknowledged.
func (p *inbox) process(ctx context.Context, batch []jetstream.Msg) error {
	if len(batch) == 0 {
		return nil
	}
	var out []schema.Message
	valid := batch[:0:0]
	for _, msg := range batch {
		ev, err := schema.DecodeInboxMessage(msg.Subject(), msg.Headers().Get(schema.EncodingHeader), msg.Data())
		if err != nil {
			p.deadLetter(ctx, msg, err.Error())
			continue
		}
		// An event too large for one event log message can never be
		// published: it is dead-lettered here, before the publish, so that
		// it does not fail its batch-mates' publish again and again.
		msgs, err := schema.EncodeMessages(ev, p.cfg.MaxSamplesPerMessage, p.cfg.MaxMessageBytes)
		if err != nil {
			p.deadLetter(ctx, msg, err.Error())
			continue
		}
		out = append(out, msgs...)
		valid = append(valid, msg)
	}
	if len(valid) == 0 {
		return nil
	}
	// A publish under way finishes even when shutdown begins, so that what
	// it published is acked.
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := p.pub.Publish(pubCtx, out); err != nil {
		p.log.Warn("cannot move inbox messages onto the event log; they will be delivered again", "messages", len(valid), "err", err)
		for _, msg := range valid {
			p.retry(msg)
		}
		return nil
	}
	if p.cfg.afterPublish != nil {
		if err := p.cfg.afterPublish(); err != nil {
			return err
		}
	}
	for _, msg := range valid {
		if err := msg.Ack(); err != nil {
			// Not lost: the message comes again and its events are deduplicated.
			p.log.Warn("cannot ack an inbox message; it will be delivered again and deduplicated", "err", err)
		}
	}
	p.accepted.Add(len(valid))
	return nil
}

// retry asks JetStream to deliver msg again after a delay that doubles with
// every delivery.
func (p *inbox) retry(msg jetstream.Msg) {
	delay := p.cfg.RetryDelay
	if meta, err := msg.Metadata(); err == nil {
		for i := uint64(1); i < meta.NumDelivered && delay < p.cfg.MaxRetryDelay; i++ {
			delay *= 2
		}
	}
	_ = msg.NakWithDelay(min(delay, p.cfg.MaxRetryDelay))
	p.retried.Inc()
}

// deadLetter moves an invalid inbox message to the dead-letter stream with
// the reason and the subject it was published on, then terminates it. If the
// dead-letter stream cannot take it, it is delivered again later.
func (p *inbox) deadLetter(ctx context.Context, msg jetstream.Msg, reason string) {
	p.log.Warn("dead-lettering an invalid published event", "subject", msg.Subject(), "reason", reason)
	dl := &nats.Msg{Subject: schema.DeadLetterSubject(schema.InboxStream), Data: msg.Data(), Header: nats.Header{}}
	dl.Header.Set(schema.DeadLetterReasonHeader, reason)
	dl.Header.Set(schema.DeadLetterSubjectHeader, msg.Subject())
	if enc := msg.Headers().Get(schema.EncodingHeader); enc != "" {
		dl.Header.Set(schema.EncodingHeader, enc)
	}
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		dl.Header.Set(schema.DeadLetterMsgIDHeader, id)
	}
	var opts []jetstream.PublishOpt
	if meta, err := msg.Metadata(); err == nil {
		// A redelivery after a crash is dead-lettered once.
		opts = append(opts, jetstream.WithMsgID(fmt.Sprintf("%s-%d", schema.InboxStream, meta.Sequence.Stream)))
	}
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := p.js.PublishMsg(pubCtx, dl, opts...); err != nil {
		p.log.Error("cannot dead-letter an inbox message; it will be delivered again", "err", err)
		p.retry(msg)
		return
	}
	p.deadLettered.Inc()
	_ = msg.Term()
}
