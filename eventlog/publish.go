package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrUnavailable wraps every publish failure: the event log could not take the
// write, and the sender should retry later.
var ErrUnavailable = errors.New("the event log (NATS JetStream) cannot take writes right now")

// Publisher publishes events to JetStream and returns only when JetStream has
// acknowledged every one of them.
type Publisher struct {
	js      jetstream.JetStream
	timeout time.Duration

	published  *metrics.Counter
	duplicates *metrics.Counter
	failures   *metrics.Counter
	latency    *metrics.PrometheusHistogram
}

// publishLatencyBuckets are the le bounds of the publish latency histogram:
// JetStream acks take well under a millisecond to seconds.
var publishLatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// NewPublisher publishes through nc. ackTimeout bounds the wait for acks when
// the caller's context has no deadline. set receives the publisher's metrics.
func NewPublisher(nc *nats.Conn, ackTimeout time.Duration, set *metrics.Set) (*Publisher, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, fmt.Errorf("cannot open JetStream: %w", err)
	}
	if set == nil {
		set = metrics.NewSet()
	}
	return &Publisher{
		js:         js,
		timeout:    ackTimeout,
		published:  set.GetOrCreateCounter(`deploywatch_eventlog_published_total`),
		duplicates: set.GetOrCreateCounter(`deploywatch_eventlog_duplicates_total`),
		failures:   set.GetOrCreateCounter(`deploywatch_eventlog_publish_errors_total`),
		latency:    set.GetOrCreatePrometheusHistogramExt(`deploywatch_eventlog_publish_duration_seconds`, publishLatencyBuckets),
	}, nil
}

// Publish sends msgs asynchronously and waits for every ack. It returns an
// error wrapping ErrUnavailable if any message was not acknowledged; messages
// that were are kept (their ids make a retry of the whole set harmless). A
// body in one of schema's binary encodings is published with the
// schema.EncodingHeader that names it; other bodies are JSON.
func (p *Publisher) Publish(ctx context.Context, msgs []schema.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok && p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
		if enc := schema.EncodingOf(m.Data); enc != "" {
			msg.Header.Set(schema.EncodingHeader, enc)
		}
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(m.ID))
		if err != nil {
			p.failures.Inc()
			return fmt.Errorf("%w: cannot publish %s: %w", ErrUnavailable, m.Subject, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			p.published.Inc()
			if ack.Duplicate {
				p.duplicates.Inc()
			}
		case err := <-f.Err():
			p.failures.Inc()
			return fmt.Errorf("%w: JetStream did not acknowledge %s: %w", ErrUnavailable, msgs[i].Subject, err)
		case <-ctx.Done():
			p.failures.Inc()
			return fmt.Errorf("%w: no acknowledgement for %d of %d messages: %v", ErrUnavailable, len(futures)-i, len(futures), ctx.Err())
		}
	}
	p.latency.UpdateDuration(start)
	return nil
}

// Check reports whether JetStream answers, for readiness probes.
func (p *Publisher) Check(ctx context.Context) error {
	if _, err := p.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream does not answer: %w", err)
	}
	return nil
}
