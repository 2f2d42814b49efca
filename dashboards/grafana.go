package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Grafana creates and updates dashboards through Grafana's HTTP API
// (/api/folders, /api/search, /api/dashboards/db), authenticated with a service account
// token. The token is sent only in the Authorization header and never
// appears in an error.
type Grafana struct {
	URL    string // e.g. https://grafana.example.com
	Token  string
	Client *http.Client // nil: http.DefaultClient
}

// PushResult is what Grafana answered for one dashboard.
type PushResult struct {
	UID     string `json:"uid"`
	URL     string `json:"url"`
	Status  string `json:"status"`
	Version int    `json:"version"`
}

// ErrUnauthorized is Grafana refusing the token.
var ErrUnauthorized = errors.New("grafana refused the token")

var folderUIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// FolderUID derives a folder uid from its title: the title's letters, digits,
// '-' and '_', at most 40 characters, "deploywatch" when nothing is left.
func FolderUID(title string) string {
	uid := strings.Trim(folderUIDUnsafe.ReplaceAllString(strings.ToLower(title), "-"), "-")
	if len(uid) > 40 {
		uid = uid[:40]
	}
	if uid == "" {
		uid = "deploywatch"
	}
	return uid
}

// EnsureFolder returns the uid of the folder titled title, creating it when
// no folder has that title.
func (g *Grafana) EnsureFolder(ctx context.Context, title string) (string, error) {
	var folders []struct {
		UID   string `json:"uid"`
		Title string `json:"title"`
	}
	if err := g.call(ctx, http.MethodGet, "/api/folders?limit=1000", nil, &folders); err != nil {
		return "", fmt.Errorf("cannot list Grafana folders: %w", err)
	}
	for _, f := range folders {
		if f.Title == title {
			return f.UID, nil
		}
	}
	uid := FolderUID(title)
	var created struct {
		UID string `json:"uid"`
	}
	err := g.call(ctx, http.MethodPost, "/api/folders", map[string]string{"uid": uid, "title": title}, &created)
	var apiErr *GrafanaError
	if errors.As(err, &apiErr) && apiErr.Code == http.StatusConflict {
		return uid, nil // created meanwhile, or a folder with this uid under another title
	}
	if err != nil {
		return "", fmt.Errorf("cannot create Grafana folder %q: %w", title, err)
	}
	if created.UID == "" {
		created.UID = uid
	}
	return created.UID, nil
}

// PushAll creates or updates ds in the folder folderUID, after checking
// with TitleConflicts that none would be saved over another dashboard:
// when one would, it pushes nothing and returns a *TitleConflictError. The
// results are those of the dashboards pushed, in order, up to an error.
func (g *Grafana) PushAll(ctx context.Context, ds []dashboard.Dashboard, folderUID string) ([]PushResult, error) {
	if err := g.TitleConflicts(ctx, ds, folderUID); err != nil {
		return nil, err
	}
	var out []PushResult
	for _, d := range ds {
		res, err := g.Push(ctx, d, folderUID)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

// searchHit is one dashboard of Grafana's GET /api/search.
type searchHit struct {
	UID       string `json:"uid"`
	Title     string `json:"title"`
	URL       string `json:"url"`
	Type      string `json:"type"`
	FolderUID string `json:"folderUid"`
}

// TitleConflicts looks up the titles of ds in the folder folderUID (Grafana's
// search API) and returns a *TitleConflictError naming every dashboard there
// that has the title of one of ds and another uid: Grafana, matching by
// title within a folder, would save ours over it under its uid. Grafana
// compares slugs (older versions) or titles (newer ones, case-insensitively
// on MySQL): both count here. The hits' folderUid is checked too, so a
// Grafana that ignores folderUIDs (it came after folderIds) still gives the
// right answer.
func (g *Grafana) TitleConflicts(ctx context.Context, ds []dashboard.Dashboard, folderUID string) error {
	var conflicts []TitleConflict
	for _, d := range ds {
		if d.Title == nil || d.Uid == nil {
			continue
		}
		q := url.Values{"type": {"dash-db"}, "query": {*d.Title}, "limit": {"5000"}}
		if folderUID != "" {
			q.Set("folderUIDs", folderUID)
		}
		var hits []searchHit
		if err := g.call(ctx, http.MethodGet, "/api/search?"+q.Encode(), nil, &hits); err != nil {
			return fmt.Errorf("cannot look up dashboards titled %q in the Grafana folder %s: %w", *d.Title, folderUID, err)
		}
		for _, h := range hits {
			if h.UID == *d.Uid || (h.Type != "" && h.Type != "dash-db") || h.FolderUID != folderUID {
				continue
			}
			if strings.EqualFold(h.Title, *d.Title) || slugify(h.Title) == slugify(*d.Title) {
				conflicts = append(conflicts, TitleConflict{UID: *d.Uid, Title: *d.Title,
					ExistingUID: h.UID, ExistingTitle: h.Title, ExistingURL: g.URLOf(h.URL)})
			}
		}
	}
	if len(conflicts) > 0 {
		return &TitleConflictError{FolderUID: folderUID, Conflicts: conflicts}
	}
	return nil
}

var slugUnsafe = regexp.MustCompile(`[^\p{L}\p{N}]+`)

// slugify is near enough Grafana's slug of a title: lower case, runs of
// anything but letters and digits one '-'.
func slugify(title string) string {
	return strings.Trim(slugUnsafe.ReplaceAllString(strings.ToLower(title), "-"), "-")
}

// TitleConflict is a dashboard of ours and one in the folder with its title.
type TitleConflict struct {
	UID, Title                              string // ours
	ExistingUID, ExistingTitle, ExistingURL string // the one in the folder
}

// TitleConflictError is the folder holding dashboards that Grafana would
// save ours over: nothing was pushed.
type TitleConflictError struct {
	FolderUID string
	Conflicts []TitleConflict
}

func (e *TitleConflictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cannot push the dashboards into the Grafana folder %s: ", e.FolderUID)
	for i, c := range e.Conflicts {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "it already has a dashboard titled %q with uid %s (%s), which Grafana would overwrite with %s, keeping its uid",
			c.ExistingTitle, c.ExistingUID, c.ExistingURL, c.UID)
	}
	if len(e.Conflicts) == 1 {
		b.WriteString(": delete that dashboard or rename it, then push again (nothing was pushed)")
	} else {
		b.WriteString(": delete those dashboards or rename them, then push again (nothing was pushed)")
	}
	return b.String()
}

// Push creates or updates d in the folder folderUID ("" is General). Grafana
// keys dashboards by uid: pushing again updates the same dashboard.
//
// Grafana also matches a dashboard by its title within the folder: with
// overwrite, a dashboard of the same title (slug) and another uid is
// overwritten and keeps its own uid, so d would not be at /d/<its uid>.
// PushAll checks for one first; should one appear meanwhile (or escape the
// search), Push returns a *TakenOverError naming it, after the fact.
func (g *Grafana) Push(ctx context.Context, d dashboard.Dashboard, folderUID string) (PushResult, error) {
	d.Id = nil // Grafana finds the dashboard by uid; an id from elsewhere would not match
	body := map[string]any{
		"dashboard": d,
		"folderUid": folderUID,
		"overwrite": true,
		"message":   "deploywatch dashboards push",
	}
	var res PushResult
	if err := g.call(ctx, http.MethodPost, "/api/dashboards/db", body, &res); err != nil {
		return PushResult{}, fmt.Errorf("cannot push dashboard %s: %w", *d.Uid, err)
	}
	if res.UID != *d.Uid {
		title := ""
		if d.Title != nil {
			title = *d.Title
		}
		return PushResult{}, &TakenOverError{UID: *d.Uid, Title: title, ExistingUID: res.UID, ExistingURL: g.URLOf(res.URL)}
	}
	return res, nil
}

// TakenOverError is Grafana having saved a dashboard over another one of the
// same title in the folder, which kept its own uid.
type TakenOverError struct {
	UID, Title               string // the dashboard pushed
	ExistingUID, ExistingURL string // the one Grafana saved it over
}

func (e *TakenOverError) Error() string {
	return fmt.Sprintf("cannot push dashboard %s: the folder already has a dashboard titled %q with uid %s (%s), "+
		"and Grafana saved this one over it under that uid, so /d/%s and the links to it do not reach it: "+
		"delete that dashboard or rename it, then push again (Grafana keeps what it held before in its version history)",
		e.UID, e.Title, e.ExistingUID, e.ExistingURL, e.UID)
}

// URLOf is the address of path (a dashboard's url in Grafana's answers,
// which starts with Grafana's sub-path, e.g. /grafana/d/uid/slug) on this
// Grafana, without any password of the base URL.
func (g *Grafana) URLOf(path string) string {
	base, err := url.Parse(strings.TrimRight(g.URL, "/") + "/")
	if err != nil {
		return path
	}
	ref, err := url.Parse(path)
	if err != nil {
		return path
	}
	return base.ResolveReference(ref).Redacted()
}

// GrafanaError is an answer other than 2xx.
type GrafanaError struct {
	Method, Path string
	Code         int
	Message      string
}

func (e *GrafanaError) Error() string {
	hint := ""
	switch e.Code {
	case http.StatusUnauthorized:
		hint = ": check --token (a Grafana service account token, sent as a bearer token)"
	case http.StatusForbidden:
		hint = ": the token's service account needs the Editor role (or dashboards and folders write permissions)"
	case http.StatusNotFound:
		hint = ": check --grafana-url (Grafana's base URL, without /api)"
	case http.StatusBadRequest:
		if strings.Contains(strings.ToLower(e.Message), "provisioned") {
			hint = ": Grafana provisions this dashboard from files (its provisioning/dashboards), and a provisioned " +
				"dashboard cannot be saved through the API: update the files instead (deploywatch dashboards generate " +
				"into the provider's path; Grafana reloads them), or remove the dashboard from the file provisioning " +
				"to manage it with push"
		}
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Code)
	}
	return fmt.Sprintf("%s %s: Grafana answered %d %s%s", e.Method, e.Path, e.Code, msg, hint)
}

func (e *GrafanaError) Unwrap() error {
	if e.Code == http.StatusUnauthorized {
		return ErrUnauthorized
	}
	return nil
}

func (g *Grafana) call(ctx context.Context, method, path string, body, into any) error {
	base, err := url.Parse(strings.TrimRight(g.URL, "/"))
	if err != nil || base.Scheme == "" || base.Host == "" {
		return fmt.Errorf("invalid Grafana URL %q: want e.g. https://grafana.example.com", g.URL)
	}
	var reqBody io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("cannot encode the request: %w", err)
		}
		reqBody = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, base.String()+path, reqBody)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.Token)
	}
	client := g.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach Grafana at %s: %w", base.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("cannot read Grafana's answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var answer struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(data, &answer) // the message is a courtesy; the status decides
		return &GrafanaError{Method: method, Path: path, Code: resp.StatusCode, Message: answer.Message}
	}
	if into != nil {
		if err := json.Unmarshal(data, into); err != nil {
			return fmt.Errorf("cannot decode Grafana's answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}
