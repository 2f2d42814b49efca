package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// grafanaUnderSubPath stands in for a Grafana served from a sub-path
// (root_url https://host/grafana/, serve_from_sub_path): its API is under
// /grafana/api/, and its answers name dashboards by their path from the
// host, /grafana/d/<uid>/<slug>, as Grafana's do. A dashboard titled as
// one in takenBy answers with that one's uid, as Grafana does when it saves
// over a dashboard of the same title.
func grafanaUnderSubPath(t *testing.T, takenBy map[string]string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /grafana/api/folders", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]map[string]string{{"uid": "deploywatch", "title": "deploywatch"}})
	})
	mux.HandleFunc("POST /grafana/api/dashboards/db", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Dashboard struct{ UID, Title string }
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"message":"bad request"}`, http.StatusBadRequest)
			return
		}
		uid := req.Dashboard.UID
		if other, ok := takenBy[req.Dashboard.Title]; ok {
			uid = other
		}
		json.NewEncoder(w).Encode(map[string]any{"uid": uid, "status": "success", "version": 1,
			"url": "/grafana/d/" + uid + "/dashboard"})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestDashboardsPushPrintsURLsUnderASubPath(t *testing.T) {
	srv := grafanaUnderSubPath(t, nil)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"dashboards", "push", "--grafana-url", srv.URL + "/grafana/", "--token", "t"}, &out, &errOut)
	if err != nil {
		t.Fatalf("push: %s\n%s", err, errOut.String())
	}
	want := "success deploywatch-fleet (version 1) " + srv.URL + "/grafana/d/deploywatch-fleet/dashboard\n"
	if !strings.Contains(out.String(), want) || strings.Contains(out.String(), "/grafana/grafana") {
		t.Errorf("push printed:\n%s\nwant lines like %q, the sub-path once", out.String(), want)
	}
}

func TestDashboardsPushStopsAtADashboardItSavedOver(t *testing.T) {
	srv := grafanaUnderSubPath(t, map[string]string{"deploywatch: fleet deploys": "h4nd3"})
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"dashboards", "push", "--grafana-url", srv.URL + "/grafana", "--token", "t"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "h4nd3") || !strings.Contains(err.Error(), srv.URL+"/grafana/d/h4nd3/dashboard") ||
		!strings.Contains(err.Error(), "delete that dashboard or rename it") {
		t.Fatalf("push over a dashboard of the same title: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "deploywatch-fleet") {
		t.Errorf("push reported the fleet dashboard as pushed:\n%s", out.String())
	}
}
