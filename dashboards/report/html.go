package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
)

//go:embed report.html.tmpl
var htmlSource string

// The template is checked when the package loads: a broken template is a
// programming error, not something a caller can handle.
var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"color": func(band string) string { return bandColor[band] },
	"tone": func(t string) string {
		switch t {
		case "better":
			return "#1a7f37"
		case "worse":
			return "#c62828"
		}
		return "#555555"
	},
}).Parse(htmlSource))

// cell is one figure of the week table, coloured by its DORA band.
type cell struct {
	Text string
	Band string // "" draws no band mark
}

type weekRow struct {
	Label     string
	Headline  bool
	Partial   bool
	Cells     []cell
	Incidents int
}

type htmlView struct {
	view
	Charts [][]chart // two a row
	Rows   []weekRow // newest first
}

func htmlReport(w io.Writer, v view) error {
	hv := htmlView{view: v}
	if v.Headline >= 0 {
		for i := 0; i < len(keys); i += 2 {
			hv.Charts = append(hv.Charts, []chart{newChart(v, keys[i]), newChart(v, keys[i+1])})
		}
	}
	for i := len(v.Weeks) - 1; i >= 0; i-- {
		wk := v.Weeks[i]
		label := wk.WeekStart.UTC().Format("2 Jan 2006")
		if wk.Partial {
			label += " (so far)"
		}
		hv.Rows = append(hv.Rows, weekRow{
			Label: label, Headline: i == v.Headline, Partial: wk.Partial, Incidents: wk.Incidents,
			Cells: []cell{
				{deploysCell(wk), wk.Bands.DeployFrequency},
				{leadTimeCell(wk), wk.Bands.LeadTime},
				{cfrCell(wk), wk.Bands.ChangeFailureRate},
				{mttrCell(wk), wk.Bands.MTTR},
			},
		})
	}
	// Rendered whole first, so a template error leaves nothing half-written.
	var b bytes.Buffer
	if err := htmlTemplate.Execute(&b, hv); err != nil {
		return fmt.Errorf("cannot render the HTML report: %w", err)
	}
	_, err := b.WriteTo(w)
	return err
}
