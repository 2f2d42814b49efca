package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// grafanaUnderSubPath stands in for a Grafana served from a sub-path
// (root_url https://host/grafana/, serve_from_sub_path): its API is under
// /grafana/api/, and its answers name dashboards by their path from the
// host, /grafana/d/<uid>/<slug>, as Grafana's do. takenBy maps titles to
// the uids of dashboards already in the folder: its search finds them (by a
// part of the title, as Grafana's does), and a dashboard posted with one of
// those titles answers with that one's uid, as Grafana does when it saves
// over a dashboard of the same title. posts counts the dashboards posted.
func grafanaUnderSubPath(t *testing.T, takenBy map[string]string) (srv *httptest.Server, posts *atomic.Int32) {
	t.Helper()
	posts = new(atomic.Int32)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /grafana/api/folders", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]map[string]string{{"uid": "deploywatch", "title": "deploywatch"}})
	})
	mux.HandleFunc("GET /grafana/api/search", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		hits := []map[string]any{}
		for title, uid := range takenBy {
			if strings.Contains(strings.ToLower(title), strings.ToLower(q.Get("query"))) &&
				(q.Get("folderUIDs") == "" || q.Get("folderUIDs") == "deploywatch") {
				hits = append(hits, map[string]any{"uid": uid, "title": title, "type": "dash-db",
					"url": "/grafana/d/" + uid + "/dashboard", "folderUid": "deploywatch", "folderTitle": "deploywatch"})
			}
		}
		json.NewEncoder(w).Encode(hits)
	})
	mux.HandleFunc("POST /grafana/api/dashboards/db", func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
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
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, posts
}

func TestDashboardsPushPrintsURLsUnderASubPath(t *testing.T) {
	srv, _ := grafanaUnderSubPath(t, nil)
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

// TestDashboardsPushStopsBeforeADashboardOfTheSameTitle: a dashboard in the
// folder with the title of one of ours and another uid stops the push
// before anything is written (Grafana would save ours over it), naming it.
func TestDashboardsPushStopsBeforeADashboardOfTheSameTitle(t *testing.T) {
	srv, posts := grafanaUnderSubPath(t, map[string]string{"deploywatch: fleet deploys": "h4nd3"})
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"dashboards", "push", "--grafana-url", srv.URL + "/grafana", "--token", "t"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "h4nd3") || !strings.Contains(err.Error(), srv.URL+"/grafana/d/h4nd3/dashboard") ||
		!strings.Contains(err.Error(), "delete that dashboard or rename it") {
		t.Fatalf("push over a dashboard of the same title: %v\n%s", err, out.String())
	}
	if n := posts.Load(); n != 0 || out.Len() != 0 {
		t.Errorf("push posted %d dashboards despite the conflict:\n%s", n, out.String())
	}
}
