package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/dashboards/report"
	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// TestReportWeekly runs report weekly against a real serve: last week, three
// production deploys of the payments team on two days (one with a linked
// incident resolved in 42 minutes, one with a commit 3 days old), one that
// failed, one to staging and one of another team; the report must say 3
// deploys on 2 days, 1 of 3 failed, the 42 minutes and the lead times, and
// list the deploy with the incident and the slow one, in Markdown and HTML.
func TestReportWeekly(t *testing.T) {
	const token = "report-reader-token"
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) { c.apiTokens = token })
	post := func(path string, v any) {
		t.Helper()
		body, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, p.api+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s %s: %s", path, body, resp.Status)
		}
	}

	// Monday of last week, 00:00 UTC: the newest complete week, the report's headline.
	now := time.Now().UTC()
	monday := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	monday = monday.AddDate(0, 0, -(int(monday.Weekday())+6)%7-7)
	at := func(days, hour, minute int) time.Time {
		return monday.AddDate(0, 0, days).Add(time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute)
	}
	commits := 0 // every commit its own SHA: lead time counts a commit once
	deploy := func(id, service, env, version string, status schema.DeployStatus, team string, finished time.Time, commitAges ...time.Duration) schema.Deploy {
		d := schema.Deploy{
			ID: id, Service: service, Env: env, Version: version, Status: status,
			StartedAt: schema.At(finished.Add(-5 * time.Minute)), FinishedAt: schema.At(finished),
			Labels: map[string]string{"team": team}, URL: "https://ci.example.com/" + id,
		}
		for _, age := range commitAges {
			commits++
			d.Commits = append(d.Commits, schema.Commit{SHA: fmt.Sprintf("%040x", 0xc0ffee00+commits), Time: schema.At(finished.Add(-age))})
		}
		return d
	}
	d3 := deploy("gha-checkout-103-1", "checkout", "production", "v1.0.2", schema.DeploySucceeded, "payments", at(3, 11, 0), 3*time.Hour)
	for _, d := range []schema.Deploy{
		deploy("gha-checkout-101-1", "checkout", "production", "v1.0.0", schema.DeploySucceeded, "payments", at(1, 10, 0), 2*time.Hour, 4*time.Hour),
		deploy("gha-checkout-102-1", "checkout", "production", "v1.0.1", schema.DeploySucceeded, "payments", at(1, 15, 0), time.Hour, 72*time.Hour),
		d3,
		deploy("gha-ledger-7-1", "ledger", "production", "v7.0.0", schema.DeployFailed, "payments", at(4, 9, 30), 30*time.Minute),
		deploy("gha-checkout-104-1", "checkout", "staging", "v1.0.3", schema.DeploySucceeded, "payments", at(4, 10, 0), time.Hour),
		deploy("gha-search-55-1", "search", "production", "v55", schema.DeploySucceeded, "discovery", at(2, 12, 0), time.Hour),
	} {
		post("/api/v1/deploys", d)
	}
	for _, status := range []schema.IncidentStatus{schema.IncidentOpened, schema.IncidentResolved} {
		when := at(3, 11, 20)
		if status == schema.IncidentResolved {
			when = when.Add(42 * time.Minute)
		}
		post("/api/v1/events", schema.Incident{ID: "pd-Q7Z4X2", Type: schema.TypeIncident, Service: "checkout", Env: "production",
			Status: status, Time: schema.At(when), Title: "checkout 5xx", Source: "pagerduty", DeployID: d3.ID})
	}

	cli := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		return out.String(), err
	}
	week := "## Week of " + monday.Format("Mon 2 Jan 2006")
	wants := []string{
		"production · all services · team payments · 4 weeks",
		week,
		"| Deploy frequency | 3 deploys on 2 days (1 more failed to deploy) |",
		"| Change failure rate | 1 of 3 deploys failed (33.3%) |",
		"| Time to restore | restored in 42m median (p90 42m), 1 incident opened |",
		"| Lead time for changes | median 3h (p90 1d 21h), 5 commits |",
		"· incident pd-Q7Z4X2; lead time 3h · [run](https://ci.example.com/gha-checkout-103-1)\n",
		"· slow lead time (3d) · [run](https://ci.example.com/gha-checkout-102-1)\n",
	}
	// The deploys and the incident are projected by different consumers:
	// poll until the report has all of them.
	var out string
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		var err error
		out, err = cli("report", "weekly", "--server", p.api, "--token", token, "--team", "payments", "--weeks", "4", "--format", "markdown")
		if err != nil {
			return false, fmt.Sprintf("report weekly: %v", err)
		}
		for _, want := range wants {
			if !strings.Contains(out, want) {
				return false, fmt.Sprintf("the markdown report has no %q:\n%s", want, out)
			}
		}
		return true, ""
	})
	for _, other := range []string{"search", "v1.0.3", "v1.0.0"} {
		if strings.Contains(out, other) {
			t.Errorf("the payments report has %q, of another team or staging:\n%s", other, out)
		}
	}

	// HTML to a file, the format taken from its name, the token from the environment.
	t.Setenv("DEPLOYWATCH_TOKEN", token)
	file := filepath.Join(t.TempDir(), "weekly.html")
	if out, err := cli("report", "weekly", "--url", p.api, "--team", "payments", "--out", file); err != nil || out != "" {
		t.Fatalf("report weekly --out: %v, stdout %q", err, out)
	}
	html, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<!DOCTYPE html>", "<svg ", "3 deploys on 2 days", "1 of 3 deploys failed (33.3%)", "restored in 42m median"} {
		if !bytes.Contains(html, []byte(want)) {
			t.Errorf("the HTML report has no %q", want)
		}
	}

	// What the server refuses, field by field.
	if _, err := cli("report", "weekly", "--server", p.api, "--token", token, "--service", "check out"); err == nil ||
		!strings.Contains(err.Error(), "refused the request (400 Bad Request): invalid query\n  service: ") {
		t.Errorf("report weekly --service 'check out': %v", err)
	}

	// A wrong token says which flag to fix.
	t.Setenv("DEPLOYWATCH_TOKEN", "")
	if _, err := cli("report", "weekly", "--server", p.api, "--token", "wrong"); err == nil || !strings.Contains(err.Error(), "401") ||
		!strings.Contains(err.Error(), "pass --token, or set DEPLOYWATCH_TOKEN") {
		t.Errorf("report weekly with a wrong token: %v", err)
	}
}

// TestReportWeeklyErrors: the command's own errors, and a server that is not there.
func TestReportWeeklyErrors(t *testing.T) {
	cli := func(args ...string) error {
		t.Helper()
		var out, errOut bytes.Buffer
		return run(context.Background(), append([]string{"report", "weekly"}, args...), &out, &errOut)
	}
	f := func(want string, args ...string) {
		t.Helper()
		if err := cli(args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("report weekly %q: %v, want an error with %q", args, err, want)
		}
	}
	f(`--format must be markdown or html, got "pdf"`, "--format", "pdf")
	f("--weeks must be from 1 to 104, got 0", "--weeks", "0")
	f("--weeks must be from 1 to 104, got 105", "--weeks", "105")
	f("takes no arguments", "checkout")
	// A port nothing listens on: the listener is closed before the command runs.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f("is `deploywatch serve` running? check --server", "--server", "http://"+addr, "--timeout", "5s")
	f("check --url", "--url", "http://"+addr, "--timeout", "5s")
}

// TestReportWeeklyWithoutDora: the API without a DORA reader answers 503,
// and the command says what the server lacks.
func TestReportWeeklyWithoutDora(t *testing.T) {
	srv := httptest.NewServer(ingest.New(ingest.Config{}, nil, nil).Handler())
	defer srv.Close()
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"report", "weekly", "--server", srv.URL}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "cannot compute DORA figures (503 Service Unavailable: no DORA store is configured)") ||
		!strings.Contains(err.Error(), "--clickhouse-dsn") || out.Len() != 0 {
		t.Errorf("report weekly against an API without DORA: %v, stdout %q", err, out.String())
	}
}

func TestDoraErrors(t *testing.T) {
	f := func(code int, msg string, want string) {
		t.Helper()
		err := doraError(&apiError{URL: "http://dw:8080/api/v1/dora?weeks=8", Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), Code: code, Message: msg})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("doraError(%d): %v, want %q", code, err, want)
		}
	}
	f(http.StatusUnauthorized, "missing or wrong API token", "pass --token, or set DEPLOYWATCH_TOKEN, to one of the server's --api-tokens")
	f(http.StatusServiceUnavailable, "no DORA reader is configured", "cannot compute DORA figures (503 Service Unavailable: no DORA reader is configured)")
	f(http.StatusNotFound, "no route GET /api/v1/dora", "predates GET /api/v1/dora; upgrade deploywatch serve")
	f(http.StatusBadRequest, "weeks must be from 1 to 104", "refused the request (400 Bad Request): weeks must be from 1 to 104")
}

func TestReportFormat(t *testing.T) {
	f := func(format, out string, wantErr bool) {
		t.Helper()
		render, err := reportFormat(format, out)
		if (err != nil) != wantErr || (err == nil && render == nil) {
			t.Errorf("reportFormat(%q, %q): %v", format, out, err)
		}
	}
	f("", "", false)
	f("", "weekly.HTML", false)
	f("markdown", "weekly.html", false)
	f("md", "", false)
	f("pdf", "", true)
	// The extension picks HTML only when --format is not given.
	var b bytes.Buffer
	render, _ := reportFormat("", "weekly.htm")
	if err := render(&b, schema.DoraReport{}, report.Options{}); err != nil || !strings.HasPrefix(b.String(), "<!DOCTYPE html>") {
		t.Errorf("--out weekly.htm wrote %q, %v", b.String(), err)
	}
}
