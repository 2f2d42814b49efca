package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/internal/testenv"
	"github.com/deploywatch/deploywatch/schema"
)

// amAlert is one alert of an Alertmanager notification, shaped as
// Alertmanager 0.25 sends it (see ingest/testdata/alertmanager).
func amAlert(status, fingerprint string, labels map[string]string, startsAt, endsAt time.Time) map[string]any {
	ends := "0001-01-01T00:00:00Z" // what Alertmanager sends for a firing alert
	if status == "resolved" {
		ends = endsAt.UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{
		"status": status, "labels": labels,
		"annotations": map[string]string{
			"summary":     labels["service"] + " 5xx ratio above 2% for 2 minutes",
			"description": "5xx ratio is 3.1% on " + labels["service"] + " in " + labels["env"] + " (threshold 2%).",
			"runbook_url": "https://runbooks.example.com/" + labels["service"] + "/high-error-rate",
		},
		"startsAt": startsAt.UTC().Format(time.RFC3339Nano), "endsAt": ends,
		"generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=sum+by+%28service%29+%28rate%28http_requests_total%7Bcode%3D~%225..%22%7D%5B2m%5D%29%29+%3E+0.02&g0.tab=1",
		"fingerprint":  fingerprint,
	}
}

// amNotification is Alertmanager's webhook body (version 4) for one group.
func amNotification(t *testing.T, alerts ...map[string]any) []byte {
	t.Helper()
	status := "resolved"
	for _, a := range alerts {
		if a["status"] == "firing" {
			status = "firing"
		}
	}
	body, err := json.Marshal(map[string]any{
		"receiver": "deploywatch", "status": status, "alerts": alerts,
		"groupLabels":       map[string]string{"alertname": "HighErrorRate"},
		"commonLabels":      map[string]string{"alertname": "HighErrorRate", "severity": "critical"},
		"commonAnnotations": map[string]string{},
		"externalURL":       "http://alertmanager.example.com:9093",
		"version":           "4", "groupKey": `{}:{alertname="HighErrorRate"}`, "truncatedAlerts": 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func (p *pipeline) incident(t *testing.T, id string) (schema.IncidentState, int) {
	t.Helper()
	var in schema.IncidentState
	code := p.getJSON(t, "/api/v1/incidents/"+id, &in)
	return in, code
}

func (p *pipeline) incidents(t *testing.T, query string) []schema.IncidentState {
	t.Helper()
	var answer struct {
		Incidents []schema.IncidentState `json:"incidents"`
	}
	if code := p.getJSON(t, "/api/v1/incidents"+query, &answer); code != http.StatusOK {
		t.Fatalf("GET /api/v1/incidents%s: %d", query, code)
	}
	return answer.Incidents
}

func secondsText(p *float64) string {
	if p == nil {
		return "null"
	}
	return strconv.FormatFloat(*p, 'f', -1, 64)
}

func wantSeconds(t *testing.T, name string, got *float64, want float64) {
	t.Helper()
	if got == nil || *got != want {
		t.Errorf("%s = %s, want %v", name, secondsText(got), want)
	}
}

func TestIncidentsFromAlertmanager(t *testing.T) {
	p := startServe(t, testenv.ClickHouse(t), nil)
	labels := map[string]string{"alertname": "HighErrorRate", "service": "checkout", "env": "production", "severity": "critical",
		"instance": "checkout-7d9f8c6b5-x2k4p:8080", "job": "checkout"}
	// Alertmanager's times have milliseconds; ClickHouse keeps whole seconds.
	startsAt := time.Now().Add(-25 * time.Minute).Truncate(time.Millisecond)
	endsAt := startsAt.Add(17*time.Minute + 42*time.Second + 305*time.Millisecond)
	id := "am-4d5d83df5dffb6f6-" + strconv.FormatInt(startsAt.Unix(), 10)

	code, answer := p.post(t, "/webhooks/alertmanager", amNotification(t, amAlert("firing", "4d5d83df5dffb6f6", labels, startsAt, time.Time{})))
	if code != http.StatusAccepted || fmt.Sprint(answer["ids"]) != "["+id+"]" {
		t.Fatalf("firing notification: %d %v, want 202 with ids [%s]", code, answer, id)
	}
	var open schema.IncidentState
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var code int
		open, code = p.incident(t, id)
		return code == http.StatusOK, fmt.Sprintf("GET /api/v1/incidents/%s: %d", id, code)
	})
	if open.Status != "open" || open.ResolvedAt != nil || open.MTTRS != nil || open.TimeToRecoverS != nil ||
		open.Service != "checkout" || open.Env != "production" || open.Source != "alertmanager" ||
		open.Title != "checkout 5xx ratio above 2% for 2 minutes" || open.DeployID != "" ||
		open.OpenedAt == nil || !open.OpenedAt.Equal(startsAt.Truncate(time.Second)) {
		t.Fatalf("the open incident: %+v", open)
	}
	if got := p.incidents(t, "?service=checkout&status=open"); len(got) != 1 || got[0].ID != id {
		t.Fatalf("open incidents of checkout: %+v, want %s", got, id)
	}

	// Alertmanager sends the resolve, and (group_interval later) the same again.
	resolved := amNotification(t, amAlert("resolved", "4d5d83df5dffb6f6", labels, startsAt, endsAt))
	for range 2 {
		if code, answer := p.post(t, "/webhooks/alertmanager", resolved); code != http.StatusAccepted {
			t.Fatalf("resolved notification: %d %v", code, answer)
		}
	}
	var done schema.IncidentState
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		done, _ = p.incident(t, id)
		return done.Status == "resolved", fmt.Sprintf("incident %s: %+v", id, done)
	})
	mttr := endsAt.Truncate(time.Second).Sub(startsAt.Truncate(time.Second)).Seconds()
	wantSeconds(t, "mttr_s", done.MTTRS, mttr)
	wantSeconds(t, "time_to_recover_s", done.TimeToRecoverS, mttr)
	if done.ResolvedAt == nil || !done.ResolvedAt.Equal(endsAt.Truncate(time.Second)) || done.TimeToDetectS != nil || done.TimeToRollbackS != nil {
		t.Errorf("the resolved incident: %+v", done)
	}

	// In the list (the last 30 days by default), once.
	list := p.incidents(t, "")
	if len(list) != 1 || list[0].ID != id || list[0].Status != "resolved" || secondsText(list[0].MTTRS) != secondsText(&mttr) {
		t.Fatalf("GET /api/v1/incidents: %+v, want the one resolved incident", list)
	}
	if got := p.incidents(t, "?status=open"); len(got) != 0 {
		t.Fatalf("open incidents: %+v, want none", got)
	}
	if got := p.incidents(t, "?since="+time.Now().Add(-10*time.Minute).UTC().Format(time.RFC3339)); len(got) != 0 {
		t.Fatalf("incidents opened in the last 10 minutes: %+v, want none", got)
	}
	if _, code := p.incident(t, "am-0000000000000000-1"); code != http.StatusNotFound {
		t.Fatalf("an unknown incident: %d, want 404", code)
	}
}

func TestIncidentDurationsFromDeploys(t *testing.T) {
	p := startServe(t, testenv.ClickHouse(t), nil)
	const deployID = "gha-checkout-8123456789-1"
	started := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	finished := started.Add(4*time.Minute + 17*time.Second)
	opened := finished.Add(6 * time.Minute)      // the alert fired 6 min after the deploy finished
	rolledBack := opened.Add(9 * time.Minute)    // the rollback finished 9 min later
	recovered := opened.Add(20 * time.Minute)    // the alert resolved 20 min after it fired
	canaryOpened := started.Add(2 * time.Minute) // a second incident, while the deploy still rolled out

	deploy := func(status string, version string, finishedAt time.Time) []byte {
		return []byte(fmt.Sprintf(`{"id": %q, "service": "checkout", "env": "production", "version": %q,
			"previous_version": "v1.4.1", "status": %q, "started_at": %q, "finished_at": %q, "strategy": "canary"}`,
			deployID, version, status, started.Format(time.RFC3339), finishedAt.Format(time.RFC3339)))
	}
	if code, answer := p.post(t, "/api/v1/deploys", deploy("succeeded", "v1.4.2", finished)); code != http.StatusAccepted {
		t.Fatalf("deploy: %d %v", code, answer)
	}
	labels := map[string]string{"alertname": "HighErrorRate", "service": "checkout", "env": "production", "deploy_id": deployID}
	fired := amNotification(t, amAlert("firing", "9c41e07b2d5a8f13", labels, opened, time.Time{}))
	code, answer := p.post(t, "/webhooks/alertmanager", fired)
	if code != http.StatusAccepted {
		t.Fatalf("firing notification: %d %v", code, answer)
	}
	id := "am-9c41e07b2d5a8f13-" + strconv.FormatInt(opened.Unix(), 10)
	// The rollback, as the rollback agent reports it: the same deploy, rolled back.
	if code, answer := p.post(t, "/api/v1/deploys", deploy("rolled_back", "v1.4.1", rolledBack)); code != http.StatusAccepted {
		t.Fatalf("rolled_back deploy: %d %v", code, answer)
	}
	// An incident from another source (the API), opened during the rollout.
	code, answer = p.post(t, "/api/v1/events", []byte(fmt.Sprintf(`{"type": "incident", "id": "pd-Q7Z4X2", "service": "checkout",
		"env": "production", "status": "opened", "time": %q, "title": "Checkout latency", "source": "pagerduty", "deploy_id": %q}`,
		canaryOpened.Format(time.RFC3339), deployID)))
	if code != http.StatusAccepted {
		t.Fatalf("incident event: %d %v", code, answer)
	}

	// Rolled back, not resolved yet: time to detect and to rollback, no MTTR.
	var in schema.IncidentState
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		in, _ = p.incident(t, id)
		return in.TimeToRollbackS != nil, fmt.Sprintf("incident %s: %+v", id, in)
	})
	wantSeconds(t, "time_to_detect_s", in.TimeToDetectS, 6*60)
	wantSeconds(t, "time_to_rollback_s", in.TimeToRollbackS, 9*60)
	if in.Status != "open" || in.MTTRS != nil || in.DeployID != deployID {
		t.Errorf("before the resolve: %+v, want open, linked to %s, without mttr_s", in, deployID)
	}

	if code, answer := p.post(t, "/webhooks/alertmanager", amNotification(t, amAlert("resolved", "9c41e07b2d5a8f13", labels, opened, recovered))); code != http.StatusAccepted {
		t.Fatalf("resolved notification: %d %v", code, answer)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		in, _ = p.incident(t, id)
		return in.Status == "resolved", fmt.Sprintf("incident %s: %+v", id, in)
	})
	wantSeconds(t, "mttr_s", in.MTTRS, 20*60)
	wantSeconds(t, "time_to_recover_s", in.TimeToRecoverS, 20*60)
	wantSeconds(t, "time_to_detect_s", in.TimeToDetectS, 6*60)
	wantSeconds(t, "time_to_rollback_s", in.TimeToRollbackS, 9*60)

	// Both incidents of the deploy, newest opened first; the one opened during
	// the rollout counts its detection from the deploy's start.
	var list []schema.IncidentState
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		list = p.incidents(t, "?service=checkout&env=production")
		return len(list) == 2, fmt.Sprintf("incidents: %+v", list)
	})
	if list[0].ID != id || list[1].ID != "pd-Q7Z4X2" || list[1].Source != "pagerduty" || list[1].Status != "open" {
		t.Fatalf("incidents: %+v", list)
	}
	wantSeconds(t, "the canary incident's time_to_detect_s", list[1].TimeToDetectS, 2*60)
	wantSeconds(t, "the canary incident's time_to_rollback_s", list[1].TimeToRollbackS, (rolledBack.Sub(canaryOpened)).Seconds())
}
