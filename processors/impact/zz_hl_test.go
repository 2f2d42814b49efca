package impact

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHLPasses(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		n, m  int
		shift float64
		kind  string
	}{{720, 720, 0, "lognorm"}, {720, 720, 0.5, "lognorm"}, {60, 720, 0, "lognorm"}, {720, 720, 0, "ties"}, {180, 180, 0.1, "ties"}, {720, 720, 0, "heavy"}, {6, 720, 0, "lognorm"}} {
		gen := func(n int, sh float64) []float64 {
			x := make([]float64, n)
			for i := range x {
				switch c.kind {
				case "lognorm":
					x[i] = 120 * math.Exp(0.15*rng.NormFloat64()+sh)
				case "ties":
					x[i] = math.Round(40*(1+sh)+rng.NormFloat64()*6) / 10
				case "heavy":
					x[i] = 100 / (0.05 + rng.Float64())
				}
			}
			slices.Sort(x)
			return x
		}
		y, x := gen(c.m, 0), gen(c.n, c.shift)
		passes = 0
		got, _ := hodgesLehmann(x, y, nil)
		t.Logf("%v: passes=%d hl=%v", c, passes, got)
	}
}
