package impact

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func BenchmarkSortSmoke(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	pts := smokePts(rng, t0.Add(-30*time.Minute), 180, 4, 10, 0.005, 120)
	src := make([]float64, len(pts))
	for i, p := range pts {
		src[i] = p.P99
	}
	x := make([]float64, len(src))
	var keys []uint64
	b.Run("keys", func(b *testing.B) {
		for b.Loop() {
			copy(x, src)
			keys = sortFloats(x, keys)
		}
	})
	b.Run("floats", func(b *testing.B) {
		for b.Loop() {
			copy(x, src)
			slices.Sort(x)
		}
	})
}

func radixSortKeys(keys, tmp []uint64) {
	var counts [8][256]int32
	for _, k := range keys {
		for b := 0; b < 8; b++ {
			counts[b][byte(k>>(8*b))]++
		}
	}
	src, dst := keys, tmp[:len(keys)]
	for b := 0; b < 8; b++ {
		c := &counts[b]
		if int(c[byte(src[0]>>(8*b))]) == len(src) {
			continue
		}
		var sum int32
		for i := range c {
			c[i], sum = sum, sum+c[i]
		}
		shift := uint(8 * b)
		for _, k := range src {
			d := byte(k >> shift)
			dst[c[d]] = k
			c[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &keys[0] {
		copy(keys, src)
	}
}

func BenchmarkSortRadix(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	pts := smokePts(rng, t0.Add(-30*time.Minute), 180, 4, 10, 0.005, 120)
	src := make([]uint64, len(pts))
	for i, p := range pts {
		src[i] = math.Float64bits(p.P99)
	}
	x := make([]uint64, len(src))
	tmp := make([]uint64, len(src))
	for _, name := range []string{"radix", "pdq", "radix", "pdq"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				copy(x, src)
				if name == "radix" {
					radixSortKeys(x, tmp)
				} else {
					slices.Sort(x)
				}
			}
		})
	}
	copy(x, src)
	radixSortKeys(x, tmp)
	if !slices.IsSorted(x) {
		b.Fatal("not sorted")
	}
}
