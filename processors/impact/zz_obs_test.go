package impact

import (
	"math/rand/v2"
	"testing"
	"time"
)

func BenchmarkObserveSmoke(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	pts := smokePts(rng, t0.Add(-30*time.Minute), 180, 4, 10, 0.005, 120)
	j := &judge{total: true}
	var o obs
	for b.Loop() {
		j.observe(&o, pts)
	}
}

func BenchmarkHLSmoke(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	j := &judge{total: true}
	var o1, o2 obs
	j.observe(&o1, smokePts(rng, t0.Add(-30*time.Minute), 180, 4, 10, 0.005, 120))
	j.observe(&o2, smokePts(rng, t0.Add(-30*time.Minute), 180, 4, 10, 0.005, 120))
	var buf []float64
	b.Run("hl", func(b *testing.B) {
		for b.Loop() {
			_, buf = hodgesLehmann(o2.lat[2], o1.lat[2], buf)
		}
	})
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			countAround(o2.lat[2], o1.lat[2], 0)
		}
	})
	b.Run("mwu", func(b *testing.B) {
		for b.Loop() {
			mannWhitney(o2.lat[2], o1.lat[2])
		}
	})
}
