package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// TestDoraFromTheAPI sends last week's deploys and an incident through the
// HTTP API and reads the four keys back from GET /api/v1/dora.
func TestDoraFromTheAPI(t *testing.T) {
	p := startServe(t, testenv.ClickHouse(t), nil)
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	thisWeek := today.AddDate(0, 0, -(int(today.Weekday())+6)%7)
	lastWeek := thisWeek.AddDate(0, 0, -7)
	b := lastWeek.Add(2*24*time.Hour + 10*time.Hour) // last Wednesday, 10:00
	ts := func(t time.Time) string { return t.Format(time.RFC3339) }

	posts := []struct{ path, body string }{
		// a ships c1 (2 h old) and c2 (1 h old).
		{"/api/v1/deploys", fmt.Sprintf(`{"id":"e2e-a","service":"checkout","env":"production","version":"v1.1.0","status":"succeeded",
			"started_at":%q,"finished_at":%q,"labels":{"team":"payments"},
			"commits":[{"sha":"c1","time":%q},{"sha":"c2","time":%q}]}`, ts(b.Add(-5*time.Minute)), ts(b), ts(b.Add(-2*time.Hour)), ts(b.Add(-time.Hour)))},
		// b, the next day, ships c3 (30 min old) and is rolled back after an incident.
		{"/api/v1/deploys", fmt.Sprintf(`{"id":"e2e-b","service":"checkout","env":"production","version":"v1.2.0","status":"succeeded",
			"finished_at":%q,"labels":{"team":"payments"},"commits":[{"sha":"c3","time":%q}],"url":"https://ci.example.com/e2e-b"}`,
			ts(b.Add(24*time.Hour)), ts(b.Add(24*time.Hour-30*time.Minute)))},
		{"/api/v1/events", fmt.Sprintf(`{"type":"incident","id":"pd-E2E1","service":"checkout","env":"production","status":"opened",
			"time":%q,"title":"checkout 5xx","deploy_id":"e2e-b"}`, ts(b.Add(24*time.Hour+5*time.Minute)))},
		{"/api/v1/deploys", fmt.Sprintf(`{"id":"e2e-b","service":"checkout","env":"production","version":"v1.1.0","status":"rolled_back",
			"finished_at":%q,"labels":{"team":"payments"}}`, ts(b.Add(24*time.Hour+20*time.Minute)))},
		{"/api/v1/events", fmt.Sprintf(`{"type":"incident","id":"pd-E2E1","service":"checkout","env":"production","status":"resolved",
			"time":%q}`, ts(b.Add(24*time.Hour+25*time.Minute)))},
	}
	for _, post := range posts {
		if code, answer := p.post(t, post.path, []byte(post.body)); code != http.StatusAccepted {
			t.Fatalf("POST %s: %d %v", post.path, code, answer)
		}
	}

	// Last week: 2 production deploys on 2 days, b failed (rolled back and
	// its incident): 1/2. Lead times 1800, 3600, 7200: p50 3600, p90 at rank
	// 1.8: 3600 + 0.8×3600 = 6480. The incident: 20 minutes.
	var report schema.DoraReport
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		report = schema.DoraReport{}
		if code := p.getJSON(t, "/api/v1/dora?weeks=2&team=payments", &report); code != http.StatusOK {
			return false, fmt.Sprintf("GET /api/v1/dora: %d", code)
		}
		if len(report.Weeks) != 2 {
			return false, fmt.Sprintf("%d weeks", len(report.Weeks))
		}
		w := report.Weeks[0]
		return w.Failures == 1 && w.Commits == 3 && w.MTTRS.P50 != nil, fmt.Sprintf("last week: %+v", w)
	})
	w := report.Weeks[0]
	got := fmt.Sprintf("%s %d/%d/%d %s %s/%s %s/%s %d %+v", w.WeekStart.Format(time.DateOnly), w.Deploys, w.DeployFrequency, w.DeployDays,
		secondsText(w.ChangeFailureRate), secondsText(w.LeadTimeS.P50), secondsText(w.LeadTimeS.P90),
		secondsText(w.MTTRS.P50), secondsText(w.MTTRS.P90), w.Incidents, w.Bands)
	want := lastWeek.Format(time.DateOnly) + " 2/2/2 0.5 3600/6480 1200/1200 1 {DeployFrequency:high LeadTime:elite ChangeFailureRate:low MTTR:elite}"
	if got != want {
		t.Errorf("last week:\n got %s\nwant %s", got, want)
	}
	if this := report.Weeks[1]; !this.WeekStart.Equal(thisWeek) || this.Deploys != 0 || this.ChangeFailureRate != nil || this.LeadTimeS.P50 != nil {
		t.Errorf("this week: %+v, want no deploys", this)
	}
	var notable []string
	for _, nd := range report.Notable {
		notable = append(notable, nd.DeployID+":"+strings.Join(nd.Reasons, ","))
	}
	if strings.Join(notable, " ") != "e2e-b:rolled_back,incident,slow_lead_time e2e-a:slow_lead_time" || report.Notable[0].IncidentID != "pd-E2E1" {
		t.Errorf("notable: %+v", report.Notable)
	}

	// Another team has none of it.
	var other schema.DoraReport
	if code := p.getJSON(t, "/api/v1/dora?weeks=2&team=search", &other); code != http.StatusOK || other.Weeks[0].Deploys != 0 || other.Weeks[0].Incidents != 0 {
		t.Errorf("team search: %d %+v", code, other)
	}
}
