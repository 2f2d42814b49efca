package report_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/dashboards/report"
	"github.com/deploywatch/deploywatch/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func f64(v float64) *float64 { return &v }

func monday(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// fixture is eight weeks of one team, generated on the Wednesday of the
// newest: a week without deploys, a week whose deploys had no commits, a week
// with an incident still open, a week not over yet, and notable deploys whose
// texts try to inject markup.
func fixture() (schema.DoraReport, report.Options) {
	weeks := []schema.DoraWeek{
		{WeekStart: monday("2026-09-28"), DeployFrequency: 9, DeployDays: 4, Deploys: 9, Commits: 20,
			LeadTimeS: schema.Quantiles{P50: f64(15180), P90: f64(172800)}, ChangeFailureRate: f64(1.0 / 9), Failures: 1,
			MTTRS: schema.Quantiles{P50: f64(3000), P90: f64(5400)}, Incidents: 1,
			Bands: schema.DoraBands{DeployFrequency: "high", LeadTime: "elite", ChangeFailureRate: "medium", MTTR: "elite"}},
		{WeekStart: monday("2026-10-05"), Bands: schema.DoraBands{DeployFrequency: "low"}},
		{WeekStart: monday("2026-10-12"), DeployFrequency: 7, DeployDays: 5, Deploys: 7, Commits: 11,
			LeadTimeS: schema.Quantiles{P50: f64(7200), P90: f64(72000)}, ChangeFailureRate: f64(0), Incidents: 1,
			Bands: schema.DoraBands{DeployFrequency: "elite", LeadTime: "elite", ChangeFailureRate: "elite"}},
		{WeekStart: monday("2026-10-19"), DeployFrequency: 10, DeployDays: 4, Deploys: 11, Commits: 17,
			LeadTimeS: schema.Quantiles{P50: f64(12600), P90: f64(90000)}, ChangeFailureRate: f64(0.2), Failures: 2,
			MTTRS: schema.Quantiles{P50: f64(4800), P90: f64(10800)}, Incidents: 2,
			Bands: schema.DoraBands{DeployFrequency: "elite", LeadTime: "elite", ChangeFailureRate: "low", MTTR: "high"}},
		{WeekStart: monday("2026-10-26"), DeployFrequency: 8, DeployDays: 3, Deploys: 8,
			ChangeFailureRate: f64(0.125), Failures: 1, MTTRS: schema.Quantiles{P50: f64(1500), P90: f64(1500)}, Incidents: 1,
			Bands: schema.DoraBands{DeployFrequency: "elite", ChangeFailureRate: "medium", MTTR: "elite"}},
		{WeekStart: monday("2026-11-02"), DeployFrequency: 9, DeployDays: 4, Deploys: 9, Commits: 14,
			LeadTimeS: schema.Quantiles{P50: f64(15180), P90: f64(61200)}, ChangeFailureRate: f64(1.0 / 9), Failures: 1,
			MTTRS: schema.Quantiles{P50: f64(3000), P90: f64(3000)}, Incidents: 1,
			Bands: schema.DoraBands{DeployFrequency: "elite", LeadTime: "elite", ChangeFailureRate: "medium", MTTR: "elite"}},
		{WeekStart: monday("2026-11-09"), DeployFrequency: 12, DeployDays: 4, Deploys: 14, Commits: 23,
			LeadTimeS: schema.Quantiles{P50: f64(11400), P90: f64(93600)}, ChangeFailureRate: f64(2.0 / 12), Failures: 2,
			MTTRS: schema.Quantiles{P50: f64(2520), P90: f64(7500)}, Incidents: 3,
			Bands: schema.DoraBands{DeployFrequency: "elite", LeadTime: "elite", ChangeFailureRate: "low", MTTR: "elite"}},
		{WeekStart: monday("2026-11-16"), DeployFrequency: 3, DeployDays: 2, Deploys: 3, Commits: 4,
			LeadTimeS: schema.Quantiles{P50: f64(3600), P90: f64(5000)}, ChangeFailureRate: f64(0),
			Bands: schema.DoraBands{DeployFrequency: "high", LeadTime: "elite", ChangeFailureRate: "elite"}},
	}
	notable := []schema.NotableDeploy{
		{DeployID: "gha-checkout-9-1", Service: "checkout", Env: "production", Team: "payments", Version: "v2.15.1", Status: "succeeded",
			FinishedAt: at("2026-11-17T10:12:00Z"), Reasons: []string{"slow_lead_time"}, LeadTimeS: f64(6*86400 + 4*3600),
			URL: "https://github.com/acme/checkout/actions/runs/9"},
		{DeployID: "argo-payments-gw-77", Service: "payments-gw", Env: "production", Team: "payments",
			Version: `v3.0.0<script>alert("x")</script>`, Status: "rolled_back",
			FinishedAt: at("2026-11-12T15:40:00Z"), Reasons: []string{"rolled_back", "bad_verdict", "incident"}, LeadTimeS: f64(5400),
			IncidentID: "INC-4821", VerdictStatus: "bad", VerdictReason: "error_rate up 142% | <b>p</b> < 0.0001\n[click](javascript:alert(1))",
			URL: "javascript:alert(1)"},
		{DeployID: "argo-search-551", Service: "search", Env: "production", Version: "2026.11.10-1", Status: "succeeded",
			FinishedAt: at("2026-11-10T08:03:00Z"), Reasons: []string{"incident"}, IncidentID: "pd-Q7Z4X2",
			URL: "https://ci.example.com/search/runs/551?x=1&y=(2)"},
		{DeployID: "gha-ledger-12-1", Service: "ledger", Env: "production", Version: "v12", Status: "succeeded",
			FinishedAt: at("2026-11-09T09:00:00Z"), Reasons: []string{"slow_lead_time"}, LeadTimeS: f64(3 * 3600)},
		{DeployID: "gha-checkout-7-1", Service: "checkout", Env: "production", Version: "v2.13.0", Status: "succeeded",
			FinishedAt: at("2026-10-20T13:30:00Z"), Reasons: []string{"bad_verdict", "slow_lead_time"}, LeadTimeS: f64(7200), VerdictStatus: "bad"},
	}
	return schema.DoraReport{Env: "production", Team: "payments", Weeks: weeks, Notable: notable, NotableFrom: monday("2026-10-19")},
		report.Options{GeneratedAt: at("2026-11-18T09:30:00Z")}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cannot read %s (go test -update writes it): %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the report differs from %s (go test -update rewrites it):\n%s", path, got)
	}
}

func render(t *testing.T, format func(io.Writer, schema.DoraReport, report.Options) error, r schema.DoraReport, opt report.Options) string {
	t.Helper()
	var b bytes.Buffer
	if err := format(&b, r, opt); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"NaN", "Inf", "%!", "<no value>", "ZgotmplZ"} {
		if strings.Contains(b.String(), bad) {
			t.Errorf("the report has %q:\n%s", bad, b.String())
		}
	}
	return b.String()
}

func TestMarkdownGolden(t *testing.T) {
	r, opt := fixture()
	out := render(t, report.Markdown, r, opt)
	golden(t, "weekly.md", []byte(out))
	for _, want := range []string{
		"## Week of Mon 9 Nov 2026 (9–15 Nov 2026)",
		"| Deploy frequency | 12 deploys on 4 days (2 more failed to deploy) | ▲ +3 (was 9), better | ▲ +3.5 (median 8.5), better | elite |",
		"median 3h 10m (p90 1d 2h), 23 commits",
		"2 of 12 deploys failed (16.7%)",
		"restored in 42m median (p90 2h 5m), 3 incidents opened",
		"| 5 Oct 2026 | 0 | – (no deploys) | – (no deploys) | – (no incidents) | 0 |",
		"| 26 Oct 2026 | 8 on 3 days | – (no commits deployed) |",
		"– (1 incident opened, none resolved)",
		"16 Nov 2026 (so far)",
		`v3.0.0\<script\>alert("x")\</script\>`,
		"[run](https://ci.example.com/search/runs/551?x=1&y=%282%29)",
		"## Notable deploys since Mon 19 Oct 2026\n",
		"· slow lead time (6d 4h) ·",
		"· bad verdict; lead time 2h\n", // among the slowest, but within a day
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the markdown has no %q", want)
		}
	}
	if strings.Contains(out, "ledger v12") {
		t.Errorf("the markdown lists a deploy whose only reason is a lead time within a day:\n%s", out)
	}
	// Escaped means preceded by a backslash.
	if bad := regexp.MustCompile(`(^|[^\\])(<script|<b>|\]\(javascript)`).FindString(out); bad != "" {
		t.Errorf("the markdown has the unescaped %q", bad)
	}
}

func TestHTMLGolden(t *testing.T) {
	r, opt := fixture()
	opt.Title = `Payments & <friends>`
	out := render(t, report.HTML, r, opt)
	golden(t, "weekly.html", []byte(out))
	for _, want := range []string{
		"<title>Payments &amp; &lt;friends&gt;</title>",
		"v3.0.0&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;",
		`<a href="https://ci.example.com/search/runs/551?x=1&amp;y=%282%29"`,
		"12 deploys on 4 days (2 more failed to deploy)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the HTML has no %q", want)
		}
	}
	assertSelfContained(t, out, []string{"https://github.com/acme/checkout/actions/runs/9", "https://ci.example.com/search/runs/551?x=1&y=%282%29"}, 4)
}

// assertSelfContained parses html as XML (the template writes XHTML-compatible
// markup, SVG included) and checks that it loads nothing and runs nothing: no
// scripts, frames, images, style sheets or event handlers, and no address in
// an attribute but the notable deploys' links.
func assertSelfContained(t *testing.T, html string, links []string, charts int) {
	t.Helper()
	if strings.Contains(strings.ToLower(html), "<script") {
		t.Error("the HTML has a <script")
	}
	d := xml.NewDecoder(strings.NewReader(html))
	d.Strict = true
	var gotLinks []string
	svgs := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the HTML is not well-formed: %v", err)
		}
		el, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch strings.ToLower(el.Name.Local) {
		case "script", "iframe", "img", "image", "link", "style", "object", "embed", "use", "foreignobject":
			t.Errorf("the HTML has a <%s> element", el.Name.Local)
		case "svg":
			svgs++
		}
		for _, a := range el.Attr {
			name, value := strings.ToLower(a.Name.Local), strings.ToLower(a.Value)
			switch {
			case strings.HasPrefix(name, "on"):
				t.Errorf("<%s> has the event handler %s", el.Name.Local, a.Name.Local)
			case name == "href" || name == "src" || name == "srcset" || name == "action":
				gotLinks = append(gotLinks, a.Value)
			case name == "style" && (strings.Contains(value, "url(") || strings.Contains(value, "@import")):
				t.Errorf("<%s> loads something in its style: %s", el.Name.Local, a.Value)
			case name == "xmlns" && a.Value != "http://www.w3.org/2000/svg":
				t.Errorf("<%s> has xmlns %q", el.Name.Local, a.Value)
			}
		}
	}
	if !slices.Equal(gotLinks, links) {
		t.Errorf("the HTML links to %q, want only the notable deploys' %q", gotLinks, links)
	}
	if svgs != charts {
		t.Errorf("the HTML has %d charts, want %d", svgs, charts)
	}
}

// TestRenderSparseReports: a report of nothing, or of weeks without deploys
// or incidents, says so instead of printing zeros or NaN.
func TestRenderSparseReports(t *testing.T) {
	quiet := schema.DoraReport{Env: "production", Service: "ledger", Weeks: []schema.DoraWeek{
		{WeekStart: monday("2026-11-09"), Deploys: 2, Bands: schema.DoraBands{DeployFrequency: "low"}},
		{WeekStart: monday("2026-11-16"), Incidents: 2},
	}}
	opt := report.Options{GeneratedAt: at("2026-11-30T00:00:00Z")}
	md := render(t, report.Markdown, quiet, opt)
	for _, want := range []string{
		"production · service ledger · 2 weeks: 9–22 Nov 2026 · generated Mon 30 Nov 2026 00:00 UTC",
		"## Week of Mon 16 Nov 2026 (16–22 Nov 2026)",
		"| Key | Week of 16 Nov | vs the week before | vs the median of the 1 week before | DORA band |",
		"| Deploy frequency | 0 deploys | = same (was 0) | = same (median 0) | – |",
		"| 9 Nov 2026 | 0 | – (no deploys) |",
		"| Lead time for changes | – (no deploys) | – | – | – |",
		"| Change failure rate | – (no deploys) | – | – | – |",
		"| Time to restore | – (2 incidents opened, none resolved) | – | – | – |",
		"Deploys per week         ▁▁  0\n",
		"Change failure rate      ··  –\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the markdown of quiet weeks has no %q:\n%s", want, md)
		}
	}
	opt.GeneratedAt = at("2026-11-18T00:00:00Z")
	if md := render(t, report.Markdown, quiet, opt); !strings.Contains(md, "| Deploy frequency | 0 deploys (2 failed to deploy) | – | – | low |") ||
		!strings.Contains(md, "vs the median of the weeks before (none)") {
		t.Errorf("the markdown of one quiet week:\n%s", md)
	}
	if strings.Contains(md, "0%") {
		t.Errorf("the markdown of weeks without deploys shows a 0%% failure rate:\n%s", md)
	}
	html := render(t, report.HTML, quiet, opt)
	assertSelfContained(t, html, nil, 4)
	if strings.Contains(html, ">0%") || !strings.Contains(html, "week of 16 Nov: no deploys") {
		t.Errorf("the HTML of weeks without deploys:\n%s", html)
	}

	none := schema.DoraReport{Env: "staging"}
	md = render(t, report.Markdown, none, report.Options{})
	if !strings.Contains(md, "No weeks to report") || !strings.Contains(md, "## Notable deploys\n\nNone") {
		t.Errorf("the markdown of no weeks:\n%s", md)
	}
	assertSelfContained(t, render(t, report.HTML, none, report.Options{}), nil, 0)
}

// TestHeadlineWeek: the headline is about the newest week that is over when
// the report is made, or the newest week when every week is (or is taken as)
// over, or when none is.
func TestHeadlineWeek(t *testing.T) {
	r, opt := fixture()
	f := func(generated time.Time, want string) {
		t.Helper()
		opt.GeneratedAt = generated
		md := render(t, report.Markdown, r, opt)
		if !strings.Contains(md, want) {
			t.Errorf("generated at %v: no %q in\n%s", generated, want, md)
		}
	}
	f(time.Time{}, "## Week of Mon 16 Nov 2026 (16–22 Nov 2026)\n")
	f(at("2026-11-23T00:00:00Z"), "## Week of Mon 16 Nov 2026 (16–22 Nov 2026)\n")
	f(at("2026-11-22T23:59:59Z"), "## Week of Mon 9 Nov 2026 (9–15 Nov 2026)\n")
	r.Weeks = r.Weeks[len(r.Weeks)-1:]
	f(at("2026-11-18T09:30:00Z"), "## Week of Mon 16 Nov 2026 (16–22 Nov 2026), so far\n")
}
