package dashboards_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/deploywatch/deploywatch/dashboards"
)

// fakeGrafana answers the part of Grafana's HTTP API that push uses, as
// Grafana does (pkg/services/dashboards/database: getExistingDashboardByIDOrUIDForUpdate,
// then getExistingDashboardByTitleAndFolder): bearer token auth, folders by
// uid and title, dashboards keyed by uid (overwrite updates and bumps the
// version; without overwrite an existing uid is 412), a dashboard's title
// (its slug) unique within its folder: without overwrite another dashboard
// of the same title is 412, with overwrite Grafana saves over that one and
// it keeps its uid. Its search (/api/search) finds dashboards by a part of
// their title, in the folders asked for. Dashboards provisioned from files cannot be saved (400).
// Answers name a dashboard's url with Grafana's sub-path, /d/<uid>/<slug>.
type fakeGrafana struct {
	token   string
	subPath string // Grafana's root_url path, e.g. /grafana; "" at the root

	mu          sync.Mutex
	folders     map[string]string // uid → title
	dashboards  map[string]storedDashboard
	provisioned map[string]bool // uids
	requests    []string
}

type storedDashboard struct {
	folder, title string
	version       int
	json          map[string]any
}

func newFakeGrafana(t *testing.T, token string) (*fakeGrafana, *httptest.Server) {
	g := &fakeGrafana{token: token, folders: map[string]string{}, dashboards: map[string]storedDashboard{}, provisioned: map[string]bool{}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

// slug is Grafana's slugify of a title, near enough for these titles.
func slug(title string) string {
	return strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(title), "-"), "-")
}

func (g *fakeGrafana) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, r.Method+" "+r.URL.Path)
	path, ok := strings.CutPrefix(r.URL.Path, g.subPath)
	if !ok {
		http.NotFound(w, r)
		return
	}
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
	case r.Method == http.MethodGet && path == "/api/folders":
		list := []map[string]string{}
		for uid, title := range g.folders {
			list = append(list, map[string]string{"uid": uid, "title": title})
		}
		answer(http.StatusOK, list)
	case r.Method == http.MethodPost && path == "/api/folders":
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
	case r.Method == http.MethodGet && path == "/api/search":
		// As Grafana's search: the query matches titles that contain it,
		// case-insensitively; folderUIDs (repeatable) and type narrow it.
		q := r.URL.Query()
		query, folders, typ := strings.ToLower(q.Get("query")), q["folderUIDs"], q.Get("type")
		hits := []map[string]any{}
		if typ == "" || typ == "dash-db" {
			for uid, d := range g.dashboards {
				if !strings.Contains(strings.ToLower(d.title), query) || (len(folders) > 0 && !slices.Contains(folders, d.folder)) {
					continue
				}
				hit := map[string]any{"id": len(hits) + 1, "uid": uid, "title": d.title, "uri": "db/" + slug(d.title),
					"url": g.subPath + "/d/" + uid + "/" + slug(d.title), "slug": "", "type": "dash-db", "tags": []string{},
					"isStarred": false, "sortMeta": 0}
				if d.folder != "" {
					hit["folderUid"], hit["folderTitle"], hit["folderUrl"] = d.folder, g.folders[d.folder], g.subPath+"/dashboards/f/"+d.folder+"/"
				}
				hits = append(hits, hit)
			}
		}
		answer(http.StatusOK, hits)
	case r.Method == http.MethodPost && path == "/api/dashboards/db":
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
		old, exists := g.dashboards[uid]
		if exists && !req.Overwrite {
			answer(http.StatusPreconditionFailed, map[string]string{"message": "a dashboard with the same uid already exists"})
			return
		}
		for other, d := range g.dashboards {
			if other != uid && d.folder == req.FolderUID && slug(d.title) == slug(title) {
				if !req.Overwrite {
					answer(http.StatusPreconditionFailed, map[string]string{"message": "a dashboard with the same name in the folder already exists"})
					return
				}
				uid, old = other, d // Grafana takes the other one's id, uid and version
				req.Dashboard["uid"] = other
			}
		}
		if g.provisioned[uid] {
			answer(http.StatusBadRequest, map[string]string{"message": "Cannot save provisioned dashboard"})
			return
		}
		g.dashboards[uid] = storedDashboard{folder: req.FolderUID, title: title, version: old.version + 1, json: req.Dashboard}
		answer(http.StatusOK, map[string]any{"uid": uid, "status": "success", "version": old.version + 1,
			"url": g.subPath + "/d/" + uid + "/" + slug(title), "slug": slug(title)})
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

// TestPushRefusesADashboardItWasSavedOver: a dashboard of the same title
// and another uid in the folder (made by hand, or imported from a JSON file
// without its uid) takes the push under its own uid, as Grafana does; push
// says which dashboard that is and what to do, instead of reporting success
// for a dashboard that /d/deploywatch-... does not reach.
func TestPushRefusesADashboardItWasSavedOver(t *testing.T) {
	fake, srv := newFakeGrafana(t, "tok")
	fake.subPath = "/grafana"
	fake.folders["deploywatch"] = "deploywatch"
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	var delivery dashboard.Dashboard
	for _, d := range ds {
		if *d.Uid == dashboards.DeliveryUID {
			delivery = d
		}
	}
	fake.dashboards["a1b2c3"] = storedDashboard{folder: "deploywatch", title: *delivery.Title, version: 4}
	g := &dashboards.Grafana{URL: srv.URL + "/grafana/", Token: "tok"}

	_, err = g.Push(context.Background(), delivery, "deploywatch")
	var taken *dashboards.TakenOverError
	if !errors.As(err, &taken) {
		t.Fatalf("push over a dashboard of the same title: %v, want a TakenOverError", err)
	}
	wantURL := srv.URL + "/grafana/d/a1b2c3/" + slug(*delivery.Title)
	if taken.ExistingUID != "a1b2c3" || taken.ExistingURL != wantURL || taken.UID != dashboards.DeliveryUID {
		t.Errorf("the error names %+v, want uid a1b2c3 at %s", taken, wantURL)
	}
	for _, want := range []string{*delivery.Title, "a1b2c3", wantURL, "delete", "rename", dashboards.DeliveryUID} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %s", want, err)
		}
	}
	if _, ok := fake.dashboards[dashboards.DeliveryUID]; ok || fake.dashboards["a1b2c3"].version != 5 {
		t.Errorf("the fake did not do what Grafana does (save over a1b2c3 and keep its uid): %v", fake.dashboards)
	}

	// Once the other dashboard is gone, the push lands on its own uid.
	delete(fake.dashboards, "a1b2c3")
	res, err := g.Push(context.Background(), delivery, "deploywatch")
	if err != nil || res.UID != dashboards.DeliveryUID || g.URLOf(res.URL) != srv.URL+"/grafana/d/"+dashboards.DeliveryUID+"/"+slug(*delivery.Title) {
		t.Fatalf("push after deleting it: %+v, %v", res, err)
	}
}

// TestPushAllWritesNothingOverADashboardOfTheSameTitle: when the folder
// has a dashboard titled as one of ours under another uid, PushAll finds it
// before it writes anything, names it and says what to do; Grafana's answers
// would otherwise have shown it only after saving over it, with the
// dashboards before it already updated.
func TestPushAllWritesNothingOverADashboardOfTheSameTitle(t *testing.T) {
	fake, srv := newFakeGrafana(t, "tok")
	fake.subPath = "/grafana"
	fake.folders["deploywatch"] = "deploywatch"
	fake.folders["other"] = "other"
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	last := ds[len(ds)-1] // after every other one: none of them may be written
	fake.dashboards["h4nd3"] = storedDashboard{folder: "deploywatch", title: *last.Title, version: 4}
	// Not conflicts: the same title in another folder, a title that only
	// contains ours.
	fake.dashboards["elsewhere"] = storedDashboard{folder: "other", title: *ds[0].Title, version: 1}
	fake.dashboards["longer"] = storedDashboard{folder: "deploywatch", title: *ds[0].Title + " (old)", version: 1}
	before := maps.Clone(fake.dashboards)
	g := &dashboards.Grafana{URL: srv.URL + "/grafana", Token: "tok"}

	res, err := g.PushAll(context.Background(), ds, "deploywatch")
	var conflict *dashboards.TitleConflictError
	if !errors.As(err, &conflict) || len(res) != 0 {
		t.Fatalf("PushAll into a folder with a dashboard titled %q: %v, %v; want a TitleConflictError", *last.Title, res, err)
	}
	wantURL := srv.URL + "/grafana/d/h4nd3/" + slug(*last.Title)
	want := dashboards.TitleConflict{UID: *last.Uid, Title: *last.Title, ExistingUID: "h4nd3", ExistingTitle: *last.Title, ExistingURL: wantURL}
	if len(conflict.Conflicts) != 1 || conflict.Conflicts[0] != want {
		t.Errorf("conflicts %+v, want only %+v", conflict.Conflicts, want)
	}
	for _, w := range []string{*last.Title, "h4nd3", wantURL, "delete", "rename", "nothing was pushed"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not say %q: %s", w, err)
		}
	}
	for _, req := range fake.requests {
		if strings.HasPrefix(req, "POST ") {
			t.Errorf("PushAll wrote to Grafana despite the conflict: %s", req)
		}
	}
	if !reflect.DeepEqual(fake.dashboards, before) {
		t.Errorf("the dashboards changed: %v, were %v", fake.dashboards, before)
	}

	// Renamed, it is no longer in the way: every dashboard lands on its uid.
	d := fake.dashboards["h4nd3"]
	d.title = "hand-made copy"
	fake.dashboards["h4nd3"] = d
	res, err = g.PushAll(context.Background(), ds, "deploywatch")
	if err != nil || len(res) != len(ds) {
		t.Fatalf("PushAll after the rename: %v, %v", res, err)
	}
	for i, r := range res {
		if r.UID != *ds[i].Uid {
			t.Errorf("dashboard %s pushed as %s", *ds[i].Uid, r.UID)
		}
	}
}

func TestPushOfAProvisionedDashboardSaysSo(t *testing.T) {
	fake, srv := newFakeGrafana(t, "tok")
	fake.provisioned[dashboards.FleetUID] = true
	fake.dashboards[dashboards.FleetUID] = storedDashboard{folder: "deploywatch", title: "deploywatch: fleet deploys", version: 1}
	fake.folders["deploywatch"] = "deploywatch"
	ds, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	g := &dashboards.Grafana{URL: srv.URL, Token: "tok"}
	for _, d := range ds {
		if *d.Uid != dashboards.FleetUID {
			continue
		}
		_, err := g.Push(context.Background(), d, "deploywatch")
		if err == nil || !strings.Contains(err.Error(), "Cannot save provisioned dashboard") ||
			!strings.Contains(err.Error(), "deploywatch dashboards generate") || !strings.Contains(err.Error(), "provisioning") {
			t.Errorf("push of a provisioned dashboard: %v, want Grafana's message and what to do instead", err)
		}
	}
}

func TestURLOf(t *testing.T) {
	f := func(base, path, want string) {
		t.Helper()
		if got := (&dashboards.Grafana{URL: base}).URLOf(path); got != want {
			t.Errorf("URLOf(%q) on %s = %q, want %q", path, base, got, want)
		}
	}
	f("https://grafana.example.com", "/d/x/y", "https://grafana.example.com/d/x/y")
	f("https://grafana.example.com/", "/d/x/y", "https://grafana.example.com/d/x/y")
	// Grafana's answers carry its sub-path: it must not appear twice.
	f("https://example.com/grafana", "/grafana/d/x/y", "https://example.com/grafana/d/x/y")
	f("https://example.com/grafana/", "/grafana/d/x/y", "https://example.com/grafana/d/x/y")
	f("https://admin:secret@example.com", "/d/x", "https://admin:xxxxx@example.com/d/x")
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
