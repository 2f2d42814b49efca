package ingest

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// IncidentReader reads incidents folded from their changes, with their
// durations.
type IncidentReader interface {
	ListIncidents(ctx context.Context, f schema.IncidentFilter) ([]schema.IncidentState, error)
	// GetIncident returns schema.ErrNotFound for an unknown id.
	GetIncident(ctx context.Context, id string) (schema.IncidentState, error)
}

// defaultIncidentsSince is how far back GET /api/v1/incidents looks without since.
const defaultIncidentsSince = 30 * 24 * time.Hour

func (a *API) listIncidents(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Incidents == nil {
		writeError(w, http.StatusServiceUnavailable, "no incident store is configured", nil)
		return
	}
	q := r.URL.Query()
	f := schema.IncidentFilter{Service: q.Get("service"), Env: q.Get("env"), Limit: 50, Since: time.Now().Add(-defaultIncidentsSince)}
	var problems []schema.FieldError
	if s := q.Get("since"); s != "" {
		since, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			problems = append(problems, schema.FieldError{Field: "since", Problem: "must be an RFC 3339 time such as 2026-11-22T10:04:05Z (in a URL, + as %2B); got " + strconv.Quote(s)})
		}
		f.Since = since
	}
	switch s := q.Get("status"); s {
	case "", schema.IncidentStateOpen, schema.IncidentStateResolved:
		f.Status = s
	default:
		problems = append(problems, schema.FieldError{Field: "status", Problem: "must be open or resolved; got " + strconv.Quote(s)})
	}
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
	incidents, err := a.cfg.Incidents.ListIncidents(r.Context(), f)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if incidents == nil {
		incidents = []schema.IncidentState{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": incidents})
}

func (a *API) getIncident(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Incidents == nil {
		writeError(w, http.StatusServiceUnavailable, "no incident store is configured", nil)
		return
	}
	in, err := a.cfg.Incidents.GetIncident(r.Context(), r.PathValue("id"))
	if errors.Is(err, schema.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no incident with id "+strconv.Quote(r.PathValue("id"))+" (an incident shows up here a moment after it was accepted)", nil)
		return
	}
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, in)
}
