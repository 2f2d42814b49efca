package ingest

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/deploywatch/deploywatch/schema"
)

// errorBody is the JSON every error response carries.
type errorBody struct {
	Error  string              `json:"error"`
	Fields []schema.FieldError `json:"fields,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string, fields []schema.FieldError) {
	writeJSON(w, code, errorBody{Error: msg, Fields: fields})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func itoa(i int) string { return strconv.Itoa(i) }

// retryAfter is the Retry-After header's value: whole seconds, rounded up, so
// that a wait below one second does not become "0", which means "now".
func (a *API) retryAfter() string {
	return strconv.FormatInt(int64(math.Ceil(a.cfg.RetryAfter.Seconds())), 10)
}
