package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
)

// fakeDeploys is an ingest.DeployReader over a fixed list; when err is set,
// every read fails with it, as a ClickHouse that does not answer would.
type fakeDeploys struct {
	deploys []schema.DeployState

	mu      sync.Mutex
	err     error
	filters []schema.DeployFilter
}

func (f *fakeDeploys) ListDeploys(_ context.Context, filter schema.DeployFilter) ([]schema.DeployState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, filter)
	if f.err != nil {
		return nil, f.err
	}
	var out []schema.DeployState
	for _, d := range f.deploys {
		if (filter.Service == "" || d.Service == filter.Service) && (filter.Env == "" || d.Env == filter.Env) && len(out) < filter.Limit {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeDeploys) GetDeploy(_ context.Context, id string) (schema.DeployState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return schema.DeployState{}, f.err
	}
	for _, d := range f.deploys {
		if d.ID == id {
			return d, nil
		}
	}
	return schema.DeployState{}, schema.ErrNotFound
}

func (f *fakeDeploys) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeDeploys) lastFilter() schema.DeployFilter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.filters[len(f.filters)-1]
}

func deployStates() []schema.DeployState {
	at := func(s string) *time.Time {
		t, _ := time.Parse(time.RFC3339, s)
		return &t
	}
	dur := func(s float64) *float64 { return &s }
	return []schema.DeployState{
		{
			ID: "gha-checkout-8123456789-1", Service: "checkout", Env: "prod", Version: "v2.14.0", PreviousVersion: "v2.13.2",
			Status: schema.DeploySucceeded, StartedAt: at("2026-03-02T14:01:10Z"), FinishedAt: at("2026-03-02T14:05:27Z"),
			DurationS: dur(257), UpdatedAt: *at("2026-03-02T14:05:28Z"), Strategy: schema.StrategyCanary,
			Commits: []schema.Commit{{SHA: "9f2c1e7b4a0d5e8c3b6f1a2d7e9c0b4a5f8e1d3c", Author: "Ana Souza"}},
			Labels:  map[string]string{"team": "payments"},
		},
		{
			ID: "gha-checkout-8123400001-1", Service: "checkout", Env: "staging", Version: "v2.14.0",
			Status: schema.DeployStarted, StartedAt: at("2026-03-02T13:40:00Z"), UpdatedAt: *at("2026-03-02T13:40:01Z"),
			Commits: []schema.Commit{}, Labels: map[string]string{},
		},
		{
			ID: "argo-search-551", Service: "search", Env: "prod", Version: "2026.03.01-3", Status: schema.DeployRolledBack,
			StartedAt: at("2026-03-01T09:00:00Z"), FinishedAt: at("2026-03-01T09:12:00Z"), RolledBackAt: at("2026-03-01T09:12:00Z"),
			UpdatedAt: *at("2026-03-01T09:12:01Z"), Commits: []schema.Commit{}, Labels: map[string]string{},
		},
	}
}

func TestReadDeploys(t *testing.T) {
	store := &fakeDeploys{deploys: deployStates()}
	h := start(t, setup{deploys: store})

	list := func(query string) []schema.DeployState {
		t.Helper()
		r := h.get("/api/v1/deploys" + query)
		wantCode(t, r, http.StatusOK)
		var got struct {
			Deploys []schema.DeployState `json:"deploys"`
		}
		r.json(t, &got)
		if got.Deploys == nil {
			t.Fatalf("GET /api/v1/deploys%s: %s, want a list, empty or not", query, r.body)
		}
		return got.Deploys
	}
	if got := list(""); len(got) != 3 || store.lastFilter() != (schema.DeployFilter{Limit: 50}) {
		t.Fatalf("listed %d deploys with filter %+v, want all 3 with the default limit 50", len(got), store.lastFilter())
	}
	got := list("?service=checkout&env=prod&limit=10")
	if store.lastFilter() != (schema.DeployFilter{Service: "checkout", Env: "prod", Limit: 10}) {
		t.Fatalf("filter %+v, want checkout/prod, limit 10", store.lastFilter())
	}
	if len(got) != 1 || got[0].ID != "gha-checkout-8123456789-1" || *got[0].DurationS != 257 || !isNull(got[0].Verdict) {
		t.Fatalf("listed %+v, want the prod deploy of checkout with its duration and no verdict (none is wired)", got)
	}
	if got := list("?service=billing"); len(got) != 0 {
		t.Fatalf("listed %d deploys of a service without any", len(got))
	}
	list("?limit=1000")

	badLimit := func(query string) {
		t.Helper()
		r := h.get("/api/v1/deploys" + query)
		wantCode(t, r, http.StatusBadRequest)
		var e errorBody
		r.json(t, &e)
		if len(e.Fields) != 1 || e.Fields[0].Field != "limit" {
			t.Fatalf("%s: fields %+v, want limit named", query, e.Fields)
		}
	}
	badLimit("?limit=0")
	badLimit("?limit=-3")
	badLimit("?limit=1001")
	badLimit("?limit=ten")

	r := h.get("/api/v1/deploys/argo-search-551")
	wantCode(t, r, http.StatusOK)
	var one schema.DeployState
	r.json(t, &one)
	if one.ID != "argo-search-551" || one.Status != schema.DeployRolledBack || one.RolledBackAt == nil {
		t.Fatalf("got %+v, want the rolled back search deploy", one)
	}
	r = h.get("/api/v1/deploys/gha-unknown-1")
	wantCode(t, r, http.StatusNotFound)
	var e errorBody
	r.json(t, &e)
	if e.Error == "" {
		t.Fatal("404 without an error message")
	}

	store.fail(errors.New("dial tcp 127.0.0.1:9000: connect: connection refused"))
	for _, path := range []string{"/api/v1/deploys", "/api/v1/deploys/argo-search-551"} {
		r := h.get(path)
		wantCode(t, r, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("GET %s: 503 without Retry-After", path)
		}
	}
}

func TestReadDeploysWithoutStore(t *testing.T) {
	h := start(t, setup{})
	wantCode(t, h.get("/api/v1/deploys"), http.StatusServiceUnavailable)
	wantCode(t, h.get("/api/v1/deploys/gha-checkout-8123456789-1"), http.StatusServiceUnavailable)
}

func TestSchemas(t *testing.T) {
	h := start(t, setup{})
	for _, name := range []string{"deploy", "metrics", "incident", "event"} {
		r := h.get("/api/v1/schemas/" + name)
		wantCode(t, r, http.StatusOK)
		if ct := r.header.Get("Content-Type"); ct != "application/schema+json" {
			t.Errorf("%s: Content-Type %q, want application/schema+json", name, ct)
		}
		want, err := fs.ReadFile(schema.JSONSchemas, "jsonschema/"+name+".schema.json")
		if err != nil {
			t.Fatal(err)
		}
		if string(r.body) != string(want) {
			t.Errorf("%s: served a different document than schema.JSONSchemas holds", name)
		}
		var doc map[string]any
		if err := json.Unmarshal(r.body, &doc); err != nil || doc["$schema"] == nil {
			t.Errorf("%s: not a JSON Schema document (%v)", name, err)
		}
	}
	for _, name := range []string{"deploys", "..%2Fevent", "deploy.schema"} {
		wantCode(t, h.get("/api/v1/schemas/"+name), http.StatusNotFound)
	}
}

func TestReadyz(t *testing.T) {
	var clickhouse atomic.Pointer[error]
	h := start(t, setup{checks: func(pub *eventlog.Publisher) map[string]ingest.Check {
		return map[string]ingest.Check{
			"nats": pub.Check,
			"clickhouse": func(context.Context) error {
				if err := clickhouse.Load(); err != nil {
					return *err
				}
				return nil
			},
		}
	}})
	ready := func(code int, want map[string]string) {
		t.Helper()
		r := h.get("/readyz")
		wantCode(t, r, code)
		var got map[string]string
		r.json(t, &got)
		keys := func(m map[string]string) []string {
			var ks []string
			for k, v := range m {
				ks = append(ks, k+"="+v)
			}
			slices.Sort(ks)
			return ks
		}
		if !slices.Equal(keys(got), keys(want)) {
			t.Fatalf("/readyz answered %v, want %v", got, want)
		}
	}
	ready(http.StatusOK, map[string]string{"nats": "ok", "clickhouse": "ok"})
	down := errors.New("dial tcp 127.0.0.1:9000: connect: connection refused")
	clickhouse.Store(&down)
	ready(http.StatusServiceUnavailable, map[string]string{"nats": "ok", "clickhouse": down.Error()})
	clickhouse.Store(nil)
	ready(http.StatusOK, map[string]string{"nats": "ok", "clickhouse": "ok"})
}
