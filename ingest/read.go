package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/schema"
)

func (a *API) listDeploys(w http.ResponseWriter, r *http.Request) {
	if a.deploys == nil {
		writeError(w, http.StatusServiceUnavailable, "no deploy store is configured", nil)
		return
	}
	q := r.URL.Query()
	f := schema.DeployFilter{Service: q.Get("service"), Env: q.Get("env"), Limit: 50}
	var problems []schema.FieldError
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			problems = append(problems, schema.FieldError{Field: "limit", Problem: "must be a whole number from 1 to 1000"})
		}
		f.Limit = n
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid query", problems)
		return
	}
	deploys, err := a.deploys.ListDeploys(r.Context(), f)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if deploys == nil {
		deploys = []schema.DeployState{}
	}
	if err := a.addVerdicts(r.Context(), deploys); err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deploys": deploys})
}

func (a *API) getDeploy(w http.ResponseWriter, r *http.Request) {
	if a.deploys == nil {
		writeError(w, http.StatusServiceUnavailable, "no deploy store is configured", nil)
		return
	}
	d, err := a.deploys.GetDeploy(r.Context(), r.PathValue("id"))
	if errors.Is(err, schema.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no deploy with id "+strconv.Quote(r.PathValue("id"))+" (a deploy shows up here a moment after its POST was accepted)", nil)
		return
	}
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if a.cfg.Verdicts != nil {
		v, err := a.cfg.Verdicts.Latest(r.Context(), d.ID)
		if err == nil {
			err = setVerdict(&d, v)
		}
		if err != nil && !errors.Is(err, schema.ErrNotFound) {
			a.storeError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, d)
}

// addVerdicts sets each deploy's verdict to its latest one; deploys without
// one keep null.
func (a *API) addVerdicts(ctx context.Context, deploys []schema.DeployState) error {
	if a.cfg.Verdicts == nil || len(deploys) == 0 {
		return nil
	}
	ids := make([]string, len(deploys))
	for i, d := range deploys {
		ids[i] = d.ID
	}
	verdicts, err := a.cfg.Verdicts.LatestFor(ctx, ids)
	if err != nil {
		return err
	}
	for i := range deploys {
		if err := setVerdict(&deploys[i], verdicts[deploys[i].ID]); err != nil {
			return err
		}
	}
	return nil
}

// setVerdict sets d's verdict to v; nil leaves it null.
func setVerdict(d *schema.DeployState, v *schema.Verdict) error {
	if v == nil {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("cannot encode the verdict of deploy %s: %w", d.ID, err)
	}
	d.Verdict = raw
	return nil
}

func (a *API) storeError(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Warn("cannot read from ClickHouse", "route", r.URL.Path, "err", err)
	w.Header().Set("Retry-After", a.retryAfter())
	writeError(w, http.StatusServiceUnavailable, "cannot read from ClickHouse right now: "+err.Error(), nil)
}

func (a *API) getSchema(w http.ResponseWriter, r *http.Request) {
	b, err := fs.ReadFile(schema.JSONSchemas, "jsonschema/"+r.PathValue("name")+".schema.json")
	if err != nil {
		writeError(w, http.StatusNotFound, "no JSON Schema named "+strconv.Quote(r.PathValue("name"))+": try deploy, metrics, incident, push or event", nil)
		return
	}
	w.Header().Set("Content-Type", "application/schema+json")
	_, _ = w.Write(b)
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 only when every dependency answers.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	status, code := map[string]string{}, http.StatusOK
	for name, check := range a.cfg.Checks {
		if err := check(ctx); err != nil {
			status[name] = err.Error()
			code = http.StatusServiceUnavailable
		} else {
			status[name] = "ok"
		}
	}
	writeJSON(w, code, status)
}

func (a *API) writeMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	a.metrics.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}
