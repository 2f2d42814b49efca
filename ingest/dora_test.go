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

// fakeDora answers every report with its two weeks, one measured and one
// without deploys, for the filter it was asked.
type fakeDora struct {
	mu      sync.Mutex
	err     error
	filters []schema.DoraFilter
}

var _ ingest.DoraReader = (*fakeDora)(nil)

func (f *fakeDora) Report(_ context.Context, filter schema.DoraFilter) (schema.DoraReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, filter)
	if f.err != nil {
		return schema.DoraReport{}, f.err
	}
	monday := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)
	env := filter.Env
	if env == "" {
		env = "production"
	}
	return schema.DoraReport{Service: filter.Service, Env: env, Team: filter.Team, NotableFrom: monday,
		Weeks: []schema.DoraWeek{
			{WeekStart: monday, DeployFrequency: 3, DeployDays: 3, Deploys: 3, Failures: 2, ChangeFailureRate: ptr(2.0 / 3),
				LeadTimeS: schema.Quantiles{P50: ptr(86400.0), P90: ptr(825120.0)}, MTTRS: schema.Quantiles{P50: ptr(2400.0), P90: ptr(2400.0)},
				Incidents: 2, Commits: 5, Bands: schema.DoraBands{DeployFrequency: "high", LeadTime: "high", ChangeFailureRate: "low", MTTR: "elite"}},
			{WeekStart: monday.AddDate(0, 0, 7), Bands: schema.DoraBands{DeployFrequency: "medium"}},
		},
		Notable: []schema.NotableDeploy{{DeployID: "d4", Service: "checkout", Env: env, Team: "payments", Version: "v1.3.0",
			Status: "rolled_back", FinishedAt: monday.Add(9 * time.Hour), Reasons: []string{"rolled_back", "incident"},
			LeadTimeS: ptr(259200.0), IncidentID: "i2"}},
	}, nil
}

func (f *fakeDora) lastFilter() schema.DoraFilter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.filters[len(f.filters)-1]
}

func (f *fakeDora) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.filters)
}

func TestReadDora(t *testing.T) {
	dora := &fakeDora{}
	h := start(t, setup{cfg: ingest.Config{Dora: dora}})

	// The answer's shape: every key, nulls where a week measured nothing.
	r := h.get("/api/v1/dora")
	wantCode(t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "application/json" && ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	var body struct {
		Env         string                       `json:"env"`
		NotableFrom string                       `json:"notable_from"`
		Weeks       []map[string]json.RawMessage `json:"weeks"`
		Notable     []map[string]json.RawMessage `json:"notable"`
	}
	r.json(t, &body)
	if f := dora.lastFilter(); f != (schema.DoraFilter{}) {
		t.Errorf("no parameters: filter %+v, want the zero filter (the store's defaults)", f)
	}
	if body.Env != "production" || body.NotableFrom != "2026-03-09T00:00:00Z" || len(body.Weeks) != 2 || len(body.Notable) != 1 {
		t.Fatalf("GET /api/v1/dora: %s", r.body)
	}
	want := map[string]string{
		"week_start": `"2026-03-09T00:00:00Z"`, "deploy_frequency": "3", "deploy_days": "3", "deploys": "3", "failures": "2",
		"change_failure_rate": "0.6666666666666666", "lead_time_s": `{"p50":86400,"p90":825120}`, "mttr_s": `{"p50":2400,"p90":2400}`,
		"incidents": "2", "commits": "5", "bands": `{"deploy_frequency":"high","lead_time":"high","change_failure_rate":"low","mttr":"elite"}`,
	}
	for k, v := range want {
		if got := string(body.Weeks[0][k]); got != v {
			t.Errorf("weeks[0].%s = %s, want %s", k, got, v)
		}
	}
	if len(body.Weeks[0]) != len(want) {
		t.Errorf("weeks[0] has %d keys, want %d: %v", len(body.Weeks[0]), len(want), body.Weeks[0])
	}
	for k, v := range map[string]string{"change_failure_rate": "null", "lead_time_s": `{"p50":null,"p90":null}`, "mttr_s": `{"p50":null,"p90":null}`,
		"deploy_frequency": "0", "bands": `{"deploy_frequency":"medium","lead_time":"","change_failure_rate":"","mttr":""}`} {
		if got := string(body.Weeks[1][k]); got != v {
			t.Errorf("the week without deploys: %s = %s, want %s", k, got, v)
		}
	}
	for k, v := range map[string]string{"deploy_id": `"d4"`, "reasons": `["rolled_back","incident"]`, "lead_time_s": "259200",
		"incident_id": `"i2"`, "finished_at": `"2026-03-09T09:00:00Z"`, "team": `"payments"`} {
		if got := string(body.Notable[0][k]); got != v {
			t.Errorf("notable[0].%s = %s, want %s", k, got, v)
		}
	}

	// The parameters reach the store.
	wantCode(t, h.get("/api/v1/dora?weeks=104&service=checkout&env=prod-eu&team=payments%20%26%20risk"), http.StatusOK)
	if f, want := dora.lastFilter(), (schema.DoraFilter{Weeks: 104, Service: "checkout", Env: "prod-eu", Team: "payments & risk"}); f != want {
		t.Errorf("filter %+v, want %+v", f, want)
	}
	wantCode(t, h.get("/api/v1/dora?weeks=1"), http.StatusOK)

	// Bad parameters are named, all at once, and never reach the store.
	bad := func(query string, fields ...string) {
		t.Helper()
		before := dora.calls()
		r := h.get("/api/v1/dora" + query)
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
		if dora.calls() != before {
			t.Errorf("%s: the store was asked", query)
		}
	}
	bad("?weeks=0", "weeks")
	bad("?weeks=105", "weeks")
	bad("?weeks=-3", "weeks")
	bad("?weeks=four", "weeks")
	bad("?weeks=1.5", "weeks")
	bad("?service=check%20out", "service")
	bad("?env=x'%20OR%20'1'='1", "env")
	bad("?weeks=0&service=-x&env=/", "weeks", "service", "env")

	dora.mu.Lock()
	dora.err = errors.New("dial tcp 127.0.0.1:9000: connect: connection refused")
	dora.mu.Unlock()
	r = h.get("/api/v1/dora")
	wantCode(t, r, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Error("a failed read: 503 without Retry-After")
	}
}

func TestReadDoraWithoutStoreOrToken(t *testing.T) {
	h := start(t, setup{})
	wantCode(t, h.get("/api/v1/dora"), http.StatusServiceUnavailable)

	h = start(t, setup{cfg: ingest.Config{APITokens: []string{"dw_grafana_91b2e0"}, Dora: &fakeDora{}}})
	wantCode(t, h.get("/api/v1/dora"), http.StatusUnauthorized)
	wantCode(t, h.get("/api/v1/dora", "Authorization", "Bearer dw_grafana_91b2e0"), http.StatusOK)
}
