package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
)

// notification reads a real Alertmanager notification from testdata.
func notification(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "alertmanager", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// alertmanagerHeaders are the headers Alertmanager 0.25 sends with a notification.
var alertmanagerHeaders = []string{"User-Agent", "Alertmanager/0.25.0"}

func postNotification(h *harness, body []byte, headers ...string) response {
	h.t.Helper()
	return h.postJSON("/webhooks/alertmanager", body, append(slices.Clone(alertmanagerHeaders), headers...)...)
}

// storedIncidents decodes the incident changes on the changes stream, as
// the sink decodes them, checking each one's Nats-Msg-Id and subject.
func storedIncidents(t *testing.T, h *harness) []schema.Incident {
	t.Helper()
	var out []schema.Incident
	for _, m := range h.stored(schema.ChangesStream) {
		ev, err := schema.DecodeEvent(m.Data, "")
		if err != nil {
			t.Fatalf("the stored message %s does not decode as the sink decodes it: %v", m.Data, err)
		}
		in, ok := ev.(*schema.Incident)
		if !ok {
			t.Fatalf("stored a %T, want incidents only", ev)
		}
		if got := m.Header.Get("Nats-Msg-Id"); got != in.EventID() {
			t.Errorf("Nats-Msg-Id %q, want the event id %q", got, in.EventID())
		}
		if want := "deploywatch.changes.incident." + in.Service; m.Subject != want {
			t.Errorf("subject %q, want %q", m.Subject, want)
		}
		out = append(out, *in)
	}
	return out
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func wantAccepted(t *testing.T, r response, n int, ids ...string) {
	t.Helper()
	wantCode(t, r, http.StatusAccepted)
	var got accepted
	r.json(t, &got)
	if got.Accepted != n || !slices.Equal(got.IDs, ids) {
		t.Fatalf("answer %+v, want accepted %d and ids %q", got, n, ids)
	}
}

func TestAlertmanagerFiringThenResolved(t *testing.T) {
	h := start(t, setup{})
	startsAt := mustTime(t, "2026-11-22T04:18:08.529Z")
	staging := "am-7e6fd185efb7800e-" + strconv.FormatInt(startsAt.Unix(), 10)
	production := "am-4d5d83df5dffb6f6-" + strconv.FormatInt(startsAt.Unix(), 10)

	// Two alerts firing: an incident opened for each, in the alerts' order.
	firing := notification(t, "checkout-firing.json")
	wantAccepted(t, postNotification(h, firing), 2, staging, production)
	got := storedIncidents(t, h)
	want := []schema.Incident{
		{ID: staging, Type: schema.TypeIncident, Service: "checkout", Env: "staging", Status: schema.IncidentOpened,
			Time: schema.At(startsAt), Title: "checkout 5xx ratio above 2% for 2 minutes", Source: "alertmanager"},
		{ID: production, Type: schema.TypeIncident, Service: "checkout", Env: "production", Status: schema.IncidentOpened,
			Time: schema.At(startsAt), Title: "checkout 5xx ratio above 2% for 2 minutes", Source: "alertmanager",
			DeployID: "gha-checkout-8123456789-1"},
	}
	if !slices.EqualFunc(got, want, sameIncident) {
		t.Fatalf("stored\n%+v\nwant\n%+v", got, want)
	}

	// Alertmanager re-sends the group (repeat_interval, a retry, the other
	// member of an HA pair): the same ids, nothing stored twice.
	wantAccepted(t, postNotification(h, firing), 2, staging, production)
	if n := len(storedIncidents(t, h)); n != 2 {
		t.Fatalf("%d incident changes after the same notification twice, want 2", n)
	}

	// Production resolved, staging still firing: one new change.
	wantAccepted(t, postNotification(h, notification(t, "checkout-production-resolved.json")), 2, staging, production)
	got = storedIncidents(t, h)
	if len(got) != 3 {
		t.Fatalf("%d incident changes after production resolved, want 3: %+v", len(got), got)
	}
	resolved := want[1]
	resolved.Status, resolved.Time = schema.IncidentResolved, schema.At(mustTime(t, "2026-11-22T04:21:17.994Z"))
	if !sameIncident(got[2], resolved) {
		t.Fatalf("stored %+v, want %+v", got[2], resolved)
	}

	wantAccepted(t, postNotification(h, notification(t, "checkout-staging-resolved.json")), 1, staging)
	got = storedIncidents(t, h)
	if len(got) != 4 || got[3].ID != staging || got[3].Status != schema.IncidentResolved || got[3].Env != "staging" {
		t.Fatalf("stored %+v, want staging resolved last", got)
	}
}

func sameIncident(a, b schema.Incident) bool {
	return a.ID == b.ID && a.Type == b.Type && a.Service == b.Service && a.Env == b.Env && a.Status == b.Status &&
		a.Time.Time.Equal(b.Time.Time) && a.Title == b.Title && a.Source == b.Source && a.DeployID == b.DeployID
}

func TestAlertmanagerJobLabelAndDefaultEnv(t *testing.T) {
	startsAt := mustTime(t, "2026-11-22T04:19:58.121Z")
	id := "am-aafc8f55454a7799-" + strconv.FormatInt(startsAt.Unix(), 10)
	const title = "p99 latency of payments-api is 1.84s (threshold 1s)."

	// The service from the job label, the env from the default, the title
	// from the description when there is no summary.
	h := start(t, setup{})
	wantAccepted(t, postNotification(h, notification(t, "payments-job-firing.json")), 1, id)
	got := storedIncidents(t, h)
	if len(got) != 1 || got[0].Service != "payments-api" || got[0].Env != "production" || got[0].Title != title || got[0].DeployID != "" {
		t.Fatalf("stored %+v, want payments-api in production", got)
	}

	// A configured default env; the resolve arrives without its firing
	// notification: the incident still gets its opened change.
	h = start(t, setup{cfg: ingest.Config{AlertmanagerEnv: "prod"}})
	wantAccepted(t, postNotification(h, notification(t, "payments-job-resolved.json")), 1, id)
	got = storedIncidents(t, h)
	want := []schema.Incident{
		{ID: id, Type: schema.TypeIncident, Service: "payments-api", Env: "prod", Status: schema.IncidentOpened,
			Time: schema.At(startsAt), Title: title, Source: "alertmanager"},
		{ID: id, Type: schema.TypeIncident, Service: "payments-api", Env: "prod", Status: schema.IncidentResolved,
			Time: schema.At(mustTime(t, "2026-11-22T04:21:36.683Z")), Title: title, Source: "alertmanager"},
	}
	if !slices.EqualFunc(got, want, sameIncident) {
		t.Fatalf("stored\n%+v\nwant\n%+v", got, want)
	}
	// The firing notification, late: nothing new.
	wantAccepted(t, postNotification(h, notification(t, "payments-job-firing.json")), 1, id)
	if n := h.count(schema.ChangesStream); n != 2 {
		t.Fatalf("%d messages after the late firing notification, want 2", n)
	}
}

func TestAlertmanagerRefusesAlertsWithoutService(t *testing.T) {
	h := start(t, setup{})
	r := postNotification(h, notification(t, "no-service-firing.json"))
	wantCode(t, r, http.StatusBadRequest)
	var e errorBody
	r.json(t, &e)
	if len(e.Fields) != 1 || e.Fields[0].Field != "alerts[0].labels.service" ||
		!strings.Contains(e.Fields[0].Problem, "add a service label") || !strings.Contains(e.Fields[0].Problem, "job or app") {
		t.Fatalf("fields %+v, want alerts[0].labels.service saying which label to add", e.Fields)
	}
	if n := h.count(schema.ChangesStream); n != 0 {
		t.Fatalf("%d messages stored from a refused notification", n)
	}
}

// withAlerts returns the notification with its alerts replaced.
func withAlerts(t *testing.T, base []byte, alerts ...map[string]any) []byte {
	t.Helper()
	var msg map[string]any
	if err := json.Unmarshal(base, &msg); err != nil {
		t.Fatal(err)
	}
	msg["alerts"] = alerts
	return mustJSON(t, msg)
}

func alert(status string, labels map[string]string, startsAt, endsAt string) map[string]any {
	return map[string]any{
		"status": status, "labels": labels, "annotations": map[string]string{"summary": "checkout 5xx ratio above 2%"},
		"startsAt": startsAt, "endsAt": endsAt, "fingerprint": "4d5d83df5dffb6f6",
		"generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=x&g0.tab=1",
	}
}

func TestAlertmanagerInvalidNotifications(t *testing.T) {
	h := start(t, setup{})
	base := notification(t, "checkout-firing.json")
	const zero = "0001-01-01T00:00:00Z"
	starts := time.Now().Add(-10 * time.Minute).UTC().Format(time.RFC3339Nano)
	ok := map[string]string{"alertname": "CheckoutHighErrorRate", "service": "checkout", "env": "production"}
	f := func(name string, body []byte, wantFields ...string) {
		t.Helper()
		r := postNotification(h, body)
		wantCode(t, r, http.StatusBadRequest)
		var e errorBody
		r.json(t, &e)
		var fields []string
		for _, fe := range e.Fields {
			fields = append(fields, fe.Field)
			if fe.Problem == "" {
				t.Errorf("%s: %s named without a problem", name, fe.Field)
			}
		}
		if !slices.Equal(fields, wantFields) {
			t.Errorf("%s: fields %+v, want %q", name, e.Fields, wantFields)
		}
		if e.Error == "" {
			t.Errorf("%s: no error message", name)
		}
		if n := h.count(schema.ChangesStream); n != 0 {
			t.Fatalf("%s: %d messages stored from a refused notification", name, n)
		}
	}
	f("every bad alert named at once; the good one not stored either", withAlerts(t, base,
		alert("firing", ok, starts, zero),
		alert("pending", ok, starts, zero),
		alert("firing", map[string]string{"job": "kubernetes pods", "environment": "prod/eu"}, starts, zero),
		alert("firing", ok, "yesterday", zero),
		alert("resolved", ok, starts, zero),
		alert("resolved", ok, starts, "2020-01-01T00:00:00Z"),
		alert("firing", map[string]string{"app": "checkout", "env": "production", "deploy_id": "deploy #42"}, starts, zero),
		alert("firing", ok, time.Now().Add(3*time.Hour).Format(time.RFC3339), zero),
	),
		"alerts[1].status",
		"alerts[2].labels.job", "alerts[2].labels.environment",
		"alerts[3].startsAt",
		"alerts[4].endsAt",
		"alerts[5].endsAt",
		"alerts[6].labels.deploy_id",
		"alerts[7].startsAt")
	f("no alerts", withAlerts(t, base), "alerts")
	f("not a notification", []byte(`{"receiver": "deploywatch", "alerts": {"status": "firing"}}`), "alerts")
	f("labels of the wrong kind", []byte(`{"alerts": [{"status": "firing", "labels": ["service", "checkout"]}]}`), "alerts.labels")

	r := postNotification(h, []byte(`{"alerts": [`))
	wantCode(t, r, http.StatusBadRequest)
	r = h.do(http.MethodPost, "/webhooks/alertmanager", strings.NewReader(string(base)), "Content-Type", "text/plain")
	wantCode(t, r, http.StatusUnsupportedMediaType)
}

var incidentIDPattern = regexp.MustCompile(`^am-[0-9a-f]{16}-[0-9]+$`)

func TestAlertmanagerIncidentIDs(t *testing.T) {
	h := start(t, setup{})
	base := notification(t, "checkout-firing.json")
	labels := map[string]string{"alertname": "CheckoutHighErrorRate", "service": "checkout", "env": "production"}
	firedAt := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
	ms := firedAt.Add(529 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	post := func(alerts ...map[string]any) []string {
		t.Helper()
		r := postNotification(h, withAlerts(t, base, alerts...))
		wantCode(t, r, http.StatusAccepted)
		var got accepted
		r.json(t, &got)
		return got.IDs
	}

	first := post(alert("firing", labels, ms, "0001-01-01T00:00:00Z"))
	// After a Prometheus restart the alert's startsAt comes back in whole
	// seconds: the same incident.
	again := post(alert("resolved", labels, firedAt.UTC().Format(time.RFC3339), time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)))
	if len(first) != 1 || !slices.Equal(first, again) || first[0] != "am-4d5d83df5dffb6f6-"+strconv.FormatInt(firedAt.Unix(), 10) {
		t.Fatalf("ids %q then %q, want the same am-<fingerprint>-<startsAt> id", first, again)
	}
	// The alert firing again later is another incident.
	if later := post(alert("firing", labels, time.Now().Add(-30*time.Second).UTC().Format(time.RFC3339Nano), "0001-01-01T00:00:00Z")); slices.Equal(later, first) {
		t.Fatalf("a new firing of the alert got the id of the old one: %q", later)
	}

	// Without a fingerprint (a sender other than Alertmanager), the labels
	// stand in for it, whatever their order in the body.
	noFP := alert("firing", labels, ms, "0001-01-01T00:00:00Z")
	delete(noFP, "fingerprint")
	a := post(noFP)
	b := postNotification(h, []byte(fmt.Sprintf(`{"version": "4", "status": "firing", "alerts": [{"status": "firing",
		"labels": {"service": "checkout", "env": "production", "alertname": "CheckoutHighErrorRate"},
		"annotations": {"summary": "checkout 5xx ratio above 2%%"}, "startsAt": %q, "endsAt": "0001-01-01T00:00:00Z"}]}`, ms)))
	wantCode(t, b, http.StatusAccepted)
	var bIDs accepted
	b.json(t, &bIDs)
	if len(a) != 1 || !slices.Equal(a, bIDs.IDs) || !incidentIDPattern.MatchString(a[0]) || a[0] == first[0] {
		t.Fatalf("ids without a fingerprint %q and %q, want equal ids of the form am-<16 hex>-<unix>", a, bIDs.IDs)
	}
}

func TestAlertmanagerTitles(t *testing.T) {
	h := start(t, setup{})
	base := notification(t, "checkout-firing.json")
	starts := time.Now().Add(-5 * time.Minute).UTC().Format(time.RFC3339Nano)
	long := alert("firing", map[string]string{"alertname": "A", "service": "checkout"}, starts, "")
	long["annotations"] = map[string]string{"summary": strings.Repeat("Fehlerquote über 2 % ", 100)} // 2,200 bytes
	named := alert("firing", map[string]string{"alertname": "CheckoutDown", "service": "checkout", "env": "staging"}, starts, "")
	named["annotations"] = map[string]string{}
	named["fingerprint"] = "0f0f0f0f0f0f0f0f"
	// Grafana's webhook adds fields of its own: ignored.
	named["silenceURL"], named["values"], named["valueString"] = "https://grafana.example.com/alerting/silence/new", map[string]float64{"B": 44.2}, "[ var='B' value=44.2 ]"
	wantCode(t, postNotification(h, withAlerts(t, base, long, named)), http.StatusAccepted)
	got := storedIncidents(t, h)
	if len(got) != 2 {
		t.Fatalf("stored %d incidents, want 2", len(got))
	}
	if title := got[0].Title; len(title) > 1024 || !utf8.ValidString(title) || !strings.HasSuffix(title, "…") || !strings.HasPrefix(title, "Fehlerquote über 2 %") {
		t.Errorf("a long summary became the title %q (%d bytes), want it cut to at most 1,024 bytes of valid UTF-8 ending in …", title, len(title))
	}
	if got[1].Title != "CheckoutDown" || got[1].Env != "staging" {
		t.Errorf("an alert without annotations: %+v, want its alertname as the title", got[1])
	}
}

func TestAlertmanagerToken(t *testing.T) {
	h := start(t, setup{cfg: ingest.Config{APITokens: []string{"dw_ci_7f3a9c21", "s3cr3t-token"}}})
	body := notification(t, "checkout-firing.json")
	for _, auth := range []string{"", "Bearer s3cr3t-toke", "Bearer s3cr3t-tokenn", "Basic czNjcjN0LXRva2Vu", "s3cr3t-token"} {
		var r response
		if auth == "" {
			r = postNotification(h, body)
		} else {
			r = postNotification(h, body, "Authorization", auth)
		}
		wantCode(t, r, http.StatusUnauthorized)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("401 with WWW-Authenticate %q, want a Bearer challenge", r.header.Get("WWW-Authenticate"))
		}
	}
	if n := h.count(schema.ChangesStream); n != 0 {
		t.Fatalf("%d messages stored from unauthorized notifications", n)
	}
	// What Alertmanager sends with http_config.authorization.credentials.
	wantCode(t, postNotification(h, body, "Authorization", "Bearer s3cr3t-token"), http.StatusAccepted)
	wantCode(t, postNotification(h, body, "Authorization", "Bearer dw_ci_7f3a9c21"), http.StatusAccepted)
	if n := h.count(schema.ChangesStream); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
}

func TestAlertmanagerWhenTheEventLogIsDown(t *testing.T) {
	h := start(t, setup{cfg: ingest.Config{RetryAfter: time.Second}})
	ctx := testContext(t)
	if err := h.js.DeleteStream(ctx, schema.ChangesStream); err != nil {
		t.Fatal(err)
	}
	body := notification(t, "checkout-production-resolved.json")
	// A 5xx: Alertmanager retries the notification.
	wantUnavailable(t, postNotification(h, body), "1")

	if err := eventlog.EnsureStreams(ctx, h.js, eventlog.DefaultStreamLimits()); err != nil {
		t.Fatal(err)
	}
	wantCode(t, postNotification(h, body), http.StatusAccepted)
	// Staging opened; production opened and resolved.
	if n := h.count(schema.ChangesStream); n != 3 {
		t.Fatalf("%d messages after the retry, want 3", n)
	}
}

// recordingPublisher keeps what it is asked to publish.
type recordingPublisher struct{ msgs []schema.Message }

func (p *recordingPublisher) Publish(_ context.Context, msgs []schema.Message) error {
	p.msgs = append(p.msgs, msgs...)
	return nil
}

// FuzzAlertmanagerWebhook checks that no body makes the route panic, that a
// refused body publishes nothing, and that an accepted one publishes only
// incidents the sink accepts, each under its event id.
func FuzzAlertmanagerWebhook(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "alertmanager", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed notifications: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"alerts": [{"status": "resolved", "labels": {"app": "x"}, "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T00:00:01Z"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		pub := &recordingPublisher{}
		api := ingest.New(ingest.Config{}, pub, nil)
		req := httptest.NewRequest(http.MethodPost, "/webhooks/alertmanager", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.Handler().ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted:
			if len(pub.msgs) == 0 {
				t.Fatalf("202 without publishing: %s", rec.Body)
			}
			for _, m := range pub.msgs {
				ev, err := schema.DecodeEvent(m.Data, "")
				if err != nil {
					t.Fatalf("published %s, which the sink refuses: %v", m.Data, err)
				}
				if _, ok := ev.(*schema.Incident); !ok || m.ID != ev.EventID() {
					t.Fatalf("published %T with id %q, want an incident under its event id %q", ev, m.ID, ev.EventID())
				}
			}
		case http.StatusBadRequest:
			if len(pub.msgs) != 0 {
				t.Fatalf("400 after publishing %d messages", len(pub.msgs))
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
