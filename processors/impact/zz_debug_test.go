package impact_test

import (
	"math"
	"testing"
	"time"
)

func TestZZDebug(t *testing.T) {
	tr := traffic{Instances: 8, PeakRate: 23, PeakToTrough: 1, ErrorRate: 0.0038, P50: 60, Sigma: 0.5, Spread: 0.06, Spikes: 0.003, Blips: 0.0005}
	g := newGenerator("x", "v1", tr, 3)
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	var ws []float64
	var exp []float64
	var e, r float64
	for i := 1; i <= 8640*7; i++ {
		for _, p := range g.round(start.Add(time.Duration(i) * sampleInterval)) { e += p.Errors; r += p.Requests }
		if i%60 == 0 { ws = append(ws, e); exp = append(exp, r*tr.ErrorRate); e, r = 0, 0 }
	}
	var m, v float64
	for i := range ws { m += ws[i] }
	m /= float64(len(ws))
	for i := range ws { v += (ws[i] - m) * (ws[i] - m) }
	v /= float64(len(ws) - 1)
	var mexp float64
	for _, x := range exp { mexp += x }
	t.Logf("10-min windows: mean errors %.1f (expected %.1f), variance %.1f, dispersion %.2f, sd %.2f", m, mexp/float64(len(exp)), v, v/m, math.Sqrt(v))
}
