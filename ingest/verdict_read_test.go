package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/schema"
)

// fakeVerdicts is an ingest.VerdictReader over fixed verdicts by deploy id;
// when err is set, every read fails with it.
type fakeVerdicts struct {
	verdicts map[string]*schema.Verdict

	mu    sync.Mutex
	err   error
	asked [][]string
}

var _ ingest.VerdictReader = (*fakeVerdicts)(nil)

func (f *fakeVerdicts) Latest(_ context.Context, id string) (*schema.Verdict, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, []string{id})
	if f.err != nil {
		return nil, f.err
	}
	if v, ok := f.verdicts[id]; ok {
		return v, nil
	}
	return nil, schema.ErrNotFound
}

func (f *fakeVerdicts) LatestFor(_ context.Context, ids []string) (map[string]*schema.Verdict, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, slices.Clone(ids))
	if f.err != nil {
		return nil, f.err
	}
	out := map[string]*schema.Verdict{}
	for _, id := range ids {
		if v, ok := f.verdicts[id]; ok {
			out[id] = v
		}
	}
	return out, nil
}

func (f *fakeVerdicts) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeVerdicts) lastAsked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[len(f.asked)-1]
}

// canaryVerdict is the final verdict of the canary deploy of deployStates.
func canaryVerdict() *schema.Verdict {
	at := func(s string) schema.Time {
		t, _ := time.Parse(time.RFC3339, s)
		return schema.At(t)
	}
	return &schema.Verdict{
		ID: "gha-checkout-8123456789-1:verdict:1772461500", Type: schema.TypeVerdict, DeployID: "gha-checkout-8123456789-1",
		Service: "checkout", Env: "prod", Version: "v2.14.0", PreviousVersion: "v2.13.2",
		Status: schema.VerdictBad, Score: 40, Final: true, Early: true,
		Reason:      "error rate 2.4x the baseline's on the canary instances of v2.14.0 (p < 0.001)",
		EvaluatedAt: at("2026-03-02T14:25:00Z"), Comparison: schema.CanaryVsBaseline,
		Baseline:  schema.Window{From: at("2026-03-02T14:05:00Z"), To: at("2026-03-02T14:25:00Z")},
		Candidate: schema.Window{From: at("2026-03-02T14:05:00Z"), To: at("2026-03-02T14:25:00Z")},
		Metrics: []schema.MetricVerdict{
			{Name: "error_rate", Class: schema.MetricHigh, Harm: "increase", Critical: true, Weight: 3,
				Baseline:  schema.Stats{N: 48211, Value: 0.0021, Requests: 48211, Errors: 101},
				Candidate: schema.Stats{N: 12040, Value: 0.0051, Requests: 12040, Errors: 61},
				Test:      "poisson_rate_ratio", PValue: 0.00002, Shift: 0.003, Ratio: 2.43, Effect: 1.43, Tolerance: 0.25},
		},
		Overlapping: []schema.DeployRef{{ID: "argo-search-551", Service: "search", Env: "prod", Version: "2026.03.01-3", StartedAt: at("2026-03-01T09:00:00Z")}},
	}
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

func TestReadDeploysWithVerdicts(t *testing.T) {
	verdicts := &fakeVerdicts{verdicts: map[string]*schema.Verdict{"gha-checkout-8123456789-1": canaryVerdict()}}
	h := start(t, setup{deploys: &fakeDeploys{deploys: deployStates()}, cfg: ingest.Config{Verdicts: verdicts}})

	// One deploy: the verdict object, whole.
	r := h.get("/api/v1/deploys/gha-checkout-8123456789-1")
	wantCode(t, r, http.StatusOK)
	var one struct {
		Verdict map[string]json.RawMessage `json:"verdict"`
	}
	if err := json.Unmarshal(r.body, &one); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"id", "deploy_id", "status", "score", "final", "early", "reason", "comparison", "evaluated_at",
		"baseline_window", "candidate_window", "metrics", "overlapping_deploys"} {
		if _, ok := one.Verdict[key]; !ok {
			t.Errorf("the verdict has no %q: %s", key, r.body)
		}
	}
	var d schema.DeployState
	r.json(t, &d)
	v, err := schema.DecodeVerdict(d.Verdict)
	if err != nil {
		t.Fatalf("the deploy's verdict does not decode: %v\n%s", err, d.Verdict)
	}
	if want := canaryVerdict(); v.Status != want.Status || v.Score != 40 || !v.Final || !v.Early || v.Reason != want.Reason ||
		!v.EvaluatedAt.Equal(want.EvaluatedAt.Time) || len(v.Metrics) != 1 || v.Metrics[0].PValue != 0.00002 || len(v.Overlapping) != 1 {
		t.Fatalf("verdict %+v, want %+v", v, want)
	}
	if got := verdicts.lastAsked(); !slices.Equal(got, []string{"gha-checkout-8123456789-1"}) {
		t.Fatalf("asked for the verdicts of %v", got)
	}

	// A deploy without a verdict: null.
	r = h.get("/api/v1/deploys/argo-search-551")
	wantCode(t, r, http.StatusOK)
	r.json(t, &d)
	if !isNull(d.Verdict) {
		t.Fatalf("verdict %s of a deploy without one, want null", d.Verdict)
	}

	// The list: one read for all deploys, each with its verdict or null.
	r = h.get("/api/v1/deploys")
	wantCode(t, r, http.StatusOK)
	var list struct {
		Deploys []schema.DeployState `json:"deploys"`
	}
	r.json(t, &list)
	if got := verdicts.lastAsked(); !slices.Equal(got, []string{"gha-checkout-8123456789-1", "gha-checkout-8123400001-1", "argo-search-551"}) {
		t.Fatalf("asked for the verdicts of %v, want all three listed deploys at once", got)
	}
	if len(list.Deploys) != 3 || isNull(list.Deploys[0].Verdict) || !isNull(list.Deploys[1].Verdict) || !isNull(list.Deploys[2].Verdict) {
		t.Fatalf("listed %+v, want the verdict on the first deploy only", list.Deploys)
	}
	if v, err := schema.DecodeVerdict(list.Deploys[0].Verdict); err != nil || v.ID != canaryVerdict().ID {
		t.Fatalf("listed verdict %s: %v", list.Deploys[0].Verdict, err)
	}

	// Verdicts that cannot be read: 503, not a deploy that seems to have none.
	verdicts.fail(errors.New("dial tcp 127.0.0.1:9000: connect: connection refused"))
	for _, path := range []string{"/api/v1/deploys", "/api/v1/deploys/gha-checkout-8123456789-1"} {
		r := h.get(path)
		wantCode(t, r, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("GET %s: 503 without Retry-After", path)
		}
	}
}
