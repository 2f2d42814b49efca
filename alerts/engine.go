package alerts

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cenkalti/backoff/v4"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SignalPublisher appends events to the event log and returns once every one
// was acknowledged (eventlog.Publisher is one). Each message's ID is its
// Nats-Msg-Id, so a repeat within the stream's duplicate window is dropped.
type SignalPublisher interface {
	Publish(ctx context.Context, msgs []schema.Message) error
}

// EngineConfig tunes the alert engine.
type EngineConfig struct {
	// Rules are the rules to judge verdicts with (nil: DefaultRules).
	Rules *Rules
	// Name prefixes the durable consumers and names the state bucket
	// (default "alerts": consumers alerts-signals and alerts-deploys,
	// bucket alerts_state).
	Name string
	// DeliverAll makes consumers created now start at the beginning of the
	// signals stream. By default a new engine judges only verdicts published
	// from its first start on: turning alerts on must not roll back last
	// month's deploys. Deploys are always read from the beginning.
	DeliverAll bool
	// Retention is how long (event time) deploys and expired silences are
	// remembered (default 7 days).
	Retention time.Duration
	// CatchUpTimeout bounds the wait, before judging verdicts, for the deploy
	// events already in the changes stream (default 5s).
	CatchUpTimeout time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering (default 30s).
	AckWait time.Duration
	Logger  *slog.Logger
	Metrics *metrics.Set
}

func (c *EngineConfig) defaults() {
	if c.Rules == nil {
		c.Rules = DefaultRules()
	}
	if c.Name == "" {
		c.Name = "alerts"
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.CatchUpTimeout <= 0 {
		c.CatchUpTimeout = 5 * time.Second
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
}

// Subjects the engine reads. The signals consumer takes the whole stream
// and skips what is not a verdict or a silence: NATS before 2.10 (Debian's
// nats-server) takes one filter subject per consumer.
const (
	engVerdictPrefix  = "deploywatch.signals.verdict."
	engSilencePrefix  = "deploywatch.signals.silence."
	engDeploySubjects = "deploywatch.changes.deploy.>"
)

// Engine judges every verdict on the signals stream with the rules and
// publishes alerts and rollback signals to the same stream. It acks a
// verdict only after the events it led to were published and its state
// saved in a JetStream key-value bucket, so a crash loses nothing and a
// redelivery repeats nothing: the events' ids are derived from what they
// are about, and verdicts it has judged are not judged again.
type Engine struct {
	cfg     EngineConfig
	js      jetstream.JetStream
	pub     SignalPublisher
	kv      jetstream.KeyValue
	rules   atomic.Pointer[Rules]
	state   *engineState
	log     *slog.Logger
	signals jetstream.Consumer
	deploys jetstream.Consumer

	lastPrune            time.Time
	firingGauge, pending atomic.Int64

	verdicts, undecodable, ruleErrors, reloads *metrics.Counter
	fired, resolved, rollbacks                 *metrics.Counter
	batchTime                                  *metrics.PrometheusHistogram
}

// NewEngine opens the engine's consumers and state bucket and brings back
// the state saved by an earlier run.
func NewEngine(ctx context.Context, js jetstream.JetStream, pub SignalPublisher, cfg EngineConfig) (*Engine, error) {
	cfg.defaults()
	if err := cfg.Rules.Validate(); err != nil {
		return nil, err
	}
	bucket := strings.ReplaceAll(cfg.Name, "-", "_") + "_state"
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "deploywatch: alerts pending and firing, the deploys and silences they depend on",
		Storage:     jetstream.FileStorage,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot open the JetStream key-value bucket %s: %w", bucket, err)
	}
	set := cfg.Metrics
	e := &Engine{
		cfg: cfg, js: js, pub: pub, kv: kv, log: cfg.Logger,
		state:       newEngineState(cfg.Retention),
		verdicts:    set.GetOrCreateCounter(`deploywatch_alerts_verdicts_total`),
		undecodable: set.GetOrCreateCounter(`deploywatch_alerts_undecodable_messages_total`),
		ruleErrors:  set.GetOrCreateCounter(`deploywatch_alerts_rule_errors_total`),
		reloads:     set.GetOrCreateCounter(`deploywatch_alerts_rule_reloads_total`),
		fired:       set.GetOrCreateCounter(`deploywatch_alerts_events_total{status="firing"}`),
		resolved:    set.GetOrCreateCounter(`deploywatch_alerts_events_total{status="resolved"}`),
		rollbacks:   set.GetOrCreateCounter(`deploywatch_alerts_rollback_signals_total`),
		batchTime:   set.GetOrCreatePrometheusHistogram(`deploywatch_alerts_batch_duration_seconds`),
	}
	e.rules.Store(cfg.Rules)
	set.GetOrCreateGauge(`deploywatch_alerts_firing`, func() float64 { return float64(e.firingGauge.Load()) })
	set.GetOrCreateGauge(`deploywatch_alerts_pending`, func() float64 { return float64(e.pending.Load()) })
	set.GetOrCreateGauge(`deploywatch_alerts_rules`, func() float64 { return float64(len(e.rules.Load().List)) })
	if err := e.restore(ctx); err != nil {
		return nil, err
	}
	deliver := jetstream.DeliverNewPolicy
	if cfg.DeliverAll {
		deliver = jetstream.DeliverAllPolicy
	}
	e.signals, err = e.consumer(ctx, schema.SignalsStream, jetstream.ConsumerConfig{
		Durable:       cfg.Name + "-signals",
		Description:   "deploywatch: the alert engine's verdicts and silences",
		FilterSubject: schema.SignalsSubjects,
		DeliverPolicy: deliver,
	})
	if err != nil {
		return nil, err
	}
	e.deploys, err = e.consumer(ctx, schema.ChangesStream, jetstream.ConsumerConfig{
		Durable:       cfg.Name + "-deploys",
		Description:   "deploywatch: the alert engine's deploys",
		FilterSubject: engDeploySubjects,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// consumer creates the durable consumer, or updates it keeping where it
// started (JetStream cannot change a consumer's deliver policy).
func (e *Engine) consumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if existing, err := e.js.Consumer(ctx, stream, cfg.Durable); err == nil {
		cfg.DeliverPolicy = existing.CachedInfo().Config.DeliverPolicy
		cfg.OptStartSeq = existing.CachedInfo().Config.OptStartSeq
		cfg.OptStartTime = existing.CachedInfo().Config.OptStartTime
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("cannot look up the JetStream consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	cfg.AckWait = e.cfg.AckWait
	cfg.MaxDeliver = -1
	cfg.MaxAckPending = 10_000
	c, err := e.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot create the JetStream consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return c, nil
}

// Rules returns the rules in use.
func (e *Engine) Rules() *Rules { return e.rules.Load() }

// Reload replaces the rules from the next verdict on. Alerts pending and
// firing are kept: they belong to rules by name, so a rule that stays
// keeps its alerts, its `for` timers go on, and an alert of a rule that
// is gone stays firing until its deploy is rolled back or superseded.
func (e *Engine) Reload(rs *Rules) error {
	if err := rs.Validate(); err != nil {
		return err
	}
	e.rules.Store(rs)
	e.reloads.Inc()
	return nil
}

// Run consumes verdicts, silences and deploys until ctx is cancelled.
func (e *Engine) Run(ctx context.Context) error {
	sigIt, err := e.signals.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return fmt.Errorf("cannot consume %s: %w", schema.SignalsStream, err)
	}
	depIt, err := e.deploys.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		sigIt.Stop()
		return fmt.Errorf("cannot consume %s: %w", schema.ChangesStream, err)
	}
	sigCh, depCh := make(chan jetstream.Msg, 256), make(chan jetstream.Msg, 256)
	var wg sync.WaitGroup
	wg.Add(2)
	go engForward(sigIt, sigCh, &wg)
	go engForward(depIt, depCh, &wg)
	defer func() {
		// Hand back what was delivered and not judged, so that the next run
		// gets it at once rather than after AckWait.
		sigIt.Drain()
		depIt.Drain()
		go func() { wg.Wait(); close(sigCh); close(depCh) }()
		for sigCh != nil || depCh != nil {
			select {
			case m, ok := <-sigCh:
				if !ok {
					sigCh = nil
					continue
				}
				_ = m.Nak()
			case m, ok := <-depCh:
				if !ok {
					depCh = nil
					continue
				}
				_ = m.Nak()
			}
		}
	}()
	e.publishCounts()
	for {
		// Deploys first: a verdict is judged knowing its deploy.
		select {
		case m := <-depCh:
			if err := e.handleDeploys(ctx, engCollect(m, depCh)); err != nil {
				return err
			}
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return nil
		case m := <-depCh:
			if err := e.handleDeploys(ctx, engCollect(m, depCh)); err != nil {
				return err
			}
		case m := <-sigCh:
			if err := e.handleSignals(ctx, engCollect(m, sigCh), depCh); err != nil {
				return err
			}
		}
	}
}

// engForward hands one consumer's messages to the engine's goroutine.
func engForward(it jetstream.MessagesContext, out chan<- jetstream.Msg, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			continue
		}
		out <- msg
	}
}

// engCollect takes first and whatever else is already waiting, up to a batch.
func engCollect(first jetstream.Msg, ch <-chan jetstream.Msg) []jetstream.Msg {
	batch := []jetstream.Msg{first}
	for len(batch) < 256 {
		select {
		case m := <-ch:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

func (e *Engine) handleDeploys(ctx context.Context, batch []jetstream.Msg) error {
	start := time.Now()
	var out []schema.Event
	for _, m := range batch {
		var d schema.Deploy
		if err := schema.DecodeInto(m.Data(), &d, ""); err != nil {
			e.undecodable.Inc() // the sink dead-letters it
			continue
		}
		out = append(out, e.state.deploy(&d)...)
	}
	// Acked with confirmation: catchUp counts on the server knowing.
	return e.commit(ctx, out, batch, true, start)
}

func (e *Engine) handleSignals(ctx context.Context, batch []jetstream.Msg, depCh <-chan jetstream.Msg) error {
	start := time.Now()
	mine := make([]jetstream.Msg, 0, len(batch))
	verdicts := false
	for _, m := range batch {
		switch subject := m.Subject(); {
		case strings.HasPrefix(subject, engVerdictPrefix):
			verdicts = true
			mine = append(mine, m)
		case strings.HasPrefix(subject, engSilencePrefix):
			mine = append(mine, m)
		}
		// Alerts, rollback signals, acks, deliveries: not the engine's to judge.
	}
	if verdicts {
		if err := e.catchUp(ctx, depCh); err != nil {
			return err
		}
	}
	rules := e.rules.Load()
	var out []schema.Event
	for _, m := range mine {
		ev, err := schema.DecodeSignal(m.Data())
		if err != nil {
			e.undecodable.Inc() // the sink dead-letters it
			continue
		}
		switch ev := ev.(type) {
		case *schema.Verdict:
			e.verdicts.Inc()
			out = append(out, e.state.verdict(rules, ev, e.ruleError)...)
		case *schema.Silence:
			e.state.silence(ev)
		}
	}
	return e.commit(ctx, out, batch, false, start)
}

func (e *Engine) ruleError(rule string, err error) {
	e.ruleErrors.Inc()
	e.log.Warn("a rule's condition could not be evaluated; its alert is left as it was", "rule", rule, "err", err)
}

// catchUp applies the deploy events the changes stream already holds, so
// that a verdict is judged knowing its deploy's labels and whether it was
// rolled back: the impact processor read a deploy before judging it, so
// its event is in the stream before the verdict is.
func (e *Engine) catchUp(ctx context.Context, depCh <-chan jetstream.Msg) error {
	deadline := time.Now().Add(e.cfg.CatchUpTimeout)
	for {
		select {
		case m := <-depCh:
			if err := e.handleDeploys(ctx, engCollect(m, depCh)); err != nil {
				return err
			}
			continue
		default:
		}
		infoCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := e.deploys.Info(infoCtx)
		cancel()
		if err != nil {
			e.log.Warn("cannot ask JetStream how many deploys are waiting; judging verdicts with what is known", "err", err)
			return nil
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			e.log.Warn("deploy events are still waiting; judging verdicts with what is known", "pending", info.NumPending+uint64(info.NumAckPending))
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case m := <-depCh:
			if err := e.handleDeploys(ctx, engCollect(m, depCh)); err != nil {
				return err
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// commit publishes the events, saves the state that changed, and only then
// acks the messages that led there. Failures are retried until ctx ends;
// then it returns without acking, and JetStream redelivers.
func (e *Engine) commit(ctx context.Context, out []schema.Event, batch []jetstream.Msg, confirm bool, start time.Time) error {
	if len(out) > 0 {
		msgs := make([]schema.Message, 0, len(out))
		for _, ev := range out {
			data, err := json.Marshal(ev)
			if err != nil {
				return fmt.Errorf("cannot encode the %s %s: %w", ev.EventType(), ev.EventID(), err)
			}
			msgs = append(msgs, schema.Message{Subject: schema.Subject(ev), ID: ev.EventID(), Data: data})
		}
		if err := e.retry(ctx, batch, "publish alerts and rollback signals", func(ctx context.Context) error {
			return e.pub.Publish(ctx, msgs)
		}); err != nil {
			return err
		}
		for _, ev := range out {
			switch ev := ev.(type) {
			case *schema.Alert:
				if ev.Status == schema.AlertFiring {
					e.fired.Inc()
					e.log.Info("alert firing", "alert_id", ev.AlertID, "rule", ev.Rule, "severity", ev.Severity, "service", ev.Service,
						"env", ev.Env, "deploy_id", ev.DeployID, "dry_run", ev.DryRun, "silenced", ev.Silenced, "summary", ev.Summary)
				} else {
					e.resolved.Inc()
					e.log.Info("alert resolved", "alert_id", ev.AlertID, "rule", ev.Rule, "resolution", ev.Resolution)
				}
			case *schema.RollbackSignal:
				e.rollbacks.Inc()
				e.log.Warn("rollback signal published", "signal_id", ev.ID, "service", ev.Service, "env", ev.Env,
					"deploy_id", ev.DeployID, "version", ev.Version, "to", ev.PreviousVersion, "rule", ev.Rule)
			}
		}
	}
	if time.Since(e.lastPrune) > time.Minute {
		e.state.prune()
		e.lastPrune = time.Now()
	}
	if err := e.retry(ctx, batch, "save the alert state", e.save); err != nil {
		return err
	}
	for _, m := range batch {
		var err error
		if confirm {
			ackCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = m.DoubleAck(ackCtx)
			cancel()
		} else {
			err = m.Ack()
		}
		if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			e.log.Warn("cannot ack a message; it will be redelivered and change nothing", "err", err)
		}
	}
	e.publishCounts()
	e.batchTime.UpdateDuration(start)
	return nil
}

func (e *Engine) publishCounts() {
	firing, pending := e.state.counts()
	e.firingGauge.Store(int64(firing))
	e.pending.Store(int64(pending))
}

// retry runs op with backoff until it succeeds or ctx ends, keeping the
// batch from being redelivered meanwhile.
func (e *Engine) retry(ctx context.Context, batch []jetstream.Msg, what string, op func(context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	last := time.Now()
	err := backoff.RetryNotify(func() error {
		opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return op(opCtx)
	}, backoff.WithContext(b, ctx), func(err error, next time.Duration) {
		e.log.Warn("cannot "+what+"; retrying", "retry_in", next.Round(time.Millisecond), "err", err)
		if time.Since(last) > e.cfg.AckWait/3 {
			for _, m := range batch {
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

// State keys in the bucket: d.<deploy>, a.<rule and subject>, s.<silence>,
// each name base64url-encoded (keys allow few characters).
func engStateKey(kind, name string) string {
	return kind + "." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// save writes what changed since the last save.
func (e *Engine) save(ctx context.Context) error {
	s := e.state
	put := func(kind, name string, v any, present bool) error {
		key := engStateKey(kind, name)
		if !present {
			err := e.kv.Purge(ctx, key)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil
			}
			return err
		}
		data, err := json.Marshal(v)
		if err != nil {
			return backoff.Permanent(err)
		}
		_, err = e.kv.Put(ctx, key, data)
		return err
	}
	for name := range s.dirtyDeploys {
		rec, ok := s.deploys[name]
		if err := put("d", name, rec, ok); err != nil {
			return err
		}
		delete(s.dirtyDeploys, name)
	}
	for name := range s.dirtyAlerts {
		st, ok := s.alerts[name]
		if err := put("a", name, st, ok); err != nil {
			return err
		}
		delete(s.dirtyAlerts, name)
	}
	for name := range s.dirtySilences {
		sil, ok := s.silences[name]
		if err := put("s", name, sil, ok); err != nil {
			return err
		}
		delete(s.dirtySilences, name)
	}
	return nil
}

// restore reads the state an earlier run saved.
func (e *Engine) restore(ctx context.Context) error {
	lister, err := e.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("cannot list the saved alert state: %w", err)
	}
	n := 0
	for key := range lister.Keys() {
		entry, err := e.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot read the saved alert state %s: %w", key, err)
		}
		kind, enc, _ := strings.Cut(key, ".")
		raw, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil {
			e.log.Warn("forgetting saved alert state under a key this version does not know", "key", key)
			continue
		}
		name := string(raw)
		var decErr error
		switch kind {
		case "d":
			var rec engDeploy
			if decErr = json.Unmarshal(entry.Value(), &rec); decErr == nil {
				e.state.deploys[name] = &rec
				e.state.advance(rec.SeenAt)
			}
		case "a":
			var st engAlert
			if decErr = json.Unmarshal(entry.Value(), &st); decErr == nil {
				e.state.alerts[name] = &st
			}
		case "s":
			var sil schema.Silence
			if decErr = json.Unmarshal(entry.Value(), &sil); decErr == nil {
				e.state.silences[name] = &sil
			}
		default:
			decErr = errors.New("unknown kind")
		}
		if decErr != nil {
			e.log.Warn("forgetting saved alert state that does not decode", "key", key, "err", decErr)
			continue
		}
		n++
	}
	if n > 0 {
		firing, pending := e.state.counts()
		e.log.Info("restored the alert state", "entries", n, "firing", firing, "pending", pending)
	}
	return nil
}
