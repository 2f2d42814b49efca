package impact

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// feedSteady feeds 3 instances' samples in (from, to] at 20 req/s each, with
// the error rate errRate(t), and advances every 10 s, collecting verdicts.
func feedSteady(a *Analyzer, rng *rand.Rand, service, version string, from, to time.Time, errRate func(time.Time) float64) []schema.Verdict {
	var out []schema.Verdict
	for t := from.Add(10 * time.Second); !t.After(to); t = t.Add(10 * time.Second) {
		for i := range 3 {
			reqs := math.Round(200 + rng.NormFloat64()*14)
			errs := math.Round(reqs*errRate(t) + rng.NormFloat64()*math.Sqrt(reqs*errRate(t)+0.01))
			p50 := 40 * math.Exp(rng.NormFloat64()*0.05)
			a.Observe(service, "production", Point{
				Time: t, Interval: 10 * time.Second, Version: version, Instance: fmt.Sprintf("%s-%d", service, i),
				Requests: reqs, Errors: max(0, errs), P50: p50, P95: p50 * 2.5, P99: p50 * 4,
			})
		}
		out = append(out, a.Advance()...)
	}
	return out
}

// TestRecoveryAfterRollback follows a bad deploy through its rollback: once
// the samples after the rollback are back within the baseline, a final
// healthy recovery verdict says so, the end of the incident it caused.
func TestRecoveryAfterRollback(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	a := NewAnalyzer(Config{})
	at := time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)
	d := &schema.Deploy{ID: "dep-1", Service: "cart", Env: "production", Version: "v2", PreviousVersion: "v1",
		Status: schema.DeploySucceeded, StartedAt: schema.At(at), FinishedAt: schema.At(at.Add(time.Minute))}
	normal := func(time.Time) float64 { return 0.005 }
	feedSteady(a, rng, "cart", "v1", at.Add(-30*time.Minute), at, normal)
	a.Deploy(d)
	bad := feedSteady(a, rng, "cart", "v2", at, at.Add(5*time.Minute), func(time.Time) float64 { return 0.05 })
	last := bad[len(bad)-1]
	if last.Status != schema.VerdictBad || !last.Final {
		t.Fatalf("want a final bad verdict, got %s: %s", last.Status, last.Reason)
	}
	rolledBackAt := at.Add(5 * time.Minute)
	rb := *d
	rb.Status, rb.FinishedAt = schema.DeployRolledBack, schema.At(rolledBackAt)
	a.Deploy(&rb)
	// Still bad for a minute after the rollback, then back to normal.
	after := feedSteady(a, rng, "cart", "v1", rolledBackAt, rolledBackAt.Add(20*time.Minute), func(t time.Time) float64 {
		if t.Before(rolledBackAt.Add(time.Minute)) {
			return 0.05
		}
		return 0.005
	})
	if len(after) != 1 {
		t.Fatalf("want one recovery verdict, got %d: %+v", len(after), after)
	}
	v := after[0]
	if v.Status != schema.VerdictHealthy || !v.Final || v.Comparison != schema.RecoveryVsBaseline || v.DeployID != "dep-1" {
		t.Fatalf("recovery verdict: %s final=%v comparison=%s deploy=%s: %s", v.Status, v.Final, v.Comparison, v.DeployID, v.Reason)
	}
	if !strings.HasPrefix(v.ID, "dep-1:recovery:") || !strings.Contains(v.Reason, "after the rollback") {
		t.Errorf("recovery verdict id %q, reason %q", v.ID, v.Reason)
	}
	if !v.EvaluatedAt.Time.After(rolledBackAt.Add(recoveryMin)) {
		t.Errorf("recovered at %s, before the errors after the rollback ended", v.EvaluatedAt.Time)
	}
	// A restart in between keeps the wait for the rollback: a bad analysis
	// saved as done comes back and still watches its recovery.
	b := NewAnalyzer(Config{})
	b.Restore(State{Deploy: *d, Done: true, Bad: true})
	feedSteady(b, rng, "cart", "v2", at.Add(-30*time.Minute), at.Add(5*time.Minute), normal)
	b.Deploy(&rb)
	if got := feedSteady(b, rng, "cart", "v1", rolledBackAt, rolledBackAt.Add(10*time.Minute), normal); len(got) != 1 || got[0].Comparison != schema.RecoveryVsBaseline {
		t.Fatalf("after a restart: want one recovery verdict, got %+v", got)
	}
}
