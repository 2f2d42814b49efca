package schema

import (
	"bytes"
	"encoding/json"
)

// A delivery event records one attempt to deliver an alert to a webhook
// receiver: what was sent where, what came back, and what happens next. Like
// the alerts they deliver they are events on the signals stream, projected
// into webhook_deliveries, so "did the on-call channel get it, and when?" has
// an answer that survives restarts.

// TypeDelivery names delivery events.
const TypeDelivery Type = "delivery"

// DeliveryOutcome is what one attempt led to.
type DeliveryOutcome string

const (
	// DeliveryDelivered: the receiver answered 2xx. Final.
	DeliveryDelivered DeliveryOutcome = "delivered"
	// DeliveryRejected: the receiver answered a 4xx other than 408 and 429
	// (or a redirect); it would answer the same again, so it is not retried. Final.
	DeliveryRejected DeliveryOutcome = "rejected"
	// DeliveryRetrying: the attempt failed (network error, timeout, 408, 429,
	// 5xx); another follows at next_attempt_at.
	DeliveryRetrying DeliveryOutcome = "retrying"
	// DeliveryPostponed: the attempt failed and the retries of this round are
	// used up (or deploywatch is shutting down): the alert stays unacked in
	// JetStream, which hands it out again, and delivery goes on from there.
	DeliveryPostponed DeliveryOutcome = "postponed"
)

// Delivery is one attempt to deliver one alert event to one receiver.
type Delivery struct {
	// ID is <webhook_id>:<stream sequence>:<round>:<attempt>: one per attempt.
	ID   string `json:"id"`
	Type Type   `json:"type"`
	// WebhookID is the webhook-id header: the same for every attempt of one
	// logical delivery (one alert event to one receiver), so that receivers
	// can deduplicate.
	WebhookID string `json:"webhook_id"`
	// AlertEventID is the id of the alert event delivered; AlertID the alert's.
	AlertEventID string      `json:"alert_event_id"`
	AlertID      string      `json:"alert_id,omitempty"`
	AlertStatus  AlertStatus `json:"alert_status,omitempty"`
	Rule         string      `json:"rule,omitempty"`
	Service      string      `json:"service"`
	Env          string      `json:"env"`
	// Receiver is the receiver's name; URL where it was sent, without
	// credentials (no user info, no query; only the origin for a URL that
	// came from the environment).
	Receiver string `json:"receiver"`
	URL      string `json:"url"`
	Format   string `json:"format,omitempty"`
	// Round is how many times JetStream has handed out the alert message
	// (1 the first time); Attempt counts the attempts for this receiver.
	Round   int `json:"round"`
	Attempt int `json:"attempt"`
	// StatusCode is the HTTP status answered, 0 when there was no answer.
	StatusCode int    `json:"status_code,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMs int64  `json:"duration_ms"`
	// At is when the attempt started (wall clock: deliveries happen in the world).
	At            Time            `json:"at"`
	Outcome       DeliveryOutcome `json:"outcome"`
	Final         bool            `json:"final"`
	NextAttemptAt Time            `json:"next_attempt_at,omitzero"`
}

func (d *Delivery) EventType() Type      { return TypeDelivery }
func (d *Delivery) EventID() string      { return d.ID }
func (d *Delivery) EventService() string { return d.Service }
func (d *Delivery) EventTime() Time      { return d.At }

// maxDeliveryIDLen bounds a delivery's id: a webhook id and three numbers.
const maxDeliveryIDLen = 256

// Validate reports every problem of the delivery at once: what the
// projection into ClickHouse relies on.
func (d *Delivery) Validate() error {
	var p problems
	switch {
	case d.ID == "":
		p.add("id", "is required: <webhook_id>:<stream sequence>:<round>:<attempt>")
	case len(d.ID) > maxDeliveryIDLen:
		p.addf("id", "is %d bytes long; the limit is %d", len(d.ID), maxDeliveryIDLen)
	}
	if d.Type != TypeDelivery {
		p.addf("type", "must be %q; got %q", TypeDelivery, d.Type)
	}
	if d.WebhookID == "" {
		p.add("webhook_id", "is required")
	}
	if d.AlertEventID == "" {
		p.add("alert_event_id", "is required")
	}
	checkName(&p, "service", d.Service, true)
	checkName(&p, "env", d.Env, false)
	if d.Receiver == "" {
		p.add("receiver", "is required")
	}
	checkText(&p, "receiver", d.Receiver, 128)
	checkText(&p, "url", d.URL, 2048)
	checkText(&p, "error", d.Error, 4096)
	if d.Round < 1 {
		p.addf("round", "must be 1 or more; got %d", d.Round)
	}
	if d.Attempt < 1 {
		p.addf("attempt", "must be 1 or more; got %d", d.Attempt)
	}
	if d.StatusCode < 0 || d.StatusCode > 999 {
		p.addf("status_code", "must be an HTTP status code; got %d", d.StatusCode)
	}
	if d.DurationMs < 0 {
		p.addf("duration_ms", "must not be negative; got %d", d.DurationMs)
	}
	switch d.Outcome {
	case DeliveryDelivered, DeliveryRejected, DeliveryRetrying, DeliveryPostponed:
	case "":
		p.add("outcome", "is required: delivered, rejected, retrying or postponed")
	default:
		p.addf("outcome", "must be delivered, rejected, retrying or postponed; got %q", d.Outcome)
	}
	d.At.check(&p, "at", true)
	if d.NextAttemptAt.invalid != "" {
		d.NextAttemptAt.check(&p, "next_attempt_at", false)
	}
	return p.err()
}

// DecodeDelivery decodes a delivery event and validates it. Like verdicts,
// deliveries come from deploywatch itself: fields of a newer version are
// ignored rather than refused.
func DecodeDelivery(raw []byte) (*Delivery, error) {
	var d Delivery
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		return nil, decodeError(err, "")
	}
	if len(bytes.TrimLeft(raw[dec.InputOffset():], jsonSpace)) > 0 {
		return nil, &ValidationError{Fields: []FieldError{{Field: "body", Problem: "has data after the JSON value: send one JSON document"}}}
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}
