package ingest_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
)

// fakeAlertReader is an ingest.AlertReader over fixed alerts and silences.
type fakeAlertReader struct {
	alerts   []schema.AlertState
	silences []schema.Silence

	mu      sync.Mutex
	filters []schema.AlertFilter
}

var _ ingest.AlertReader = (*fakeAlertReader)(nil)

func (f *fakeAlertReader) ListAlerts(_ context.Context, filter schema.AlertFilter) ([]schema.AlertState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, filter)
	return f.alerts, nil
}

func (f *fakeAlertReader) GetAlert(_ context.Context, id string) (schema.AlertState, error) {
	for _, a := range f.alerts {
		if a.AlertID == id {
			return a, nil
		}
	}
	return schema.AlertState{}, schema.ErrNotFound
}

func (f *fakeAlertReader) ActiveSilences(context.Context, time.Time) ([]schema.Silence, error) {
	return f.silences, nil
}

// signalsOn decodes the signals stream's messages on subject.
func (h *harness) signalsOn(subject string) []schema.Event {
	h.t.Helper()
	var out []schema.Event
	for _, m := range h.stored(schema.SignalsStream) {
		if m.Subject != subject {
			continue
		}
		ev, err := schema.DecodeSignal(m.Data)
		if err != nil {
			h.t.Fatalf("the API published a signal that does not decode: %v\n%s", err, m.Data)
		}
		out = append(out, ev)
	}
	return out
}

func TestPostSilence(t *testing.T) {
	h := start(t, setup{})
	body := `{"service":"checkout","env":"production","duration":"90m","created_by":"ana","comment":"migrating the orders table"}`
	r := h.postJSON("/api/v1/silences", []byte(body))
	if r.code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/silences: %d %s", r.code, r.body)
	}
	var answer struct {
		Accepted int      `json:"accepted"`
		IDs      []string `json:"ids"`
	}
	r.json(t, &answer)
	evs := h.signalsOn("deploywatch.signals.silence.checkout")
	if len(evs) != 1 || len(answer.IDs) != 1 || evs[0].EventID() != answer.IDs[0] {
		t.Fatalf("published %d silences, answered %+v", len(evs), answer)
	}
	s := evs[0].(*schema.Silence)
	if s.Env != "production" || s.Rule != "" || s.CreatedBy != "ana" || s.EndsAt.Sub(s.StartsAt.Time) != 90*time.Minute ||
		time.Since(s.StartsAt.Time) > time.Minute || s.Comment != "migrating the orders table" {
		t.Errorf("silence %+v", s)
	}

	// A rule everywhere, until a time; its subject has no service.
	until := time.Now().UTC().Add(3 * time.Hour).Format(time.RFC3339)
	r = h.postJSON("/api/v1/silences", []byte(`{"rule":"marginal-deploy","ends_at":"`+until+`","created_by":"bo"}`))
	if r.code != http.StatusAccepted {
		t.Fatalf("POST a rule's silence: %d %s", r.code, r.body)
	}
	if evs := h.signalsOn("deploywatch.signals.silence._"); len(evs) != 1 || evs[0].(*schema.Silence).EndsAt.Format(time.RFC3339) != until {
		t.Errorf("the rule's silence: %v", evs)
	}
}

func TestPostSilenceProblems(t *testing.T) {
	h := start(t, setup{})
	past := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	f := func(body string, wantFields ...string) {
		t.Helper()
		r := h.postJSON("/api/v1/silences", []byte(body))
		if r.code != http.StatusBadRequest {
			t.Fatalf("%s: %d %s, want 400", body, r.code, r.body)
		}
		var answer struct {
			Error  string              `json:"error"`
			Fields []schema.FieldError `json:"fields"`
		}
		r.json(t, &answer)
		var got []string
		for _, fe := range answer.Fields {
			got = append(got, fe.Field)
		}
		if strings.Join(got, ",") != strings.Join(wantFields, ",") {
			t.Errorf("%s: problems %+v, want fields %v", body, answer.Fields, wantFields)
		}
	}
	f(`{}`, "duration", "service", "created_by")
	f(`{"service":"checkout","created_by":"ana","duration":"1h","ends_at":"`+past+`"}`, "duration", "ends_at")
	f(`{"service":"checkout","created_by":"ana","duration":"an hour"}`, "duration")
	f(`{"service":"checkout","created_by":"ana","duration":"-5m"}`, "duration")
	f(`{"service":"checkout","created_by":"ana","ends_at":"`+past+`"}`, "ends_at")
	f(`{"service":"checkout","created_by":"ana","duration":"2400h"}`, "ends_at")
	f(`{"service":"has space","rule":"no/slash","created_by":"ana","duration":"1h"}`, "service", "rule")
	f(`{"service":"checkout","created_by":"ana","duration":"1h","sevrice":"x"}`, "sevrice")
	if n := len(h.stored(schema.SignalsStream)); n != 0 {
		t.Errorf("%d messages published from invalid requests", n)
	}
}

func TestAckAlert(t *testing.T) {
	alertID := "gha-checkout-8123456789-1:alert:bad-deploy-in-production:1772461500"
	reader := &fakeAlertReader{alerts: []schema.AlertState{{Alert: schema.Alert{
		AlertID: alertID, Status: schema.AlertFiring, Rule: "bad-deploy-in-production", Service: "checkout", Env: "production"}}}}
	h := start(t, setup{cfg: ingest.Config{Alerts: reader}})
	r := h.postJSON("/api/v1/alerts/"+alertID+"/ack", []byte(`{"by":"ana","comment":"rolling back by hand"}`))
	if r.code != http.StatusAccepted {
		t.Fatalf("ack: %d %s", r.code, r.body)
	}
	evs := h.signalsOn("deploywatch.signals.ack.checkout")
	if len(evs) != 1 {
		t.Fatalf("%d acks published", len(evs))
	}
	if a := evs[0].(*schema.Acknowledgement); a.AlertID != alertID || a.Env != "production" || a.Rule != "bad-deploy-in-production" ||
		a.By != "ana" || a.Comment != "rolling back by hand" || a.ID != schema.NewAckID(alertID, "ana", "rolling back by hand") {
		t.Errorf("ack %+v", a)
	}
	// Sent again: the same id, dropped by JetStream.
	if r := h.postJSON("/api/v1/alerts/"+alertID+"/ack", []byte(`{"by":"ana","comment":"rolling back by hand"}`)); r.code != http.StatusAccepted {
		t.Fatalf("ack again: %d %s", r.code, r.body)
	}
	if evs := h.signalsOn("deploywatch.signals.ack.checkout"); len(evs) != 1 {
		t.Errorf("%d acks after sending the same twice", len(evs))
	}
	if r := h.postJSON("/api/v1/alerts/nope/ack", []byte(`{"by":"ana"}`)); r.code != http.StatusNotFound {
		t.Errorf("ack of an unknown alert: %d %s", r.code, r.body)
	}
	if r := h.postJSON("/api/v1/alerts/"+alertID+"/ack", []byte(`{"comment":"who?"}`)); r.code != http.StatusBadRequest || !strings.Contains(string(r.body), `"by"`) {
		t.Errorf("ack without by: %d %s", r.code, r.body)
	}
}

func TestListAlertsAndSilences(t *testing.T) {
	reader := &fakeAlertReader{
		alerts:   []schema.AlertState{{Alert: schema.Alert{AlertID: "a1", Status: schema.AlertFiring}, Acks: []schema.Acknowledgement{}}},
		silences: []schema.Silence{{ID: "s1", Type: schema.TypeSilence, Service: "checkout"}},
	}
	h := start(t, setup{cfg: ingest.Config{Alerts: reader}})
	r := h.get("/api/v1/alerts?service=checkout&env=production&status=firing&limit=7")
	if r.code != http.StatusOK || !strings.Contains(string(r.body), `"alert_id":"a1"`) {
		t.Fatalf("GET /api/v1/alerts: %d %s", r.code, r.body)
	}
	if got := reader.filters[0]; got != (schema.AlertFilter{Service: "checkout", Env: "production", Status: schema.AlertFiring, Limit: 7}) {
		t.Errorf("filter %+v", got)
	}
	if r := h.get("/api/v1/alerts?status=burning&limit=0"); r.code != http.StatusBadRequest ||
		!strings.Contains(string(r.body), `"status"`) || !strings.Contains(string(r.body), `"limit"`) {
		t.Errorf("bad query: %d %s", r.code, r.body)
	}
	if r := h.get("/api/v1/alerts/a1"); r.code != http.StatusOK {
		t.Errorf("GET /api/v1/alerts/a1: %d %s", r.code, r.body)
	}
	if r := h.get("/api/v1/silences"); r.code != http.StatusOK || !strings.Contains(string(r.body), `"id":"s1"`) {
		t.Errorf("GET /api/v1/silences: %d %s", r.code, r.body)
	}

	plain := start(t, setup{})
	for _, path := range []string{"/api/v1/alerts", "/api/v1/silences", "/api/v1/alerts/a1"} {
		if r := plain.get(path); r.code != http.StatusServiceUnavailable {
			t.Errorf("GET %s without a store: %d", path, r.code)
		}
	}
}
