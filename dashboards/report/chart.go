package report

import (
	"math"
	"slices"

	"github.com/deploywatch/deploywatch/schema"
)

// chart is one key's weekly bar chart, laid out for the SVG template: every
// coordinate is computed here so the template only places shapes.
type chart struct {
	Title   string
	W, H    float64
	Axis    line
	Bars    []bar
	Nulls   []label // weeks without a figure: a dash on the axis
	Limits  []limitLine
	XLabels []label
}

type line struct{ X1, Y1, X2, Y2 float64 }

type label struct {
	X, Y float64
	Text string
	Tip  string // tooltip (<title>)
}

type bar struct {
	X, Y, W, H float64
	Fill       string
	Opacity    float64
	Stroke     string // the headline week is outlined
	Tip        string
	Value      *label // printed above the bar
	P90        *line  // the p90 tick of duration keys
}

type limitLine struct {
	line
	Label label
}

// bandColor is each DORA band's colour, dark enough for white text.
var bandColor = map[string]string{
	schema.BandElite:  "#1a7f37",
	schema.BandHigh:   "#4c9a2a",
	schema.BandMedium: "#c77c02",
	schema.BandLow:    "#c62828",
	"":                "#9e9e9e", // unmeasured
}

// Chart geometry in pixels: the plot sits inside the margins.
const (
	chartW, chartH                     = 340.0, 170.0
	marginL, marginR, marginT, marginB = 8.0, 70.0, 14.0, 20.0
)

func newChart(v view, k key) chart {
	c := chart{Title: k.Chart, W: chartW, H: chartH}
	plotW, plotH := chartW-marginL-marginR, chartH-marginT-marginB
	base := marginT + plotH
	c.Axis = line{marginL, base, marginL + plotW, base}

	var lo, top float64 = math.Inf(1), 0
	for _, w := range v.Weeks {
		for _, get := range []func(schema.DoraWeek) (float64, bool){k.value, k.p90} {
			if get == nil {
				continue
			}
			if x, ok := get(w.DoraWeek); ok {
				lo, top = min(lo, x), max(top, x)
			}
		}
	}
	// Durations span minutes to weeks and DORA's bands for them are an hour,
	// a day, a week, a month apart: on a log scale every week's bar and the
	// band limits nearest to it are readable at once. Counts and rates are
	// linear, from zero.
	ymax := scaleTop(top, k.Limits)
	y := func(x float64) float64 { return round1(base - min(x, ymax)/ymax*plotH) }
	if k.Unit == seconds {
		c.Title += " (log scale)"
		floor := 60.0 // a minute
		if lo < floor {
			floor = 1
		}
		ymax = logTop(max(top, floor), k.Limits)
		span := math.Log10(ymax) - math.Log10(floor)
		y = func(x float64) float64 {
			x = min(max(x, floor), ymax)
			return round1(base - (math.Log10(x)-math.Log10(floor))/span*plotH)
		}
	}

	for _, l := range k.Limits {
		if l.At > ymax {
			continue
		}
		ly := y(l.At)
		c.Limits = append(c.Limits, limitLine{
			line:  line{marginL, ly, marginL + plotW, ly},
			Label: label{X: marginL + plotW + 4, Y: ly + 3, Text: l.Label},
		})
	}

	n := len(v.Weeks)
	slot := plotW / float64(max(n, 1))
	barW := round1(max(2, slot*0.7))
	every := (n + 7) / 8 // at most about eight date labels
	for i, w := range v.Weeks {
		cx := marginL + slot*(float64(i)+0.5)
		date := w.WeekStart.UTC().Format("2 Jan")
		if (n-1-i)%every == 0 {
			c.XLabels = append(c.XLabels, label{X: round1(cx), Y: base + 13, Text: date})
		}
		x, ok := k.value(w.DoraWeek)
		if !ok {
			_, missing := k.phrase(w.DoraWeek)
			c.Nulls = append(c.Nulls, label{X: round1(cx), Y: base - 3, Text: "–", Tip: "week of " + date + ": " + missing})
			continue
		}
		b := bar{
			X: round1(cx - barW/2), W: barW, Y: y(x), Fill: bandColor[k.band(w.DoraWeek)], Opacity: 1,
			Tip: "week of " + date + ": " + k.short(x),
		}
		b.H = round1(base - b.Y)
		if w.Partial {
			b.Opacity, b.Tip = 0.45, b.Tip+" so far"
		}
		if band := k.band(w.DoraWeek); band != "" {
			b.Tip += " (" + band + ")"
		}
		if i == v.Headline {
			b.Stroke = "#212121"
		}
		valueY := b.Y
		if k.p90 != nil {
			if p, ok := k.p90(w.DoraWeek); ok {
				py := y(p)
				b.P90 = &line{b.X - 2, py, round1(b.X + barW + 2), py}
				b.Tip += ", p90 " + k.short(p)
				valueY = min(valueY, py)
			}
		}
		// Values over the bars (and p90 ticks) when they fit the slot, at
		// about 5 px a character.
		if text := k.short(x); i == v.Headline || float64(5*len([]rune(text))) <= slot-2 {
			b.Value = &label{X: round1(cx), Y: max(valueY-3, 9), Text: text}
		}
		c.Bars = append(c.Bars, b)
	}
	return c
}

// logTop is the top of a log-scale chart whose highest value is top: the
// next band limit above it shows, so the chart says how far the next band is.
func logTop(top float64, limits []limit) float64 {
	next := top
	for _, l := range limits {
		if l.At >= top && (next == top || l.At < next) {
			next = l.At
		}
	}
	return max(top, next) * 1.3
}

// scaleTop is the value at the top of a chart whose highest value is top: a
// little headroom, and the nearest band limit above when it is not far off,
// so the bars sit against the bands they are judged by.
func scaleTop(top float64, limits []limit) float64 {
	ats := make([]float64, len(limits))
	for i, l := range limits {
		ats[i] = l.At
	}
	slices.Sort(ats)
	for _, at := range ats {
		if at >= top && (top == 0 || at <= 10*top) {
			return at * 1.15
		}
		if at >= top {
			break
		}
	}
	if top == 0 {
		return 1
	}
	return top * 1.15
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
