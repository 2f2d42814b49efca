package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/deploywatch/deploywatch/schema"
)

// accepted is the answer to a successful POST.
type accepted struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids,omitempty"`
}

func (a *API) postEvents(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	events, err := schema.DecodeEvents(body)
	if err != nil {
		a.reject(w, err)
		return
	}
	ids := make([]string, len(events))
	for i, ev := range events {
		ids[i] = eventID(ev)
	}
	a.publish(w, r, events, accepted{Accepted: len(events), IDs: ids})
}

func (a *API) postDeploy(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	var d schema.Deploy
	if err := schema.DecodeInto(body, &d, ""); err != nil {
		a.reject(w, err)
		return
	}
	a.publish(w, r, []schema.Event{&d}, accepted{Accepted: 1, IDs: []string{d.ID}})
}

func (a *API) postMetrics(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	var b schema.MetricsBatch
	if err := schema.DecodeInto(body, &b, ""); err != nil {
		a.reject(w, err)
		return
	}
	a.samplesPerRequest.Update(float64(len(b.Samples)))
	a.publish(w, r, []schema.Event{&b}, accepted{Accepted: len(b.Samples), IDs: []string{b.ID}})
}

// eventID is the id a sender uses to refer to the event later: a deploy's or
// an incident's own id (shared by its status changes), a batch's id.
func eventID(ev schema.Event) string {
	switch e := ev.(type) {
	case *schema.Deploy:
		return e.ID
	case *schema.Incident:
		return e.ID
	default:
		return ev.EventID()
	}
}

// publish encodes events into event log messages, publishes them all and
// answers 202 only when every one was acknowledged; it tells whether it did.
// An event too large for one message is a 413 and nothing is published: a
// retry could never succeed.
func (a *API) publish(w http.ResponseWriter, r *http.Request, events []schema.Event, answer any) bool {
	msgs, err := a.messages(events)
	var tooLarge *schema.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		a.rejected.Inc()
		writeError(w, http.StatusRequestEntityTooLarge, "nothing from this request was stored: "+tooLarge.Error(), nil)
		return false
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error(), nil)
		return false
	}
	if err := a.pub.Publish(r.Context(), msgs); err != nil {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return false // the sender went away; it got no 2xx, so it will send again
		}
		a.log.Warn("cannot publish to the event log", "route", r.URL.Path, "messages", len(msgs), "err", err)
		w.Header().Set("Retry-After", a.retryAfter())
		writeError(w, http.StatusServiceUnavailable, "the event log cannot take writes right now; nothing was lost that you need to keep: retry the same request later ("+err.Error()+")", nil)
		return false
	}
	writeJSON(w, http.StatusAccepted, answer)
	return true
}

// messages encodes events for the event log; metric batches are split so that
// each message stays below NATS' payload limit. The NATS inbox encodes with
// the same function, so a batch gives the same parts by either way in.
func (a *API) messages(events []schema.Event) ([]schema.Message, error) {
	msgs := make([]schema.Message, 0, len(events))
	for _, ev := range events {
		parts, err := schema.EncodeMessages(ev, a.cfg.MaxSamplesPerMessage, a.cfg.MaxMessageBytes)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, parts...)
	}
	return msgs, nil
}

// reject answers 400 for invalid input, naming every bad field.
func (a *API) reject(w http.ResponseWriter, err error) {
	a.rejected.Inc()
	var verr *schema.ValidationError
	if errors.As(err, &verr) {
		writeError(w, http.StatusBadRequest, "invalid input: nothing from this request was stored; fix the fields below and send it again", verr.Fields)
		return
	}
	writeError(w, http.StatusBadRequest, err.Error(), nil)
}

// readBody checks the content type and reads the (possibly gzip-compressed)
// body within the size limit, answering 415 or 413 itself.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if !isJSON(r.Header.Get("Content-Type")) {
		a.rejected.Inc()
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json (with curl: -H 'Content-Type: application/json')", nil)
		return nil, false
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes)
	// A body of known length is read into a buffer of its size at once
	// rather than one that doubles its way up to it.
	sizeHint := int64(0)
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
		if r.ContentLength <= a.cfg.MaxBodyBytes {
			sizeHint = r.ContentLength
		}
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			a.reject(w, fmt.Errorf("the body is not valid gzip: %v", err))
			return nil, false
		}
		// Bound the decompressed size too, so a small bomb cannot fill memory.
		src = &limitedReader{r: zr, left: a.cfg.MaxBodyBytes}
	default:
		a.rejected.Inc()
		writeError(w, http.StatusUnsupportedMediaType, "Content-Encoding must be gzip or none", nil)
		return nil, false
	}
	body, err := readAll(src, sizeHint)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge), errors.Is(err, errTooLarge):
		a.rejected.Inc()
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes: split it into smaller requests", a.cfg.MaxBodyBytes), nil)
		return nil, false
	case err != nil:
		a.reject(w, fmt.Errorf("cannot read the body: %v", err))
		return nil, false
	}
	return body, true
}

// readAll reads src to its end into a buffer for sizeHint bytes (when > 0).
func readAll(src io.Reader, sizeHint int64) ([]byte, error) {
	if sizeHint <= 0 {
		return io.ReadAll(src)
	}
	buf := bytes.NewBuffer(make([]byte, 0, sizeHint+bytes.MinRead))
	_, err := buf.ReadFrom(src)
	return buf.Bytes(), err
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

var errTooLarge = errors.New("body too large")

// limitedReader fails with errTooLarge instead of silently truncating.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// At the limit: the body fits only if the stream ends here, and ends
		// cleanly (gzip checks its checksum only when it reaches the end).
		var one [1]byte
		n, err := l.r.Read(one[:])
		switch {
		case n > 0:
			return 0, errTooLarge
		case err == nil:
			return 0, nil
		default:
			return 0, err
		}
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
