package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cenkalti/backoff/v4"
	"github.com/deploywatch/deploywatch/processors/impact"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher appends events to the event log and returns once every one was
// acknowledged.
type Publisher interface {
	Publish(ctx context.Context, msgs []schema.Message) error
}

// ImpactConfig tunes the impact processor.
type ImpactConfig struct {
	Analyzer impact.Config
	// Checkpoint is how often (wall clock) verdicts are published, the state
	// saved and the consumed messages acked (default 500ms).
	Checkpoint time.Duration
	// ConsumerName prefixes the durable consumers and the state bucket (default "impact").
	ConsumerName string
	Logger       *slog.Logger
	Metrics      *metrics.Set
}

func (c *ImpactConfig) defaults() {
	if c.Checkpoint <= 0 {
		c.Checkpoint = 500 * time.Millisecond
	}
	if c.ConsumerName == "" {
		c.ConsumerName = "impact"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
}

// consumerName is the durable name of one shard's consumer on one stream.
func (c *ImpactConfig) consumerName(stream string) string {
	name := c.ConsumerName
	if s := c.Analyzer.Shard; s.Count > 1 {
		name += "-" + strconv.Itoa(s.Index) + "of" + strconv.Itoa(s.Count)
	}
	return name + "-" + stream
}

// stateBucket is the JetStream key-value bucket that keeps the analyses in
// flight across restarts.
func (c *ImpactConfig) stateBucket() string {
	return strings.ReplaceAll(c.consumerName("state"), "-", "_")
}

// RunImpact follows every deploy on the changes stream against the samples on
// the metrics stream and publishes verdicts to the signals stream, until ctx
// is cancelled. Consumed messages are acked only after the verdicts they led
// to were published and the analyses' state saved, so a crash loses nothing:
// JetStream redelivers, and verdict ids make the repeats harmless.
func RunImpact(ctx context.Context, js jetstream.JetStream, pub Publisher, cfg ImpactConfig) error {
	cfg.defaults()
	p, err := newImpactProcessor(ctx, js, pub, cfg)
	if err != nil {
		return err
	}
	return p.run(ctx)
}

type impactProcessor struct {
	cfg      ImpactConfig
	js       jetstream.JetStream
	pub      Publisher
	kv       jetstream.KeyValue
	analyzer *impact.Analyzer
	log      *slog.Logger
	held     []jetstream.Msg

	verdicts  *metrics.Counter
	bad       *metrics.Counter
	late      *metrics.Counter
	advanceT  *metrics.PrometheusHistogram
	dropped   *metrics.Counter
	lastLate  int
	openGauge float64
}

func newImpactProcessor(ctx context.Context, js jetstream.JetStream, pub Publisher, cfg ImpactConfig) (*impactProcessor, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.stateBucket(),
		Description: "deploywatch: deploy analyses in flight",
		Storage:     jetstream.FileStorage,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot open the JetStream key-value bucket %s: %w", cfg.stateBucket(), err)
	}
	p := &impactProcessor{
		cfg: cfg, js: js, pub: pub, kv: kv,
		analyzer: impact.NewAnalyzer(cfg.Analyzer),
		log:      cfg.Logger,
		verdicts: cfg.Metrics.GetOrCreateCounter(`deploywatch_impact_verdicts_total`),
		bad:      cfg.Metrics.GetOrCreateCounter(`deploywatch_impact_verdicts_total{status="bad"}`),
		late:     cfg.Metrics.GetOrCreateCounter(`deploywatch_impact_late_samples_total`),
		advanceT: cfg.Metrics.GetOrCreatePrometheusHistogram(`deploywatch_impact_advance_duration_seconds`),
		dropped:  cfg.Metrics.GetOrCreateCounter(`deploywatch_impact_undecodable_messages_total`),
	}
	cfg.Metrics.GetOrCreateGauge(`deploywatch_impact_open_analyses`, func() float64 { return p.openGauge })
	if err := p.restore(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// restore brings back the analyses in flight and their samples.
func (p *impactProcessor) restore(ctx context.Context) error {
	keys, err := p.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("cannot list the saved analyses: %w", err)
	}
	n := 0
	for key := range keys.Keys() {
		e, err := p.kv.Get(ctx, key)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return fmt.Errorf("cannot read the saved analysis %s: %w", key, err)
		}
		var st impact.State
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			p.log.Warn("forgetting a saved analysis that does not decode", "key", key, "err", err)
			continue
		}
		p.analyzer.Restore(st)
		n++
	}
	if n == 0 {
		return nil
	}
	h := p.cfg.Analyzer.History
	for _, need := range p.analyzer.Needs() {
		if h == nil {
			break
		}
		pts, err := h.Points(need.Service, need.Env, need.From, time.Now().Add(24*time.Hour))
		if err != nil {
			return fmt.Errorf("cannot reload the samples of the analyses in flight: %w", err)
		}
		p.analyzer.Load(need.Service, need.Env, pts)
	}
	p.log.Info("restored the deploy analyses in flight", "analyses", n)
	return nil
}

type tagged struct {
	msg    jetstream.Msg
	stream string
}

func (p *impactProcessor) run(ctx context.Context) error {
	msgs := make(chan tagged, 1024)
	consumers := []struct{ stream, filter string }{
		{schema.ChangesStream, "deploywatch.changes." + string(schema.TypeDeploy) + ".>"},
		{schema.MetricsStream, schema.MetricsSubjects},
	}
	var iters []jetstream.MessagesContext
	defer func() {
		for _, it := range iters {
			it.Stop()
		}
	}()
	for _, c := range consumers {
		name := p.cfg.consumerName(c.stream)
		cons, err := p.js.CreateOrUpdateConsumer(ctx, c.stream, jetstream.ConsumerConfig{
			Durable:       name,
			Description:   "deploywatch: deploy impact analysis",
			FilterSubject: c.filter,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       60 * time.Second,
			MaxDeliver:    -1,
			MaxAckPending: 50_000,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			return fmt.Errorf("cannot create the JetStream consumer %s on %s: %w", name, c.stream, err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(512, 16<<20))
		if err != nil {
			return fmt.Errorf("cannot consume %s: %w", c.stream, err)
		}
		iters = append(iters, it)
		go forward(it, c.stream, msgs)
	}
	tick := time.NewTicker(p.cfg.Checkpoint)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, it := range iters {
				it.Drain()
			}
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			p.drain(msgs)
			return p.checkpoint(final)
		case m := <-msgs:
			p.take(m)
			if len(p.held) >= 10_000 {
				if err := p.checkpoint(ctx); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := p.checkpoint(ctx); err != nil {
				return err
			}
		}
	}
}

// forward hands one consumer's messages to the processor's single goroutine.
func forward(it jetstream.MessagesContext, stream string, out chan<- tagged) {
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			continue
		}
		out <- tagged{msg: msg, stream: stream}
	}
}

// drain takes what the iterators already delivered before shutdown.
func (p *impactProcessor) drain(msgs <-chan tagged) {
	for {
		select {
		case m := <-msgs:
			p.take(m)
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

// take applies one message to the analyzer. A message that does not decode
// is the sink's to dead-letter; here it is only counted and acked.
func (p *impactProcessor) take(m tagged) {
	if err := feed(p.analyzer, m.stream, m.msg); err != nil {
		p.dropped.Inc()
	}
	p.held = append(p.held, m.msg)
}

// feed decodes a message of the metrics or changes stream and gives it to
// the analyzer; other changes than deploys are passed over.
func feed(a *impact.Analyzer, stream string, msg jetstream.Msg) error {
	if stream == schema.MetricsStream {
		var b schema.MetricsBatch
		if err := schema.DecodeMetricsMessage(msg.Headers().Get(schema.EncodingHeader), msg.Data(), &b); err != nil {
			return err
		}
		a.Metrics(&b)
		return nil
	}
	ev, err := schema.DecodeEvent(msg.Data(), "")
	if err != nil {
		return err
	}
	if d, ok := ev.(*schema.Deploy); ok {
		a.Deploy(d)
	}
	return nil
}

// checkpoint advances the analyses, publishes their verdicts, saves their
// state, and only then acks the messages that led there.
func (p *impactProcessor) checkpoint(ctx context.Context) error {
	start := time.Now()
	verdicts := p.analyzer.Advance()
	p.advanceT.UpdateDuration(start)
	p.openGauge = float64(p.analyzer.Open())
	if late := p.analyzer.Late; late > p.lastLate {
		p.late.Add(late - p.lastLate)
		p.lastLate = late
	}
	if len(verdicts) > 0 {
		out := make([]schema.Message, 0, len(verdicts))
		for i := range verdicts {
			v := &verdicts[i]
			data, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("cannot encode the verdict %s: %w", v.ID, err)
			}
			out = append(out, schema.Message{Subject: schema.Subject(v), ID: v.ID, Data: data})
			if v.Status == schema.VerdictBad {
				p.bad.Inc()
			}
		}
		if err := p.retry(ctx, "publish verdicts", func(ctx context.Context) error { return p.pub.Publish(ctx, out) }); err != nil {
			return err
		}
		p.verdicts.Add(len(verdicts))
	}
	for _, st := range p.analyzer.Changed() {
		key := stateKey(st.Deploy.ID)
		err := p.retry(ctx, "save an analysis", func(ctx context.Context) error {
			if st.Forget() {
				err := p.kv.Purge(ctx, key)
				if errors.Is(err, jetstream.ErrKeyNotFound) {
					return nil
				}
				return err
			}
			data, err := json.Marshal(st)
			if err != nil {
				return backoff.Permanent(err)
			}
			_, err = p.kv.Put(ctx, key, data)
			return err
		})
		if err != nil {
			return err
		}
	}
	for _, m := range p.held {
		if err := m.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			p.log.Warn("cannot ack a message; it will be redelivered and change nothing", "err", err)
		}
	}
	p.held = p.held[:0]
	return nil
}

// retry runs op with backoff until it succeeds or ctx ends, keeping the held
// messages from being redelivered meanwhile.
func (p *impactProcessor) retry(ctx context.Context, what string, op func(context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 10 * time.Second
	b.MaxElapsedTime = 0
	last := time.Now()
	err := backoff.RetryNotify(func() error {
		opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return op(opCtx)
	}, backoff.WithContext(b, ctx), func(err error, next time.Duration) {
		p.log.Warn("cannot "+what+"; retrying", "retry_in", next.Round(time.Millisecond), "err", err)
		if time.Since(last) > 20*time.Second {
			for _, m := range p.held {
				_ = m.InProgress()
			}
			last = time.Now()
		}
	})
	if err != nil {
		return fmt.Errorf("cannot %s, stopping without acking (JetStream will redeliver): %w", what, err)
	}
	return nil
}

// stateKey is a valid key-value key for a deploy id.
func stateKey(id string) string {
	var b strings.Builder
	b.WriteString("analysis.")
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '=':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
