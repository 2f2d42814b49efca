package impact

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

func BenchmarkJudgeSmoke(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	in := Input{Comparison: schema.BeforeVsAfter, Version: "v1.4.2", Final: true,
		Baseline:  Group{Points: smokePts(rng, t0.Add(-30*time.Minute), 180, 4, 10, 0.005, 120)},
		Candidate: Group{Points: smokePts(rng, t0, 180, 4, 10, 0.005, 120)},
	}
	p := DefaultPolicy()
	b.ReportAllocs()
	for b.Loop() {
		Judge(in, p)
	}
}
