package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/deploywatch/deploywatch/schema"
)

// apiClient is how the commands other than serve talk to a deploywatch server.
type apiClient struct {
	server string // base URL, e.g. http://127.0.0.1:8080
	token  string // bearer token; empty sends none
	// serverFlag names the flag that gave server, for errors that suggest checking it.
	serverFlag string
}

// apiError is an answer other than 2xx, with the server's words.
type apiError struct {
	URL     string
	Status  string // "404 Not Found"
	Code    int
	Message string
	Fields  []schema.FieldError
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s answered %s: %s%s", e.URL, e.Status, e.Message, e.fieldLines())
}

// fieldLines lists the bad fields the server named, one per line.
func (e *apiError) fieldLines() string {
	var b strings.Builder
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Problem)
	}
	return b.String()
}

// call sends body (nil: none) as JSON to path and decodes the answer into
// into (nil: discard it). An answer other than 2xx is an *apiError.
func (c apiClient) call(ctx context.Context, method, path string, body, into any) error {
	url := strings.TrimRight(c.server, "/") + path
	var reqBody io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("cannot encode the request to %s: %w", url, err)
		}
		reqBody = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, reqBody)
	if err != nil {
		return fmt.Errorf("%s: %w", c.serverFlag, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach deploywatch at %s: %w (is `deploywatch serve` running? check %s)", url, err, c.serverFlag)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("cannot read the answer of %s: %w", url, err)
	}
	if resp.StatusCode/100 != 2 {
		var answer struct {
			Error  string              `json:"error"`
			Fields []schema.FieldError `json:"fields"`
		}
		if err := json.Unmarshal(data, &answer); err != nil || answer.Error == "" {
			return fmt.Errorf("%s answered %s with a body that is not deploywatch's JSON: %.200s (check %s)", url, resp.Status, data, c.serverFlag)
		}
		return &apiError{URL: url, Status: resp.Status, Code: resp.StatusCode, Message: answer.Error, Fields: answer.Fields}
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s answered %s with a body that is not deploywatch's JSON: %.200s (check %s)", url, resp.Status, data, c.serverFlag)
	}
	return nil
}
