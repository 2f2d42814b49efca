package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
)

// fakeIncidents is an ingest.IncidentReader over a fixed list; when err is
// set, every read fails with it.
type fakeIncidents struct {
	incidents []schema.IncidentState

	mu      sync.Mutex
	err     error
	filters []schema.IncidentFilter
}

var _ ingest.IncidentReader = (*fakeIncidents)(nil)

func (f *fakeIncidents) ListIncidents(_ context.Context, filter schema.IncidentFilter) ([]schema.IncidentState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, filter)
	if f.err != nil {
		return nil, f.err
	}
	var out []schema.IncidentState
	for _, in := range f.incidents {
		if (filter.Service == "" || in.Service == filter.Service) && (filter.Status == "" || in.Status == filter.Status) {
			out = append(out, in)
		}
	}
	return out, nil
}

func (f *fakeIncidents) GetIncident(_ context.Context, id string) (schema.IncidentState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return schema.IncidentState{}, f.err
	}
	for _, in := range f.incidents {
		if in.ID == id {
			return in, nil
		}
	}
	return schema.IncidentState{}, schema.ErrNotFound
}

func (f *fakeIncidents) lastFilter() schema.IncidentFilter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.filters[len(f.filters)-1]
}

func (f *fakeIncidents) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func ptr[T any](v T) *T { return &v }

func incidentStates() []schema.IncidentState {
	opened := time.Date(2026, 3, 2, 14, 9, 0, 0, time.UTC)
	return []schema.IncidentState{
		{ID: "am-aafc8f55454a7799-1772463600", Service: "payments-api", Env: "production", Status: schema.IncidentStateOpen,
			Title: "p99 latency high", Source: "alertmanager", OpenedAt: ptr(opened.Add(51 * time.Minute))},
		{ID: "am-4d5d83df5dffb6f6-1772460540", Service: "checkout", Env: "production", Status: schema.IncidentStateResolved,
			Title: "checkout 5xx ratio above 2% for 2 minutes", Source: "alertmanager", DeployID: "gha-checkout-8123456789-1",
			OpenedAt: ptr(opened), ResolvedAt: ptr(opened.Add(22 * time.Minute)),
			MTTRS: ptr(1320.0), TimeToDetectS: ptr(240.0), TimeToRollbackS: ptr(660.0), TimeToRecoverS: ptr(1320.0)},
	}
}

func TestReadIncidents(t *testing.T) {
	store := &fakeIncidents{incidents: incidentStates()}
	h := start(t, setup{cfg: ingest.Config{Incidents: store}})

	list := func(query string) []map[string]json.RawMessage {
		t.Helper()
		r := h.get("/api/v1/incidents" + query)
		wantCode(t, r, http.StatusOK)
		var got struct {
			Incidents []map[string]json.RawMessage `json:"incidents"`
		}
		r.json(t, &got)
		if got.Incidents == nil {
			t.Fatalf("GET /api/v1/incidents%s: %s, want a list, empty or not", query, r.body)
		}
		return got.Incidents
	}

	before := time.Now()
	all := list("")
	f := store.lastFilter()
	if len(all) != 2 || f.Limit != 50 || f.Status != "" || f.Service != "" ||
		f.Since.Before(before.Add(-30*24*time.Hour-time.Second)) || f.Since.After(time.Now().Add(-30*24*time.Hour)) {
		t.Fatalf("listed %d with filter %+v, want both, the default limit 50 and since 30 days back", len(all), f)
	}
	// Every field is there; the unknown ones are null.
	for _, key := range []string{"id", "service", "env", "status", "title", "source", "deploy_id", "opened_at", "resolved_at",
		"mttr_s", "time_to_detect_s", "time_to_rollback_s", "time_to_recover_s"} {
		if _, ok := all[0][key]; !ok {
			t.Errorf("an incident has no %q: %v", key, all[0])
		}
	}
	for _, key := range []string{"resolved_at", "mttr_s", "time_to_detect_s", "time_to_rollback_s", "time_to_recover_s"} {
		if string(all[0][key]) != "null" {
			t.Errorf("the open incident's %s is %s, want null", key, all[0][key])
		}
	}
	if string(all[1]["mttr_s"]) != "1320" || string(all[1]["time_to_detect_s"]) != "240" || string(all[1]["status"]) != `"resolved"` ||
		string(all[1]["resolved_at"]) != `"2026-03-02T14:31:00Z"` {
		t.Errorf("the resolved incident: %v", all[1])
	}

	list("?service=checkout&env=production&since=2026-03-01T00:00:00%2B01:00&status=resolved&limit=1000")
	want := schema.IncidentFilter{Service: "checkout", Env: "production", Since: time.Date(2026, 2, 28, 23, 0, 0, 0, time.UTC), Status: "resolved", Limit: 1000}
	if f := store.lastFilter(); !f.Since.Equal(want.Since) || f.Service != want.Service || f.Env != want.Env || f.Status != want.Status || f.Limit != want.Limit {
		t.Fatalf("filter %+v, want %+v", f, want)
	}
	if got := list("?status=open"); len(got) != 1 {
		t.Fatalf("listed %d open incidents, want 1", len(got))
	}

	bad := func(query string, fields ...string) {
		t.Helper()
		r := h.get("/api/v1/incidents" + query)
		wantCode(t, r, http.StatusBadRequest)
		var e errorBody
		r.json(t, &e)
		if len(e.Fields) != len(fields) {
			t.Fatalf("%s: fields %+v, want %q", query, e.Fields, fields)
		}
		for i := range fields {
			if e.Fields[i].Field != fields[i] {
				t.Fatalf("%s: fields %+v, want %q", query, e.Fields, fields)
			}
		}
	}
	bad("?since=yesterday", "since")
	bad("?since=2026-03-01", "since")
	bad("?status=opened", "status")
	bad("?limit=0", "limit")
	bad("?since=2026-03-01%2010:00&status=closed&limit=1001", "since", "status", "limit")

	r := h.get("/api/v1/incidents/am-4d5d83df5dffb6f6-1772460540")
	wantCode(t, r, http.StatusOK)
	var one schema.IncidentState
	r.json(t, &one)
	if one.DeployID != "gha-checkout-8123456789-1" || *one.TimeToRollbackS != 660 || *one.TimeToRecoverS != 1320 {
		t.Fatalf("got %+v", one)
	}
	wantCode(t, h.get("/api/v1/incidents/am-0000000000000000-1"), http.StatusNotFound)

	store.fail(errors.New("dial tcp 127.0.0.1:9000: connect: connection refused"))
	for _, path := range []string{"/api/v1/incidents", "/api/v1/incidents/am-4d5d83df5dffb6f6-1772460540"} {
		r := h.get(path)
		wantCode(t, r, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("GET %s: 503 without Retry-After", path)
		}
	}
}

func TestReadIncidentsWithoutStoreOrToken(t *testing.T) {
	h := start(t, setup{})
	wantCode(t, h.get("/api/v1/incidents"), http.StatusServiceUnavailable)
	wantCode(t, h.get("/api/v1/incidents/am-4d5d83df5dffb6f6-1772460540"), http.StatusServiceUnavailable)

	h = start(t, setup{cfg: ingest.Config{APITokens: []string{"dw_grafana_91b2e0"}, Incidents: &fakeIncidents{incidents: incidentStates()}}})
	wantCode(t, h.get("/api/v1/incidents"), http.StatusUnauthorized)
	wantCode(t, h.get("/api/v1/incidents/am-4d5d83df5dffb6f6-1772460540"), http.StatusUnauthorized)
	wantCode(t, h.get("/api/v1/incidents", "Authorization", "Bearer dw_grafana_91b2e0"), http.StatusOK)
}
