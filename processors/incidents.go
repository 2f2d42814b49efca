package processors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// IncidentsConfig tunes the incidents processor.
type IncidentsConfig struct {
	// ConsumerName names the durable consumer and the state bucket (default "incidents").
	ConsumerName string
	Logger       *slog.Logger
	Metrics      *metrics.Set
}

// incidentMemory is how long an incident is remembered: one still open
// after it is forgotten is never resolved by a recovery.
const incidentMemory = 90 * 24 * time.Hour

// openIncident is what the processor keeps of an incident until it resolves.
// Resolved ones stay as tombstones, so that a late signal of the same deploy
// does not open its incident again.
type openIncident struct {
	Incident schema.Incident `json:"incident"`
	Resolved bool            `json:"resolved,omitempty"`
}

// RunIncidents turns the signals of bad deploys into incidents on the
// changes stream, until ctx is cancelled. A bad verdict or a firing alert of
// a deploy opens the deploy's incident; it resolves when the service
// recovered: a recovery verdict after the rollback says the samples are back
// within the baseline, or a later deploy of the service (a fix forward) is
// judged healthy. The durations (to detect, to roll back, to recover) are
// read from the incident and deploy times; see the incidents API.
func RunIncidents(ctx context.Context, js jetstream.JetStream, pub Publisher, cfg IncidentsConfig) error {
	if cfg.ConsumerName == "" {
		cfg.ConsumerName = "incidents"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.ConsumerName + "_state",
		Description: "deploywatch: open incidents of bad deploys",
		Storage:     jetstream.FileStorage,
		History:     1,
		TTL:         incidentMemory,
	})
	if err != nil {
		return fmt.Errorf("cannot open the JetStream key-value bucket %s_state: %w", cfg.ConsumerName, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, schema.SignalsStream, jetstream.ConsumerConfig{
		Durable:       cfg.ConsumerName,
		Description:   "deploywatch: incidents from bad deploys",
		FilterSubject: schema.SignalsSubjects, // one filter: NATS before 2.10 takes no more
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       60 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("cannot create the JetStream consumer %s: %w", cfg.ConsumerName, err)
	}
	p := &incidentsProcessor{kv: kv, pub: pub, log: cfg.Logger,
		opened:   cfg.Metrics.GetOrCreateCounter(`deploywatch_incidents_total{status="opened"}`),
		resolved: cfg.Metrics.GetOrCreateCounter(`deploywatch_incidents_total{status="resolved"}`),
	}
	iter, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("cannot consume %s: %w", schema.SignalsStream, err)
	}
	go func() {
		<-ctx.Done()
		iter.Drain()
	}()
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			continue
		}
		work, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err = p.handle(work, msg.Data())
		cancel()
		if err != nil {
			// JetStream redelivers; every write is idempotent by event id.
			p.log.Warn("cannot turn a signal into an incident; it will be retried", "subject", msg.Subject(), "err", err)
			_ = msg.NakWithDelay(5 * time.Second)
			continue
		}
		if err := msg.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			p.log.Warn("cannot ack a signal; it will come again and change nothing", "err", err)
		}
	}
}

type incidentsProcessor struct {
	kv       jetstream.KeyValue
	pub      Publisher
	log      *slog.Logger
	opened   *metrics.Counter
	resolved *metrics.Counter
}

func (p *incidentsProcessor) handle(ctx context.Context, data []byte) error {
	ev, err := schema.DecodeSignal(data)
	if err != nil {
		return nil // not ours to judge: the sink dead-letters what does not decode
	}
	switch e := ev.(type) {
	case *schema.Verdict:
		return p.verdict(ctx, e)
	case *schema.Alert:
		if e.Status == schema.AlertFiring && e.DeployID != "" && !e.DryRun {
			return p.open(ctx, e.DeployID, e.Service, e.Env, e.Version, e.StartsAt, "alert "+e.Rule+": "+e.Summary)
		}
	}
	return nil
}

func (p *incidentsProcessor) verdict(ctx context.Context, v *schema.Verdict) error {
	if v.DeployID == "" || !v.Final {
		return nil
	}
	switch {
	case v.Comparison == schema.RecoveryVsBaseline && v.Status == schema.VerdictHealthy:
		return p.resolve(ctx, schema.DeployIncidentID(v.DeployID), v.EvaluatedAt)
	case v.Comparison == schema.RecoveryVsBaseline:
		return nil // not recovered: the incident stays open
	case v.Status == schema.VerdictBad:
		return p.open(ctx, v.DeployID, v.Service, v.Env, v.Version, v.EvaluatedAt, v.Reason)
	case v.Status == schema.VerdictHealthy:
		return p.fixedForward(ctx, v)
	}
	return nil
}

// open publishes the deploy's incident as opened, once.
func (p *incidentsProcessor) open(ctx context.Context, deployID, service, env, version string, at schema.Time, why string) error {
	id := schema.DeployIncidentID(deployID)
	if _, err := p.kv.Get(ctx, stateKey(id)); err == nil {
		return nil // open already, or resolved
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("cannot read the open incidents: %w", err)
	}
	title := "bad deploy of " + service + " " + version + " in " + env + ": " + why
	if len(title) > 1024 {
		title = title[:1021] + "..."
	}
	in := schema.Incident{
		ID: id, Type: schema.TypeIncident, Service: service, Env: env, Status: schema.IncidentOpened,
		Time: at, Title: title, Source: "deploywatch", DeployID: deployID,
	}
	if err := p.publish(ctx, &in); err != nil {
		return err
	}
	data, _ := json.Marshal(openIncident{Incident: in})
	if _, err := p.kv.Put(ctx, stateKey(id), data); err != nil {
		return fmt.Errorf("cannot record the open incident %s: %w", id, err)
	}
	p.opened.Inc()
	return nil
}

// resolve publishes an open incident as resolved at the given time.
func (p *incidentsProcessor) resolve(ctx context.Context, id string, at schema.Time) error {
	entry, err := p.kv.Get(ctx, stateKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil // never opened, or resolved already
	}
	if err != nil {
		return fmt.Errorf("cannot read the open incidents: %w", err)
	}
	var open openIncident
	if err := json.Unmarshal(entry.Value(), &open); err != nil || open.Resolved {
		return nil
	}
	in := open.Incident
	in.Status, in.Time = schema.IncidentResolved, at
	if at.Time.Before(open.Incident.Time.Time) {
		in.Time = open.Incident.Time
	}
	if err := p.publish(ctx, &in); err != nil {
		return err
	}
	open.Resolved = true
	data, _ := json.Marshal(open)
	if _, err := p.kv.Put(ctx, stateKey(id), data); err != nil {
		return fmt.Errorf("cannot record the resolved incident %s: %w", id, err)
	}
	p.resolved.Inc()
	return nil
}

// fixedForward resolves the open incidents of a service when a later deploy
// of it is judged healthy.
func (p *incidentsProcessor) fixedForward(ctx context.Context, v *schema.Verdict) error {
	keys, err := p.kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return fmt.Errorf("cannot list the open incidents: %w", err)
	}
	for key := range keys.Keys() {
		entry, err := p.kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var open openIncident
		if json.Unmarshal(entry.Value(), &open) != nil || open.Resolved {
			continue
		}
		in := open.Incident
		if in.Service != v.Service || in.Env != v.Env || in.DeployID == v.DeployID || !in.Time.Time.Before(v.EvaluatedAt.Time) {
			continue
		}
		if err := p.resolve(ctx, in.ID, v.EvaluatedAt); err != nil {
			return err
		}
	}
	return nil
}

func (p *incidentsProcessor) publish(ctx context.Context, in *schema.Incident) error {
	data, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("cannot encode incident %s: %w", in.ID, err)
	}
	if err := p.pub.Publish(ctx, []schema.Message{{Subject: schema.Subject(in), ID: in.EventID(), Data: data}}); err != nil {
		return fmt.Errorf("cannot publish incident %s %s: %w", in.ID, in.Status, err)
	}
	return nil
}
