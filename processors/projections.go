package processors

import (
	"context"
	"fmt"

	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go/jetstream"
)

// insertFunc writes columns into a table in one batch.
type insertFunc func(ctx context.Context, table, columns string, cols []any) error

// projection turns the messages of one stream into rows and writes them.
type projection interface {
	// add decodes msg into the buffer; an error means it never can be.
	add(msg jetstream.Msg, meta *jetstream.MsgMetadata) error
	rows() int
	write(ctx context.Context, insert insertFunc) error
	reset()
}

// changesProjection writes deploys, incidents and pushes: the raw event, and
// the deploy or incident change table or the push's commits.
type changesProjection struct {
	events    eventRows
	deploys   deployRows
	incidents incidentRows
	commits   commitRows
}

func (p *changesProjection) add(msg jetstream.Msg, meta *jetstream.MsgMetadata) error {
	ev, err := schema.DecodeEvent(msg.Data(), "")
	if err != nil {
		return fmt.Errorf("cannot decode the event: %w", err)
	}
	switch e := ev.(type) {
	case *schema.Deploy:
		p.deploys.add(e)
	case *schema.Incident:
		p.incidents.add(e)
	case *schema.Push:
		p.commits.add(e)
	default:
		return fmt.Errorf("%s events do not belong on the changes stream", ev.EventType())
	}
	p.events.add(ev, meta.Timestamp.UTC(), msg.Data())
	return nil
}

// rows counts a push's commits too: they bound the size of the insert.
func (p *changesProjection) rows() int { return p.events.len() + p.commits.len() }

func (p *changesProjection) write(ctx context.Context, insert insertFunc) error {
	// The change tables first, the raw log last: a retry after a partial
	// failure rewrites all of them, and every table deduplicates by key.
	if p.deploys.len() > 0 {
		if err := insert(ctx, "deploy_changes", deployColumns, p.deploys.columns()); err != nil {
			return err
		}
	}
	if p.incidents.len() > 0 {
		if err := insert(ctx, "incident_changes", incidentColumns, p.incidents.columns()); err != nil {
			return err
		}
	}
	if p.commits.len() > 0 {
		if err := insert(ctx, "commits", commitColumns, p.commits.columns()); err != nil {
			return err
		}
	}
	return insert(ctx, "events", eventColumns, p.events.columns())
}

func (p *changesProjection) reset() { *p = changesProjection{} }

// metricsProjection writes metric samples.
type metricsProjection struct {
	samples sampleRows
}

func (p *metricsProjection) add(msg jetstream.Msg, _ *jetstream.MsgMetadata) error {
	var b schema.MetricsBatch
	if err := schema.DecodeMetricsMessage(msg.Headers().Get(schema.EncodingHeader), msg.Data(), &b); err != nil {
		return fmt.Errorf("cannot decode the metrics batch: %w", err)
	}
	p.samples.add(&b, b.ID)
	return nil
}

func (p *metricsProjection) rows() int { return p.samples.len() }

func (p *metricsProjection) write(ctx context.Context, insert insertFunc) error {
	return insert(ctx, "metric_samples", sampleColumns, p.samples.columns())
}

func (p *metricsProjection) reset() { p.samples.reset() }
