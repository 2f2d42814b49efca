package ingest

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/deploywatch/deploywatch/schema"
)

// DoraReader computes DORA's four keys per week.
type DoraReader interface {
	Report(ctx context.Context, f schema.DoraFilter) (schema.DoraReport, error)
}

// getDora serves GET /api/v1/dora?weeks=N&service=&env=&team=.
func (a *API) getDora(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Dora == nil {
		writeError(w, http.StatusServiceUnavailable, "no DORA store is configured", nil)
		return
	}
	q := r.URL.Query()
	f := schema.DoraFilter{Service: q.Get("service"), Env: q.Get("env"), Team: q.Get("team")}
	var problems []schema.FieldError
	if s := q.Get("weeks"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			problems = append(problems, schema.FieldError{Field: "weeks",
				Problem: "must be a whole number from 1 to " + strconv.Itoa(schema.MaxDoraWeeks) + "; got " + strconv.Quote(s)})
		} else {
			f.Weeks = n
		}
	}
	var verr *schema.ValidationError
	if err := f.Validate(); errors.As(err, &verr) {
		problems = append(problems, verr.Fields...)
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid query", problems)
		return
	}
	report, err := a.cfg.Dora.Report(r.Context(), f)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, report)
}
