package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// markdown renders v; every text that came from events is escaped, so a
// version or a verdict reason cannot add markup, links or table cells.
func markdown(v view) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", md(v.Title))
	meta := []string{md(v.Scope)}
	if v.Period != "" {
		meta = append(meta, md(v.Period))
	}
	if v.Generated != "" {
		meta = append(meta, "generated "+md(v.Generated))
	}
	fmt.Fprintf(&b, "%s\n", strings.Join(meta, " · "))
	if v.Headline < 0 {
		b.WriteString("\nNo weeks to report: the server returned none.\n")
		markdownNotable(&b, v)
		return b.String()
	}

	fmt.Fprintf(&b, "\n## %s\n\n", md(v.WeekTitle))
	fmt.Fprintf(&b, "| Key | %s | vs the week before | vs the median of %s | DORA band |\n", v.WeekShort, v.BeforeText())
	b.WriteString("|:--|:--|:--|:--|:--|\n")
	for _, k := range v.Keys {
		value := k.Value
		if k.Missing != "" {
			value += " (" + k.Missing + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", k.Name, md(value), k.VsPrev.Label(), k.VsMedian.Label(), orDash(k.Band))
	}

	b.WriteString("\n## Trend, oldest week first\n\n```text\n")
	width := 0
	for _, k := range keys {
		width = max(width, len([]rune(k.Spark)))
	}
	for _, k := range keys {
		fmt.Fprintf(&b, "%-*s  %s  %s\n", width, k.Spark, sparkline(v.Weeks, k), valueRange(v.Weeks, k))
	}
	b.WriteString("```\n\n")
	b.WriteString("One character a week, scaled from zero to the highest (range on the right); · is a week without a figure.")
	if last := v.Weeks[len(v.Weeks)-1]; last.Partial {
		b.WriteString(" The newest week is not over yet.")
	}
	b.WriteString("\n")

	b.WriteString("\n## All weeks\n\n")
	b.WriteString("| Week of | Deploys | Lead time, median (p90) | Change failure rate | Time to restore, median (p90) | Incidents opened |\n")
	b.WriteString("|:--|--:|--:|--:|--:|--:|\n")
	for i := len(v.Weeks) - 1; i >= 0; i-- {
		w := v.Weeks[i]
		label := w.WeekStart.UTC().Format("2 Jan 2006")
		if w.Partial {
			label += " (so far)"
		}
		if i == v.Headline {
			label = "**" + label + "**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d |\n", label, deploysCell(w), leadTimeCell(w), cfrCell(w), mttrCell(w), w.Incidents)
	}
	markdownNotable(&b, v)
	return b.String()
}

func markdownNotable(b *strings.Builder, v view) {
	fmt.Fprintf(b, "\n## Notable deploys%s\n\n", v.NotableSince)
	if len(v.Notable) == 0 {
		b.WriteString("None: no rollbacks, bad verdicts, linked incidents or lead times to call out.\n")
		return
	}
	for _, n := range v.Notable {
		why := make([]string, len(n.Why))
		for i, w := range n.Why {
			why[i] = md(w.Text)
		}
		fmt.Fprintf(b, "- **%s %s** (%s) · %s · %s", md(n.Service), md(n.Version), md(n.Env), n.When, strings.Join(why, "; "))
		if n.Link != "" {
			fmt.Fprintf(b, " · [run](%s)", mdURL(n.Link))
		}
		b.WriteString("\n")
	}
	if v.MoreNotable > 0 {
		fmt.Fprintf(b, "- … and %d more\n", v.MoreNotable)
	}
}

// The week table's cells: "–" and why when a figure is null, never 0.

func deploysCell(w week) string {
	if w.DeployFrequency == 0 {
		return "0"
	}
	return fmt.Sprintf("%d on %s", w.DeployFrequency, plural(w.DeployDays, "day", "days"))
}

func leadTimeCell(w week) string {
	if _, missing := keys[1].phrase(w.DoraWeek); missing != "" {
		return "– (" + missing + ")"
	}
	return duration(*w.LeadTimeS.P50) + p90Cell(w.LeadTimeS.P90)
}

func cfrCell(w week) string {
	if w.ChangeFailureRate == nil {
		return "– (no deploys)"
	}
	return fmt.Sprintf("%s (%d of %d)", percent(*w.ChangeFailureRate), w.Failures, w.DeployFrequency)
}

func mttrCell(w week) string {
	if _, missing := keys[3].phrase(w.DoraWeek); missing != "" {
		return "– (" + missing + ")"
	}
	return duration(*w.MTTRS.P50) + p90Cell(w.MTTRS.P90)
}

func p90Cell(p *float64) string {
	if p == nil {
		return ""
	}
	return " (" + duration(*p) + ")"
}

// valueRange is the lowest and highest of k's weekly values, "–" with none.
func valueRange(weeks []week, k key) string {
	var xs []float64
	for _, w := range weeks {
		if x, ok := k.value(w.DoraWeek); ok {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return "–"
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	if lo == hi {
		return k.short(lo)
	}
	return k.short(lo) + "–" + k.short(hi)
}

// sparkline draws k's weekly values as block characters scaled from zero.
func sparkline(weeks []week, k key) string {
	const blocks = "▁▂▃▄▅▆▇█"
	levels := []rune(blocks)
	top := 0.0
	for _, w := range weeks {
		if x, ok := k.value(w.DoraWeek); ok {
			top = max(top, x)
		}
	}
	var b strings.Builder
	for _, w := range weeks {
		x, ok := k.value(w.DoraWeek)
		switch {
		case !ok:
			b.WriteRune('·')
		case top == 0:
			b.WriteRune(levels[0])
		default:
			b.WriteRune(levels[int(math.Round(x/top*float64(len(levels)-1)))])
		}
	}
	return b.String()
}

var mdEscaper = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", `*`, `\*`, `_`, `\_`, `[`, `\[`, `]`, `\]`, `<`, `\<`, `>`, `\>`,
	`|`, `\|`, `#`, `\#`, `~`, `\~`, `&`, `\&`, `!`, `\!`,
)

// md escapes s for Markdown text and table cells, on one line.
func md(s string) string { return mdEscaper.Replace(oneLine(s)) }

var urlEscaper = strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29", "<", "%3C", ">", "%3E", "`", "%60", `"`, "%22", `\`, "%5C")

// mdURL keeps a link's destination from ending early or adding markup.
func mdURL(u string) string { return urlEscaper.Replace(u) }

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
