package impact

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

func smokePts(rng *rand.Rand, from time.Time, n, inst int, rate, er, p99 float64) []Point {
	var out []Point
	for k := 0; k < n; k++ {
		t := from.Add(time.Duration(k+1) * 10 * time.Second)
		for i := 0; i < inst; i++ {
			req := math.Round(rate*10 + rng.NormFloat64()*math.Sqrt(rate*10))
			e := math.Round(req*er + rng.NormFloat64()*math.Sqrt(req*er))
			out = append(out, Point{Time: t, Interval: 10 * time.Second, Instance: fmt.Sprint(i), Requests: max(req, 0), Errors: max(e, 0),
				P50: 40 * math.Exp(0.08*rng.NormFloat64()), P95: 90 * math.Exp(0.1*rng.NormFloat64()), P99: p99 * math.Exp(0.15*rng.NormFloat64())})
		}
	}
	return out
}

func TestSmoke(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct{ rate, er, p99 float64; final bool }{{10, 0.005, 120, true}, {10, 0.015, 120, true}, {10, 0.005, 180, true}, {5, 0.005, 120, true}, {0.05, 0.005, 120, true}, {10, 0.2, 120, false}} {
		in := Input{Comparison: schema.BeforeVsAfter, Version: "v1.4.2", Final: c.final,
			Baseline:  Group{Window: schema.Window{From: schema.At(t0.Add(-30 * time.Minute)), To: schema.At(t0)}, Points: smokePts(rng, t0.Add(-30*time.Minute), 180, 4, 10, 0.005, 120)},
			Candidate: Group{Window: schema.Window{From: schema.At(t0), To: schema.At(t0.Add(30 * time.Minute))}, Points: smokePts(rng, t0, 180, 4, c.rate, c.er, c.p99)},
		}
		if c.rate < 1 {
			in.Baseline.Points = smokePts(rng, t0.Add(-30*time.Minute), 180, 1, c.rate, c.er, c.p99)
			in.Candidate.Points = smokePts(rng, t0, 180, 1, c.rate, c.er, c.p99)
		}
		if !c.final {
			in.Candidate.Points = in.Candidate.Points[:40]
		}
		v := Judge(in, DefaultPolicy())
		b, err := json.MarshalIndent(v, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		_ = b
		t.Logf("%s score=%d early=%v: %s", v.Status, v.Score, v.Early, v.Reason)
		for _, m := range v.Metrics {
			t.Logf("   %s %s p=%.3g shift=%.4g effect=%.3f ratio=%.3f base=%.4g cand=%.4g need=%d note=%s", m.Name, m.Class, m.PValue, m.Shift, m.Effect, m.Ratio, m.Baseline.Value, m.Candidate.Value, m.SamplesNeeded, m.Note)
		}
	}
}
