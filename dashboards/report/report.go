// Package report renders GET /api/v1/dora's answer as the weekly delivery
// report a manager reads in a minute: the four keys of the last complete week
// against the week before and the median of the weeks before that, every week
// in a table, a chart per key, and the deploys worth a look. Markdown for chat
// and pull requests; HTML that is one self-contained file (inline SVG, inline
// styles, no scripts) so it stays readable when e-mailed.
//
// It is a pure transform of schema.DoraReport: fetching it is the caller's job.
package report

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// Options are what the report says besides the figures.
type Options struct {
	// Title heads the report; "" means "Delivery performance: weekly report".
	Title string
	// GeneratedAt is when the figures were read. Weeks that have not ended by
	// then are shown as "so far" and the headline is about the newest week that
	// has; zero treats every week as complete.
	GeneratedAt time.Time
}

// maxNotable bounds the notable deploys listed; the rest are counted.
const maxNotable = 20

// week is one DoraWeek with what the renderers need to say about it.
type week struct {
	schema.DoraWeek
	Partial bool // not over by Options.GeneratedAt
}

// view is everything both renderers show, computed once.
type view struct {
	Title     string
	Scope     string // "production · service checkout · team payments"
	Generated string
	Period    string // "8 weeks: 28 Sep – 22 Nov 2026"
	Weeks     []week
	// Headline is the index in Weeks of the week the headline is about; -1 without weeks.
	Headline  int
	WeekTitle string // "Week of Mon 9 Nov 2026 (9–15 Nov 2026)"
	WeekShort string // "Week of 9 Nov", the headline's column
	// Before is how many weeks precede the headline week (the median's base).
	Before  int
	Keys    []keyLine
	Notable []notable
	// NotableSince is " since Mon 9 Nov 2026" when the server said where the
	// notable deploys' span starts.
	NotableSince string
	// MoreNotable counts the notable deploys left out of the list.
	MoreNotable int
}

// keyLine is one of the four keys in the headline.
type keyLine struct {
	key
	Value    string // "12 deploys on 4 days", or "–" when unmeasured
	Missing  string // why Value is "–": "no deploys", "no incidents"
	Band     string // "" when unmeasured
	VsPrev   delta
	VsMedian delta
}

// delta compares the headline week with a reference value.
type delta struct {
	Arrow string // ▲, ▼ or =; "" when there is nothing to compare
	Text  string // "+3 (9)", "−25% (4h 13m)", "–"
	Tone  string // "better", "worse", "same" or ""
}

// notable is a NotableDeploy as the report lists it.
type notable struct {
	schema.NotableDeploy
	When    string // "Tue 10 Nov 14:05"
	Why     []reason
	Link    string // URL when it is http(s)
	Version string
}

// reason is why a deploy is notable: "rolled back", "bad verdict: …".
type reason struct {
	Text string
	Bad  bool // a failure, rather than a slow lead time
}

func newView(r schema.DoraReport, opt Options) view {
	v := view{Title: opt.Title, Headline: -1}
	if v.Title == "" {
		v.Title = "Delivery performance: weekly report"
	}
	env := r.Env
	if env == "" {
		env = "production"
	}
	scope := []string{env}
	if r.Service != "" {
		scope = append(scope, "service "+r.Service)
	} else {
		scope = append(scope, "all services")
	}
	if r.Team != "" {
		scope = append(scope, "team "+r.Team)
	}
	v.Scope = strings.Join(scope, " · ")
	if !opt.GeneratedAt.IsZero() {
		v.Generated = opt.GeneratedAt.UTC().Format("Mon 2 Jan 2006 15:04 UTC")
	}
	for _, w := range r.Weeks {
		partial := !opt.GeneratedAt.IsZero() && opt.GeneratedAt.Before(w.WeekStart.AddDate(0, 0, 7))
		v.Weeks = append(v.Weeks, week{DoraWeek: w, Partial: partial})
	}
	if n := len(v.Weeks); n > 0 {
		v.Period = fmt.Sprintf("%d weeks: %s", n, dayRange(v.Weeks[0].WeekStart, v.Weeks[n-1].WeekStart.AddDate(0, 0, 6)))
		v.Headline = n - 1
		for v.Headline > 0 && v.Weeks[v.Headline].Partial {
			v.Headline--
		}
		h := v.Weeks[v.Headline]
		v.WeekTitle = "Week of " + h.WeekStart.UTC().Format("Mon 2 Jan 2006") + " (" + dayRange(h.WeekStart, h.WeekStart.AddDate(0, 0, 6)) + ")"
		v.WeekShort = "Week of " + h.WeekStart.UTC().Format("2 Jan")
		if h.Partial {
			v.WeekTitle += ", so far"
			v.WeekShort += ", so far"
		}
		v.Before = v.Headline
		for _, k := range keys {
			v.Keys = append(v.Keys, v.keyLine(k))
		}
	}
	if !r.NotableFrom.IsZero() {
		v.NotableSince = " since " + r.NotableFrom.UTC().Format("Mon 2 Jan 2006")
	}
	for _, d := range r.Notable {
		switch {
		case !isNotable(d):
		case len(v.Notable) == maxNotable:
			v.MoreNotable++
		default:
			v.Notable = append(v.Notable, newNotable(d))
		}
	}
	return v
}

// BeforeText names the weeks the headline's median is taken over.
func (v view) BeforeText() string {
	if v.Before == 0 {
		return "the weeks before (none)"
	}
	return "the " + plural(v.Before, "week", "weeks") + " before"
}

func (v view) keyLine(k key) keyLine {
	h := v.Weeks[v.Headline]
	line := keyLine{key: k, Band: k.band(h.DoraWeek)}
	line.Value, line.Missing = k.phrase(h.DoraWeek)
	cur, ok := k.value(h.DoraWeek)
	if v.Headline > 0 {
		line.VsPrev = k.compare(cur, ok, v.Weeks[v.Headline-1].DoraWeek)
	}
	var before []float64
	for _, w := range v.Weeks[:v.Headline] {
		if x, ok := k.value(w.DoraWeek); ok {
			before = append(before, x)
		}
	}
	if len(before) > 0 {
		line.VsMedian = k.compareTo(cur, ok, median(before), "median ")
	} else {
		line.VsMedian = delta{Text: "–"}
	}
	if line.VsPrev.Text == "" {
		line.VsPrev.Text = "–"
	}
	return line
}

// slow reports whether d's lead time is worth calling out: the server marks
// the slowest few deploys however fast they were, and a manager need not
// read about a lead time within DORA's elite band.
func slow(d schema.NotableDeploy) bool {
	return slices.Contains(d.Reasons, "slow_lead_time") && d.LeadTimeS != nil && *d.LeadTimeS >= schema.EliteLeadTime.Seconds()
}

// isNotable reports whether d is worth listing.
func isNotable(d schema.NotableDeploy) bool {
	return slow(d) || slices.ContainsFunc(d.Reasons, func(r string) bool { return r != "slow_lead_time" })
}

func newNotable(d schema.NotableDeploy) notable {
	n := notable{NotableDeploy: d, When: d.FinishedAt.UTC().Format("Mon 2 Jan 15:04"), Version: d.Version}
	if n.Version == "" {
		n.Version = "(no version)"
	}
	for _, r := range d.Reasons {
		switch r {
		case "rolled_back":
			n.Why = append(n.Why, reason{"rolled back", true})
		case "bad_verdict":
			why := "bad verdict"
			if d.VerdictReason != "" {
				why += ": " + oneLine(d.VerdictReason)
			}
			n.Why = append(n.Why, reason{why, true})
		case "incident":
			why := "incident"
			if d.IncidentID != "" {
				why += " " + d.IncidentID
			}
			n.Why = append(n.Why, reason{why, true})
		case "slow_lead_time":
			if slow(d) {
				n.Why = append(n.Why, reason{"slow lead time (" + duration(*d.LeadTimeS) + ")", false})
			}
		default:
			n.Why = append(n.Why, reason{strings.ReplaceAll(r, "_", " "), false})
		}
	}
	if d.LeadTimeS != nil && !slow(d) {
		n.Why = append(n.Why, reason{"lead time " + duration(*d.LeadTimeS), false})
	}
	if strings.HasPrefix(d.URL, "https://") || strings.HasPrefix(d.URL, "http://") {
		n.Link = d.URL
	}
	return n
}

// Markdown writes the report as CommonMark (GitHub-flavoured tables).
func Markdown(w io.Writer, r schema.DoraReport, opt Options) error {
	_, err := io.WriteString(w, markdown(newView(r, opt)))
	return err
}

// HTML writes the report as one self-contained HTML document.
func HTML(w io.Writer, r schema.DoraReport, opt Options) error {
	return htmlReport(w, newView(r, opt))
}

// dayRange is "9–15 Nov 2026", "30 Nov – 6 Dec 2026" or "28 Dec 2026 – 3 Jan 2027".
func dayRange(from, to time.Time) string {
	from, to = from.UTC(), to.UTC()
	switch {
	case from.Year() != to.Year():
		return from.Format("2 Jan 2006") + " – " + to.Format("2 Jan 2006")
	case from.Month() != to.Month():
		return from.Format("2 Jan") + " – " + to.Format("2 Jan 2006")
	}
	return from.Format("2") + "–" + to.Format("2 Jan 2006")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
