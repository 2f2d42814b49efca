package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// AlertReader reads alerts, their acknowledgements and the silences from the
// projection.
type AlertReader interface {
	ListAlerts(ctx context.Context, f schema.AlertFilter) ([]schema.AlertState, error)
	// GetAlert returns schema.ErrNotFound for an unknown alert id.
	GetAlert(ctx context.Context, alertID string) (schema.AlertState, error)
	// ActiveSilences returns the silences that have not ended at t.
	ActiveSilences(ctx context.Context, t time.Time) ([]schema.Silence, error)
}

// maxSilence bounds a silence: a longer one is better written as a rule
// change (match, or dry_run).
const maxSilence = 90 * 24 * time.Hour

// silenceRequest is the body of POST /api/v1/silences.
type silenceRequest struct {
	// ID is optional: without one it is derived from the rest, so that a
	// request sent again makes no second silence.
	ID      string `json:"id"`
	Service string `json:"service"`
	Env     string `json:"env"`
	Rule    string `json:"rule"`
	// Duration (Go syntax: 30m, 2h) or EndsAt says when it ends; StartsAt
	// defaults to now.
	Duration  string      `json:"duration"`
	StartsAt  schema.Time `json:"starts_at"`
	EndsAt    schema.Time `json:"ends_at"`
	CreatedBy string      `json:"created_by"`
	Comment   string      `json:"comment"`
}

func (a *API) postSilence(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	var req silenceRequest
	if err := decodeAlertRequest(body, &req); err != nil {
		a.reject(w, err)
		return
	}
	now := time.Now().UTC().Truncate(time.Second)
	s := &schema.Silence{
		ID: strings.TrimSpace(req.ID), Type: schema.TypeSilence,
		Service: strings.TrimSpace(req.Service), Env: strings.TrimSpace(req.Env), Rule: strings.TrimSpace(req.Rule),
		StartsAt: req.StartsAt, EndsAt: req.EndsAt, CreatedBy: strings.TrimSpace(req.CreatedBy), Comment: req.Comment,
		CreatedAt: schema.At(now),
	}
	if s.StartsAt.IsZero() {
		s.StartsAt = schema.At(now)
	}
	var probs []schema.FieldError
	switch {
	case req.Duration != "" && !req.EndsAt.IsZero():
		probs = append(probs, schema.FieldError{Field: "duration", Problem: "and ends_at are both set: send one of them"})
	case req.Duration != "":
		d, err := time.ParseDuration(req.Duration)
		if err != nil || d <= 0 {
			probs = append(probs, schema.FieldError{Field: "duration", Problem: "must be a positive duration such as 30m, 2h or 72h; got " + strconv.Quote(req.Duration)})
		} else {
			s.EndsAt = schema.At(s.StartsAt.Add(d))
		}
	case req.EndsAt.IsZero():
		probs = append(probs, schema.FieldError{Field: "duration", Problem: "or ends_at is required: how long the silence lasts (30m, 2h) or when it ends"})
	}
	if !s.EndsAt.IsZero() && !s.StartsAt.IsZero() {
		if s.EndsAt.Sub(s.StartsAt.Time) > maxSilence {
			probs = append(probs, schema.FieldError{Field: "ends_at", Problem: "is more than 90 days after starts_at: change the rules (match, dry_run) instead"})
		}
		if !s.EndsAt.After(now) {
			probs = append(probs, schema.FieldError{Field: "ends_at", Problem: "is not in the future: the silence would never apply"})
		}
	}
	if s.ID == "" && !s.StartsAt.Time.IsZero() && !s.EndsAt.Time.IsZero() {
		s.ID = schema.NewSilenceID(s)
	}
	if err := s.Validate(); err != nil {
		var verr *schema.ValidationError
		if errors.As(err, &verr) {
			for _, fe := range verr.Fields {
				if !(fe.Field == "id" && s.ID == "") && !(fe.Field == "ends_at" && len(probs) > 0) {
					probs = append(probs, fe)
				}
			}
		}
	}
	if len(probs) > 0 {
		a.reject(w, &schema.ValidationError{Fields: probs})
		return
	}
	a.publish(w, r, []schema.Event{s}, accepted{Accepted: 1, IDs: []string{s.ID}})
}

func (a *API) listSilences(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Alerts == nil {
		writeError(w, http.StatusServiceUnavailable, "no alert store is configured", nil)
		return
	}
	silences, err := a.cfg.Alerts.ActiveSilences(r.Context(), time.Now())
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"silences": silences})
}

// ackRequest is the body of POST /api/v1/alerts/{alert_id}/ack.
type ackRequest struct {
	By      string `json:"by"`
	Comment string `json:"comment"`
}

func (a *API) ackAlert(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Alerts == nil {
		writeError(w, http.StatusServiceUnavailable, "no alert store is configured", nil)
		return
	}
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	var req ackRequest
	if err := decodeAlertRequest(body, &req); err != nil {
		a.reject(w, err)
		return
	}
	alertID := r.PathValue("alert_id")
	alert, err := a.cfg.Alerts.GetAlert(r.Context(), alertID)
	if errors.Is(err, schema.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no alert with id "+strconv.Quote(alertID)+" (an alert shows up here a moment after it fired; list them with GET /api/v1/alerts)", nil)
		return
	}
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	by := strings.TrimSpace(req.By)
	ack := &schema.Acknowledgement{
		ID: schema.NewAckID(alert.AlertID, by, req.Comment), Type: schema.TypeAck, AlertID: alert.AlertID,
		Service: alert.Service, Env: alert.Env, Rule: alert.Rule, By: by, Comment: req.Comment,
		At: schema.At(time.Now().UTC().Truncate(time.Second)),
	}
	if err := ack.Validate(); err != nil {
		a.reject(w, err)
		return
	}
	a.publish(w, r, []schema.Event{ack}, accepted{Accepted: 1, IDs: []string{ack.ID}})
}

func (a *API) listAlerts(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Alerts == nil {
		writeError(w, http.StatusServiceUnavailable, "no alert store is configured", nil)
		return
	}
	q := r.URL.Query()
	f := schema.AlertFilter{Service: q.Get("service"), Env: q.Get("env"), Status: schema.AlertStatus(q.Get("status")), Limit: 50}
	var probs []schema.FieldError
	switch f.Status {
	case "", schema.AlertFiring, schema.AlertResolved:
	default:
		probs = append(probs, schema.FieldError{Field: "status", Problem: "must be firing or resolved"})
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			probs = append(probs, schema.FieldError{Field: "limit", Problem: "must be a whole number from 1 to 1000"})
		}
		f.Limit = n
	}
	if len(probs) > 0 {
		writeError(w, http.StatusBadRequest, "invalid query", probs)
		return
	}
	alerts, err := a.cfg.Alerts.ListAlerts(r.Context(), f)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if alerts == nil {
		alerts = []schema.AlertState{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": alerts})
}

func (a *API) getAlert(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Alerts == nil {
		writeError(w, http.StatusServiceUnavailable, "no alert store is configured", nil)
		return
	}
	alert, err := a.cfg.Alerts.GetAlert(r.Context(), r.PathValue("alert_id"))
	if errors.Is(err, schema.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no alert with id "+strconv.Quote(r.PathValue("alert_id")), nil)
		return
	}
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, alert)
}

// decodeAlertRequest decodes one JSON object into v, refusing unknown fields.
func decodeAlertRequest(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := err.Error()
		if f, ok := strings.CutPrefix(msg, `json: unknown field "`); ok {
			return &schema.ValidationError{Fields: []schema.FieldError{{Field: strings.TrimSuffix(f, `"`), Problem: "is not a known field"}}}
		}
		return &schema.ValidationError{Fields: []schema.FieldError{{Field: "body", Problem: "is not a JSON object of the expected fields: " + msg}}}
	}
	if dec.More() {
		return &schema.ValidationError{Fields: []schema.FieldError{{Field: "body", Problem: "has data after the JSON value: send one JSON document"}}}
	}
	return nil
}
