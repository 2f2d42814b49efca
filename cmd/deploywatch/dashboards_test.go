package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/prometheus"

	"github.com/deploywatch/deploywatch/dashboards"
	"github.com/deploywatch/deploywatch/internal/testenv"
)

func TestDashboardsGenerateWritesDashboardsAndProvisioning(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"dashboards", "generate", "--out", dir, "--dashboards-path", "/srv/grafana/dw"}, &out, &errOut)
	if err != nil {
		t.Fatalf("dashboards generate: %s\n%s", err, errOut.String())
	}
	for _, f := range []string{
		"dashboards/deploywatch-service-impact.json", "dashboards/deploywatch-fleet.json",
		"dashboards/deploywatch-delivery.json", "dashboards/deploywatch-pipeline.json",
		"provisioning/datasources/deploywatch.yaml", "provisioning/dashboards/deploywatch.yaml",
	} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("generate did not write %s: %s", f, err)
			continue
		}
		if strings.HasSuffix(f, ".json") && !json.Valid(data) {
			t.Errorf("%s is not valid JSON", f)
		}
		if !strings.Contains(out.String(), "wrote "+f) {
			t.Errorf("generate did not report %s:\n%s", f, out.String())
		}
	}
	provider, _ := os.ReadFile(filepath.Join(dir, "provisioning/dashboards/deploywatch.yaml"))
	if !strings.Contains(string(provider), `path: "/srv/grafana/dw"`) {
		t.Errorf("the dashboard provider does not read --dashboards-path:\n%s", provider)
	}

	err = run(context.Background(), []string{"dashboards", "generate"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--out is required") {
		t.Errorf("generate without --out: %v", err)
	}
}

func TestDashboardsHelp(t *testing.T) {
	for _, args := range [][]string{{"dashboards", "--help"}, {"dashboards", "generate", "--help"}, {"dashboards", "push", "--help"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errOut.String(), "USAGE") {
			t.Errorf("%q: %v, usage:\n%s", args, err, errOut.String())
		}
	}
}

// TestDashboardsPushTwiceUpdates pushes to a stand-in for Grafana's API that
// keys dashboards by uid, twice: the second push updates every dashboard.
func TestDashboardsPushTwiceUpdates(t *testing.T) {
	var mu sync.Mutex
	versions := map[string]int{}
	folders := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"message":"invalid API key"}`))
			return
		}
		switch r.URL.Path {
		case "/api/folders":
			if r.Method == http.MethodGet {
				var list []map[string]string
				for uid, title := range folders {
					list = append(list, map[string]string{"uid": uid, "title": title})
				}
				json.NewEncoder(w).Encode(list)
				return
			}
			var f map[string]string
			json.NewDecoder(r.Body).Decode(&f)
			folders[f["uid"]] = f["title"]
			json.NewEncoder(w).Encode(f)
		case "/api/search": // no dashboard of another uid in the folder
			json.NewEncoder(w).Encode([]map[string]any{})
		case "/api/dashboards/db":
			var req struct {
				Dashboard struct{ UID string }
				Overwrite bool
			}
			json.NewDecoder(r.Body).Decode(&req)
			if !req.Overwrite {
				w.WriteHeader(http.StatusPreconditionFailed)
				return
			}
			versions[req.Dashboard.UID]++
			json.NewEncoder(w).Encode(map[string]any{"uid": req.Dashboard.UID, "status": "success",
				"version": versions[req.Dashboard.UID], "url": "/d/" + req.Dashboard.UID})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()

	push := func(token string) (string, error) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"dashboards", "push", "--grafana-url", srv.URL, "--token", token, "--folder", "Deploys"}, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	for i := 0; i < 2; i++ {
		if out, err := push("s3cret"); err != nil {
			t.Fatalf("push %d: %s\n%s", i+1, err, out)
		}
	}
	if len(folders) != 1 || folders["deploys"] != "Deploys" {
		t.Errorf("folders after two pushes: %v, want one, deploys", folders)
	}
	if len(versions) != 4 {
		t.Errorf("%d dashboards pushed, want 4: %v", len(versions), versions)
	}
	for uid, v := range versions {
		if v != 2 {
			t.Errorf("dashboard %s at version %d after two pushes, want 2", uid, v)
		}
	}
	out, err := push("wrong-t0ken")
	if err == nil || !strings.Contains(err.Error(), "check --token") || strings.Contains(err.Error()+out, "wrong-t0ken") {
		t.Errorf("push with a wrong token: %v\n%s\nwant advice to check --token, without the token", err, out)
	}
}

// TestPipelineDashboardReadsServesMetrics runs serve, sends it traffic, and
// checks that every metric the pipeline dashboard queries is on its /metrics,
// then has Debian's Prometheus scrape serve and evaluate every panel query,
// as Grafana would send it: each must answer series.
func TestPipelineDashboardReadsServesMetrics(t *testing.T) {
	p := startServe(t, testenv.ClickHouse(t), func(c *serveConfig) {
		c.impact.enabled = true // as serve runs by default
		c.alerts.enabled = true
	})
	batches, _ := trafficBatches("checkout", 200, 100, time.Now().UTC().Add(-time.Minute), 7)
	for _, b := range batches {
		if code, answer := p.post(t, "/api/v1/metrics", b); code != http.StatusAccepted {
			t.Fatalf("POST /api/v1/metrics: %d %v", code, answer)
		}
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		n := p.count(t, "SELECT count() FROM metric_samples")
		return n == 200, fmt.Sprintf("%d of 200 samples in ClickHouse", n)
	})

	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	nameRE := regexp.MustCompile(`deploywatch_[a-z_]+`)
	type panelQuery struct{ panel, expr string }
	var queries []panelQuery
	for _, d := range ds {
		if *d.Uid != dashboards.PipelineHealthUID {
			continue
		}
		for _, panel := range d.Panels {
			for _, q := range panel.Panel.Targets {
				pq, ok := q.(prometheus.Dataquery)
				if !ok {
					t.Fatalf("panel %s has a %T query", *panel.Panel.Title, q)
				}
				served := true
				for _, name := range nameRE.FindAllString(pq.Expr, -1) {
					// Webhook delivery runs only with --receivers.
					names[name] = !strings.HasPrefix(name, "deploywatch_delivery_")
					served = served && names[name]
				}
				if served {
					queries = append(queries, panelQuery{*panel.Panel.Title, pq.Expr})
				}
			}
		}
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metric names in the pipeline dashboard: %v", len(names), names)
	}
	var exposition string
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		resp, err := http.Get(p.api + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		exposition = string(data)
		var missing []string
		for name, served := range names {
			if served && !regexp.MustCompile(`(?m)^`+name+`[{ ]`).MatchString(exposition) {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		return len(missing) == 0, fmt.Sprintf("the pipeline dashboard queries metrics that serve's /metrics lacks: %v", missing)
	})

	// The queries, run by a real Prometheus that scrapes serve.
	promURL := testenv.Prometheus(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: deploywatch
    static_configs:
      - targets: [%q]
`, strings.TrimPrefix(p.api, "http://")))
	grafana := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")
	for _, q := range queries {
		expr := grafana.Replace(q.expr)
		testenv.Eventually(t, 30*time.Second, func() (bool, string) {
			n, err := promQuerySeries(promURL, expr)
			if err != nil {
				return false, fmt.Sprintf("panel %s: %s: %v", q.panel, expr, err)
			}
			return n > 0, fmt.Sprintf("panel %s: %s answered no series (%s)", q.panel, expr, promTargetHealth(promURL))
		})
	}
	t.Logf("Prometheus ran the pipeline dashboard's %d queries over serve's metrics", len(queries))
}

// promQuerySeries runs an instant PromQL query and counts the series of its
// answer; a query Prometheus cannot parse or run is an error.
func promQuerySeries(promURL, expr string) (int, error) {
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var answer struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return 0, fmt.Errorf("cannot decode Prometheus' answer (%d): %w", resp.StatusCode, err)
	}
	if answer.Status != "success" {
		return 0, fmt.Errorf("Prometheus: %s", answer.Error)
	}
	return len(answer.Data.Result), nil
}
