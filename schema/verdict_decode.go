package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Signals are the derived facts on SignalsStream: verdicts, alerts, rollback
// signals, and the silences and acknowledgements people add to alerts. Unlike
// DecodeEvent, which takes what senders post to the API, DecodeSignal takes
// only what deploywatch's own processes publish: a sender cannot post a
// verdict.

// signalTypes lists the types DecodeSignal knows, for its errors.
const signalTypes = "verdict, alert, rollback, silence, ack, delivery"

// DecodeSignal decodes one message of the signals stream by its "type". An
// unknown type is an error naming the types this version knows, so that a
// message of a newer kind is refused with a reason rather than misread.
func DecodeSignal(raw []byte) (Event, error) {
	if len(bytes.TrimLeft(raw, jsonSpace)) == 0 {
		return nil, &ValidationError{Fields: []FieldError{{Field: "body", Problem: "is empty: a signal is a JSON object"}}}
	}
	var head struct {
		Type Type `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, decodeError(err, "")
	}
	switch head.Type {
	case TypeVerdict:
		return DecodeVerdict(raw)
	case TypeAlert:
		return decodeSignal(raw, &Alert{})
	case TypeRollback:
		return decodeSignal(raw, &RollbackSignal{})
	case TypeSilence:
		return decodeSignal(raw, &Silence{})
	case TypeAck:
		return decodeSignal(raw, &Acknowledgement{})
	case TypeDelivery:
		return DecodeDelivery(raw)
	case "":
		return nil, &ValidationError{Fields: []FieldError{{Field: "type", Problem: "is required: one of " + signalTypes}}}
	default:
		return nil, &ValidationError{Fields: []FieldError{{Field: "type", Problem: fmt.Sprintf(
			"is %q, which this version of deploywatch does not know on the signals stream (it knows %s): upgrade the processes that read the stream",
			head.Type, signalTypes)}}}
	}
}

// validatedSignal is a signal that checks itself.
type validatedSignal interface {
	Event
	Validate() error
}

// decodeSignal decodes raw into ev and validates it. As for verdicts, fields
// it does not know are ignored: a newer deploywatch may add some.
func decodeSignal[T validatedSignal](raw []byte, ev T) (Event, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(ev); err != nil {
		return nil, decodeError(err, "")
	}
	if len(bytes.TrimLeft(raw[dec.InputOffset():], jsonSpace)) > 0 {
		return nil, &ValidationError{Fields: []FieldError{{Field: "body", Problem: "has data after the JSON value: send one JSON document"}}}
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return ev, nil
}

// DecodeVerdict decodes a verdict event and validates it. Fields it does not
// know are ignored rather than refused: verdicts come from deploywatch's own
// impact processor, and one of a newer version may add fields that the stored
// JSON keeps.
func DecodeVerdict(raw []byte) (*Verdict, error) {
	var v Verdict
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&v); err != nil {
		return nil, decodeError(err, "")
	}
	if len(bytes.TrimLeft(raw[dec.InputOffset():], jsonSpace)) > 0 {
		return nil, &ValidationError{Fields: []FieldError{{Field: "body", Problem: "has data after the JSON value: send one JSON document"}}}
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return &v, nil
}

// maxVerdictIDLen bounds a verdict's id: a deploy id (up to 128 characters),
// ":verdict:" and a Unix time.
const maxVerdictIDLen = 256

// Validate reports every problem of the verdict at once: what the projection
// into ClickHouse and the readers rely on.
func (v *Verdict) Validate() error {
	var p problems
	switch {
	case v.ID == "":
		p.add("id", "is required: <deploy_id>:verdict:<unix seconds of evaluated_at>")
	case len(v.ID) > maxVerdictIDLen:
		p.addf("id", "is %d bytes long; the limit is %d", len(v.ID), maxVerdictIDLen)
	}
	if v.Type != TypeVerdict {
		p.addf("type", "must be %q; got %q", TypeVerdict, v.Type)
	}
	checkID(&p, "deploy_id", v.DeployID)
	checkName(&p, "service", v.Service, true)
	checkName(&p, "env", v.Env, true)
	switch v.Status {
	case VerdictPending, VerdictHealthy, VerdictMarginal, VerdictBad, VerdictInconclusive:
	case "":
		p.add("status", "is required: pending, healthy, marginal, bad or inconclusive")
	default:
		p.addf("status", "must be pending, healthy, marginal, bad or inconclusive; got %q", v.Status)
	}
	if v.Score < 0 || v.Score > 100 {
		p.addf("score", "must be from 0 to 100; got %d", v.Score)
	}
	switch v.Comparison {
	case "", CanaryVsBaseline, BeforeVsAfter, RecentVsEarlier, RecoveryVsBaseline:
	default:
		p.addf("comparison", "must be canary_vs_baseline, before_vs_after, recent_vs_earlier or recovery_vs_baseline; got %q", v.Comparison)
	}
	v.EvaluatedAt.check(&p, "evaluated_at", true)
	// An interim verdict's candidate window may end after now: only the form
	// of the window's times is checked.
	for _, w := range []struct {
		field string
		t     Time
	}{
		{"baseline_window.from", v.Baseline.From}, {"baseline_window.to", v.Baseline.To},
		{"candidate_window.from", v.Candidate.From}, {"candidate_window.to", v.Candidate.To},
	} {
		if w.t.invalid != "" {
			p.add(w.field, "must be an RFC 3339 time such as 2026-11-22T10:04:05Z, got "+strconv.Quote(w.t.invalid))
		}
	}
	for i := range v.Metrics {
		if v.Metrics[i].Name == "" {
			p.add("metrics["+itoa(i)+"].name", "is required")
		}
	}
	return p.err()
}
