package processors

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/processors/impact"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go/jetstream"
)

// publishDeployWithTraffic publishes a deploy of service and 40 minutes of
// steady samples around it.
func (e *env) publishDeployWithTraffic(t *testing.T, service string, at time.Time) {
	t.Helper()
	d := &schema.Deploy{
		Service: service, Env: "production", Version: "v2", PreviousVersion: "v1",
		Status: schema.DeploySucceeded, StartedAt: schema.At(at), FinishedAt: schema.At(at.Add(time.Minute)),
	}
	d.Normalize()
	data, _ := json.Marshal(d)
	msgs := []schema.Message{{Subject: schema.Subject(d), ID: d.EventID(), Data: data}}
	b := &schema.MetricsBatch{Service: service, Env: "production"}
	for ts := at.Add(-30 * time.Minute); !ts.After(at.Add(40 * time.Minute)); ts = ts.Add(10 * time.Second) {
		for i := range 3 {
			b.Samples = append(b.Samples, schema.Sample{
				Time: schema.At(ts), IntervalS: schema.NumberOf(10), Instance: fmt.Sprintf("%s-%d", service, i),
				Requests: schema.CountOf(100 + uint64(ts.Unix()%7)), Errors: schema.CountOf(uint64(ts.Unix() % 2)),
				LatencyMs: &schema.LatencyQuantiles{P50: schema.NumberOf(20 + float64(ts.Unix()%5)), P95: schema.NumberOf(40 + float64(ts.Unix()%9)), P99: schema.NumberOf(80 + float64(ts.Unix()%11))},
			})
		}
	}
	b.Normalize(nil)
	data, _ = json.Marshal(b)
	msgs = append(msgs, schema.Message{Subject: schema.Subject(b), ID: b.ID, Data: data})
	if err := e.pub.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
}

// TestImpactShardsSplitServices runs two replicas of the impact processor,
// shards 0/2 and 1/2: together they judge every deploy once, and each judges
// only its own services.
func TestImpactShardsSplitServices(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2026, 11, 4, 12, 0, 0, 0, time.UTC)
	services := []string{"cart", "search", "payments", "auth", "catalog", "mail", "ledger", "quotes"}
	for _, s := range services {
		e.publishDeployWithTraffic(t, s, at)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sets := []*metrics.Set{metrics.NewSet(), metrics.NewSet()}
	done := make(chan error, 2)
	for i, set := range sets {
		go func() {
			done <- RunImpact(ctx, e.js, e.pub, ImpactConfig{
				Analyzer: impact.Config{Shard: impact.Shard{Index: i, Count: 2}},
				Metrics:  set,
			})
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range sets {
			if err := <-done; err != nil {
				t.Errorf("the impact processor stopped with %v", err)
			}
		}
	})

	// Read the final verdicts off the signals stream.
	cons, err := e.js.OrderedConsumer(context.Background(), schema.SignalsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	finals := map[string]int{}
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return false, err.Error()
		}
		for m := range batch.Messages() {
			var v schema.Verdict
			if err := json.Unmarshal(m.Data(), &v); err != nil {
				t.Fatal(err)
			}
			if v.Final {
				finals[v.Service]++
			}
		}
		return len(finals) == len(services), fmt.Sprintf("final verdicts for %d of %d services", len(finals), len(services))
	})
	for s, n := range finals {
		if n != 1 {
			t.Errorf("%s has %d final verdicts, want 1", s, n)
		}
	}
	// Each replica published verdicts, and together exactly what the stream
	// holds: no deploy was judged by both.
	owned := 0
	for _, s := range services {
		if (impact.Shard{Index: 0, Count: 2}).Owns(s) {
			owned++
		}
	}
	if owned == 0 || owned == len(services) {
		t.Fatalf("the hash gives all %d services to one shard", len(services))
	}
	stream, err := e.js.Stream(context.Background(), schema.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		info, err := stream.Info(context.Background())
		if err != nil {
			return false, err.Error()
		}
		var counts []uint64
		var total uint64
		for _, set := range sets {
			n := set.GetOrCreateCounter(`deploywatch_impact_verdicts_total`).Get()
			counts = append(counts, n)
			total += n
		}
		ok := counts[0] > 0 && counts[1] > 0 && total == info.State.Msgs
		return ok, fmt.Sprintf("the replicas published %v verdicts, the stream holds %d", counts, info.State.Msgs)
	})
}
