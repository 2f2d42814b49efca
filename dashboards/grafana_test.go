package dashboards_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/deploywatch/deploywatch/dashboards"
)

// fakeGrafana answers the part of Grafana's HTTP API that push uses, as
// Grafana does: bearer token auth, folders by uid and title, dashboards keyed
// by uid (overwrite updates and bumps the version; without overwrite an
// existing uid is 412), a dashboard's title unique within its folder.
type fakeGrafana struct {
	token string

	mu         sync.Mutex
	folders    map[string]string // uid → title
	dashboards map[string]storedDashboard
	requests   []string
}

type storedDashboard struct {
	folder, title string
	version       int
	json          map[string]any
}

func newFakeGrafana(t *testing.T, token string) (*fakeGrafana, *httptest.Server) {
	g := &fakeGrafana{token: token, folders: map[string]string{}, dashboards: map[string]storedDashboard{}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func (g *fakeGrafana) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, r.Method+" "+r.URL.Path)
	answer := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	if r.Header.Get("Authorization") != "Bearer "+g.token {
		answer(http.StatusUnauthorized, map[string]string{"message": "invalid API key"})
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/folders":
		list := []map[string]string{}
		for uid, title := range g.folders {
			list = append(list, map[string]string{"uid": uid, "title": title})
		}
		answer(http.StatusOK, list)
	case r.Method == http.MethodPost && r.URL.Path == "/api/folders":
		var req struct{ UID, Title string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Title == "" {
			answer(http.StatusBadRequest, map[string]string{"message": "bad folder"})
			return
		}
		if _, ok := g.folders[req.UID]; ok {
			answer(http.StatusConflict, map[string]string{"message": "a folder with the same uid already exists"})
			return
		}
		g.folders[req.UID] = req.Title
		answer(http.StatusOK, map[string]any{"uid": req.UID, "title": req.Title})
	case r.Method == http.MethodPost && r.URL.Path == "/api/dashboards/db":
		var req struct {
			Dashboard map[string]any `json:"dashboard"`
			FolderUID string         `json:"folderUid"`
			Overwrite bool           `json:"overwrite"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			answer(http.StatusBadRequest, map[string]string{"message": err.Error()})
			return
		}
		uid, _ := req.Dashboard["uid"].(string)
		title, _ := req.Dashboard["title"].(string)
		if uid == "" || title == "" {
			answer(http.StatusBadRequest, map[string]string{"message": "dashboard needs uid and title"})
			return
		}
		if _, ok := g.folders[req.FolderUID]; !ok && req.FolderUID != "" {
			answer(http.StatusBadRequest, map[string]string{"message": "folder not found"})
			return
		}
		for other, d := range g.dashboards {
			if other != uid && d.folder == req.FolderUID && d.title == title {
				answer(http.StatusPreconditionFailed, map[string]string{"message": "a dashboard with the same name in the folder already exists"})
				return
			}
		}
		old, exists := g.dashboards[uid]
		if exists && !req.Overwrite {
			answer(http.StatusPreconditionFailed, map[string]string{"message": "a dashboard with the same uid already exists"})
			return
		}
		g.dashboards[uid] = storedDashboard{folder: req.FolderUID, title: title, version: old.version + 1, json: req.Dashboard}
		answer(http.StatusOK, map[string]any{"uid": uid, "status": "success", "version": old.version + 1, "url": "/d/" + uid})
	default:
		answer(http.StatusNotFound, map[string]string{"message": "not found"})
	}
}

func TestPushIsIdempotentByUID(t *testing.T) {
	fake, srv := newFakeGrafana(t, "glsa_secret")
	g := &dashboards.Grafana{URL: srv.URL + "/", Token: "glsa_secret"}
	ctx := context.Background()
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	push := func() {
		t.Helper()
		folder, err := g.EnsureFolder(ctx, "deploywatch")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			res, err := g.Push(ctx, d, folder)
			if err != nil {
				t.Fatal(err)
			}
			if res.UID != *d.Uid || res.Status != "success" {
				t.Fatalf("push of %s: %+v", *d.Uid, res)
			}
		}
	}
	push()
	push()
	if len(fake.folders) != 1 {
		t.Errorf("%d folders after two pushes, want 1: %v", len(fake.folders), fake.folders)
	}
	if len(fake.dashboards) != len(ds) {
		t.Errorf("%d dashboards after two pushes of %d, want %d", len(fake.dashboards), len(ds), len(ds))
	}
	for _, d := range ds {
		stored, ok := fake.dashboards[*d.Uid]
		if !ok {
			t.Errorf("dashboard %s was not pushed", *d.Uid)
			continue
		}
		if stored.version != 2 || stored.folder != "deploywatch" {
			t.Errorf("dashboard %s: version %d in folder %q, want version 2 (updated, not duplicated) in deploywatch",
				*d.Uid, stored.version, stored.folder)
		}
		if _, hasID := stored.json["id"]; hasID {
			t.Errorf("dashboard %s was pushed with an id; Grafana must find it by uid", *d.Uid)
		}
	}
}

func TestPushFindsAnExistingFolderByTitle(t *testing.T) {
	fake, srv := newFakeGrafana(t, "tok")
	fake.folders["abc123"] = "Deploys"
	g := &dashboards.Grafana{URL: srv.URL, Token: "tok"}
	uid, err := g.EnsureFolder(context.Background(), "Deploys")
	if err != nil {
		t.Fatal(err)
	}
	if uid != "abc123" || len(fake.folders) != 1 {
		t.Errorf("EnsureFolder = %q with folders %v; want the existing abc123", uid, fake.folders)
	}
}

func TestPushErrorsSayWhatToDo(t *testing.T) {
	_, srv := newFakeGrafana(t, "right-token")
	g := &dashboards.Grafana{URL: srv.URL, Token: "wrong-token-value"}
	_, err := g.EnsureFolder(context.Background(), "deploywatch")
	if !errors.Is(err, dashboards.ErrUnauthorized) {
		t.Fatalf("with a wrong token: %v, want ErrUnauthorized", err)
	}
	if !strings.Contains(err.Error(), "check --token") || strings.Contains(err.Error(), "wrong-token-value") {
		t.Errorf("the error should say to check --token and never show the token: %s", err)
	}

	g = &dashboards.Grafana{URL: srv.URL + "/grafana", Token: "right-token"} // a wrong base path
	_, err = g.EnsureFolder(context.Background(), "deploywatch")
	if err == nil || !strings.Contains(err.Error(), "check --grafana-url") {
		t.Errorf("with a wrong URL: %v, want advice to check --grafana-url", err)
	}

	g = &dashboards.Grafana{URL: "grafana.example.com", Token: "right-token"}
	if _, err := g.EnsureFolder(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), "https://") {
		t.Errorf("with a URL without scheme: %v, want an example URL", err)
	}
}

func TestFolderUID(t *testing.T) {
	f := func(title, want string) {
		t.Helper()
		if got := dashboards.FolderUID(title); got != want {
			t.Errorf("FolderUID(%q) = %q, want %q", title, got, want)
		}
	}
	f("deploywatch", "deploywatch")
	f("Team Payments / Deploys", "team-payments-deploys")
	f("…", "deploywatch")
	f(strings.Repeat("a", 50), strings.Repeat("a", 40))
}
