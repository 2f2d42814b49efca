package eventlog

import (
	"context"
	"fmt"
	"time"

	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamLimits are the retention settings of the event log's streams.
type StreamLimits struct {
	// ChangesMaxAge keeps deploys and incidents this long; 0 keeps them forever.
	ChangesMaxAge time.Duration
	// MetricsMaxAge and MetricsMaxBytes bound the metrics stream; the oldest
	// messages go first. The ClickHouse projection keeps its own copy.
	MetricsMaxAge   time.Duration
	MetricsMaxBytes int64
	// DuplicateWindow is how long JetStream remembers message ids to drop re-sends.
	DuplicateWindow time.Duration
	// Replicas is 1 for a single server, 3 on a NATS cluster.
	Replicas int
}

// DefaultStreamLimits suit one machine.
func DefaultStreamLimits() StreamLimits {
	return StreamLimits{
		ChangesMaxAge:   0,
		MetricsMaxAge:   7 * 24 * time.Hour,
		MetricsMaxBytes: 10 << 30,
		DuplicateWindow: 10 * time.Minute,
		Replicas:        1,
	}
}

// StreamConfigs are the streams deploywatch needs, with limits applied.
func StreamConfigs(l StreamLimits) []jetstream.StreamConfig {
	replicas := max(l.Replicas, 1)
	return []jetstream.StreamConfig{
		{
			Name:        schema.ChangesStream,
			Description: "deploywatch: deploys and incidents",
			Subjects:    []string{schema.ChangesSubjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      l.ChangesMaxAge,
			Duplicates:  l.DuplicateWindow,
			Replicas:    replicas,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        schema.MetricsStream,
			Description: "deploywatch: traffic and latency samples",
			Subjects:    []string{schema.MetricsSubjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      l.MetricsMaxAge,
			MaxBytes:    l.MetricsMaxBytes,
			Duplicates:  l.DuplicateWindow,
			Replicas:    replicas,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        schema.SignalsStream,
			Description: "deploywatch: verdicts, alerts and rollback signals",
			Subjects:    []string{schema.SignalsSubjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      l.ChangesMaxAge,
			Duplicates:  l.DuplicateWindow,
			Replicas:    replicas,
			Discard:     jetstream.DiscardOld,
		},
		{
			// Outside publishers' events wait here until the inbox processor
			// validated them: a work queue, so a message is gone once moved
			// or dead-lettered. When full it refuses new messages, so that a
			// publisher's PubAck always means the message is kept.
			Name:        schema.InboxStream,
			Description: "deploywatch: events published on deploywatch.in.>, waiting to be validated",
			Subjects:    []string{schema.InboxSubjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.WorkQueuePolicy,
			MaxAge:      inboxMaxAge,
			MaxBytes:    inboxMaxBytes,
			Duplicates:  l.DuplicateWindow,
			Replicas:    replicas,
			Discard:     jetstream.DiscardNew,
		},
		{
			Name:        schema.DeadLetterStream,
			Description: "deploywatch: messages that could not be processed, with the reason",
			Subjects:    []string{schema.DeadLetterSubjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      30 * 24 * time.Hour,
			Replicas:    replicas,
			Discard:     jetstream.DiscardOld,
		},
	}
}

// The inbox holds a week of events or 1 GiB, whichever comes first, while
// the inbox processor is down.
const (
	inboxMaxAge   = 7 * 24 * time.Hour
	inboxMaxBytes = 1 << 30
)

// EnsureStreams creates the streams or updates them to the given limits. It is
// idempotent: every start calls it.
func EnsureStreams(ctx context.Context, js jetstream.StreamManager, l StreamLimits) error {
	for _, cfg := range StreamConfigs(l) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("cannot create or update JetStream stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
