package processors

import (
	"context"
	"fmt"
	"time"

	"github.com/deploywatch/deploywatch/processors/impact"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go/jetstream"
)

// ReplayConfig tunes a replay.
type ReplayConfig struct {
	Analyzer impact.Config
	// FlushRows writes the projections once this many rows are buffered (default 50,000).
	FlushRows int
	// Progress, when set, is told how many messages were replayed of how many.
	Progress func(done, total int64)
}

// ReplayStats says what a replay did.
type ReplayStats struct {
	Messages int64
	Verdicts int
	Skipped  int64 // messages that do not decode (the live sink dead-lettered them)
}

// Replay re-runs the processors over everything the changes and metrics
// streams hold, writing the projections and the verdicts into ch (fresh
// tables, migrated by the caller) instead of the live ones. Messages are
// merged in the order JetStream stored them, and the analysis depends only
// on the events' own times, so the verdicts are the live run's. Nothing is
// published: the event log stays as it was.
func Replay(ctx context.Context, js jetstream.JetStream, ch BatchPreparer, q Querier, cfg ReplayConfig) (ReplayStats, error) {
	if cfg.FlushRows <= 0 {
		cfg.FlushRows = 50_000
	}
	if cfg.Analyzer.History == nil {
		cfg.Analyzer.History = NewClickHouseHistory(q)
	}
	var stats ReplayStats
	sources := []*replaySource{
		{stream: schema.ChangesStream, proj: &changesProjection{}},
		{stream: schema.MetricsStream, proj: &metricsProjection{}},
	}
	var total int64
	for _, s := range sources {
		if err := s.open(ctx, js); err != nil {
			return stats, err
		}
		defer s.stop()
		total += int64(s.total)
	}
	analyzer := impact.NewAnalyzer(cfg.Analyzer)
	verdicts := &signalsProjection{}
	insert := func(ctx context.Context, table, columns string, cols []any) error {
		return insertColumns(ctx, ch, table, columns, cols)
	}
	// flush writes what the projections hold, so that the analysis can read
	// it back as history, then advances the analysis and writes its verdicts.
	flush := func() error {
		for _, s := range sources {
			if s.proj.rows() == 0 {
				continue
			}
			if err := s.proj.write(ctx, insert); err != nil {
				return fmt.Errorf("cannot write the replayed %s: %w", s.stream, err)
			}
			s.proj.reset()
		}
		for _, v := range analyzer.Advance() {
			if err := verdicts.addVerdict(&v, v.EvaluatedAt.Time); err != nil {
				return err
			}
			stats.Verdicts++
		}
		if verdicts.rows() > 0 {
			if err := verdicts.write(ctx, insert); err != nil {
				return fmt.Errorf("cannot write the replayed verdicts: %w", err)
			}
			verdicts.reset()
		}
		return nil
	}
	buffered := 0
	for {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		src, err := nextSource(ctx, sources)
		if err != nil {
			return stats, err
		}
		if src == nil {
			break
		}
		msg, meta := src.head, src.headMeta
		src.head = nil
		stats.Messages++
		if err := src.proj.add(msg, meta); err != nil {
			stats.Skipped++
		} else {
			_ = feed(analyzer, src.stream, msg) // what does not decode was counted as skipped
			buffered++
		}
		if buffered >= cfg.FlushRows || src.proj.rows() >= cfg.FlushRows {
			if err := flush(); err != nil {
				return stats, err
			}
			buffered = 0
		}
		if cfg.Progress != nil && stats.Messages%256 == 0 {
			cfg.Progress(stats.Messages, total)
		}
	}
	if err := flush(); err != nil {
		return stats, err
	}
	if cfg.Progress != nil {
		cfg.Progress(stats.Messages, total)
	}
	return stats, nil
}

// replaySource reads one stream from its first message to the last one it
// held when the replay began.
type replaySource struct {
	stream   string
	proj     projection
	total    uint64
	lastSeq  uint64
	iter     jetstream.MessagesContext
	head     jetstream.Msg
	headMeta *jetstream.MsgMetadata
	done     bool
}

func (s *replaySource) open(ctx context.Context, js jetstream.JetStream) error {
	st, err := js.Stream(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("cannot open the stream %s: %w", s.stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("cannot read the state of %s: %w", s.stream, err)
	}
	s.total, s.lastSeq = info.State.Msgs, info.State.LastSeq
	if s.total == 0 {
		s.done = true
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", s.stream, err)
	}
	s.iter, err = cons.Messages()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", s.stream, err)
	}
	return nil
}

func (s *replaySource) stop() {
	if s.iter != nil {
		s.iter.Stop()
	}
}

// fill makes sure the source has its next message at hand, unless it is done.
func (s *replaySource) fill(ctx context.Context) error {
	if s.done || s.head != nil {
		return nil
	}
	for {
		msg, err := s.iter.Next(jetstream.NextMaxWait(30 * time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("cannot read %s: %w", s.stream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		s.head, s.headMeta = msg, meta
		if meta.Sequence.Stream >= s.lastSeq {
			s.done = true // after this one
		}
		return nil
	}
}

// nextSource returns the source whose next message JetStream stored first,
// or nil when every source is done.
func nextSource(ctx context.Context, sources []*replaySource) (*replaySource, error) {
	var best *replaySource
	for _, s := range sources {
		if err := s.fill(ctx); err != nil {
			return nil, err
		}
		if s.head == nil {
			continue
		}
		if best == nil || s.headMeta.Timestamp.Before(best.headMeta.Timestamp) {
			best = s
		}
	}
	return best, nil
}
