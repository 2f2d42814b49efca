package schema

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The inbox is where services that speak NATS publish events for
// deploywatch: deploywatch.in.<type>.<service>. Nothing there is part of the
// event log yet; the inbox processor validates every message as the HTTP API
// does and moves the valid ones onto their stream, so that the event log
// only ever holds valid events. Publishers can be allowed deploywatch.in.>
// and nothing else.
const (
	// InboxStream holds published events until they are validated: a work
	// queue, each message removed once it was moved or dead-lettered.
	InboxStream = "DEPLOYWATCH_INBOX"
	// InboxSubjects are the subjects of the inbox.
	InboxSubjects = "deploywatch.in.>"

	inboxPrefix = "deploywatch.in."
)

// InboxTypes are the event types the inbox takes, in the order the docs list them.
var InboxTypes = []Type{TypeDeploy, TypeIncident, TypeMetrics, TypePush}

// InboxSubject is where an outside publisher publishes an event of type t
// about service.
func InboxSubject(t Type, service string) string {
	return inboxPrefix + string(t) + "." + SubjectToken(service)
}

// DecodeInboxMessage decodes, normalizes and validates an event published on
// an inbox subject, as the HTTP API would: the subject's type token says
// which event the body must be, and its service token must be the body's
// service, so that permissions on subjects are permissions on services.
// encoding is the message's EncodingHeader ("" for JSON). Every problem is a
// *ValidationError naming the field; an unknown encoding is an error too.
func DecodeInboxMessage(subject, encoding string, data []byte) (Event, error) {
	typ, token, ok := parseInboxSubject(subject)
	if !ok {
		return nil, &ValidationError{Fields: []FieldError{{Field: "subject", Problem: fmt.Sprintf("is %q; publish on %s<type>.<service>, the type one of %s", subject, inboxPrefix, inboxTypeList())}}}
	}
	var ev Event
	switch typ {
	case TypeDeploy:
		ev = &Deploy{}
	case TypeIncident:
		ev = &Incident{}
	case TypePush:
		ev = &Push{}
	case TypeMetrics:
		var b MetricsBatch
		if err := DecodeMetricsMessage(encoding, data, &b); err != nil {
			return nil, err
		}
		ev = &b
	default:
		return nil, &ValidationError{Fields: []FieldError{{Field: "subject", Problem: fmt.Sprintf("names the type %q; the inbox takes %s: publish on %s<type>.<service>", typ, inboxTypeList(), inboxPrefix)}}}
	}
	if typ != TypeMetrics {
		if encoding != "" {
			return nil, fmt.Errorf("cannot decode a %s event in the encoding %q (header %s): %s events are JSON", typ, encoding, EncodingHeader, typ)
		}
		if err := DecodeInto(data, ev, ""); err != nil {
			return nil, err
		}
	}
	if want := SubjectToken(ev.EventService()); want != token {
		return nil, &ValidationError{Fields: []FieldError{{Field: "service", Problem: fmt.Sprintf("is %q but the subject %s names the service %q: publish on %s", ev.EventService(), subject, token, InboxSubject(typ, ev.EventService()))}}}
	}
	if b, ok := ev.(*MetricsBatch); ok {
		// A sample's own service overrides the batch's and is what is
		// stored, so it must be the subject's service too.
		var p problems
		for i := range b.Samples {
			if s := b.Samples[i].Service; s != "" && SubjectToken(s) != token {
				p.addf("samples["+itoa(i)+"].service", "is %q but the subject %s names the service %q: a publisher may only send samples of its subject's service; leave it out or publish those samples on %s", s, subject, token, InboxSubject(TypeMetrics, s))
			}
		}
		if err := p.err(); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// parseInboxSubject splits deploywatch.in.<type>.<service>.
func parseInboxSubject(subject string) (Type, string, bool) {
	rest, ok := strings.CutPrefix(subject, inboxPrefix)
	if !ok {
		return "", "", false
	}
	typ, token, ok := strings.Cut(rest, ".")
	if !ok || typ == "" || token == "" || strings.Contains(token, ".") {
		return "", "", false
	}
	return Type(typ), token, true
}

func inboxTypeList() string {
	names := make([]string, len(InboxTypes))
	for i, t := range InboxTypes {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// EncodeMessages encodes a valid event for the event log, as the HTTP API
// publishes it: a metrics batch in the binary encoding, split into parts of
// at most maxSamples samples and maxBytes bytes (halving the samples per
// part until each fits; the same batch always gives the same parts with the
// same ids, so a re-sent batch is deduplicated), anything else as JSON.
// maxBytes <= 0 means no limit. An event that cannot be made to fit (a JSON
// event, or one sample, above maxBytes) is a *TooLargeError: it can never be
// published, so it must not be retried.
func EncodeMessages(ev Event, maxSamples, maxBytes int) ([]Message, error) {
	b, ok := ev.(*MetricsBatch)
	if !ok {
		data, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("cannot encode %s event %s: %w", ev.EventType(), ev.EventID(), err)
		}
		if maxBytes > 0 && len(data) > maxBytes {
			field, fieldBytes := largestField(data)
			return nil, &TooLargeError{
				What: fmt.Sprintf("the %s event %s", ev.EventType(), ev.EventID()),
				Size: len(data), Limit: maxBytes, Field: field, FieldBytes: fieldBytes,
			}
		}
		return []Message{{Subject: Subject(ev), ID: ev.EventID(), Data: data}}, nil
	}
	per := max(maxSamples, 1)
	for {
		parts := b.Split(per)
		msgs := make([]Message, 0, len(parts))
		fits := true
		for i := range parts {
			data := parts[i].AppendBinary(nil)
			if maxBytes > 0 && len(data) > maxBytes {
				if per == 1 {
					return nil, &TooLargeError{What: fmt.Sprintf("samples[%d] of the metrics batch %s", i, b.ID), Size: len(data), Limit: maxBytes}
				}
				fits = false
				break
			}
			msgs = append(msgs, Message{Subject: Subject(&parts[i]), ID: parts[i].ID, Data: data})
		}
		if fits {
			return msgs, nil
		}
		per = (per + 1) / 2
	}
}

// TooLargeError is EncodeMessages' error for an event that does not fit one
// event log message (NATS' max_payload bounds a message): it can never be
// published, so the HTTP API answers 413 and the inbox dead-letters it.
type TooLargeError struct {
	// What names what is too large: "the deploy event checkout-7:succeeded".
	What string
	// Size is its encoded size in bytes and Limit the most one message takes.
	Size, Limit int
	// Field is the event's largest field, the one to shorten, and FieldBytes
	// its encoded size; "" when the event has no fields to name.
	Field      string
	FieldBytes int
}

func (e *TooLargeError) Error() string {
	msg := fmt.Sprintf("%s is %d bytes as the event log stores it, above the event log's limit of %d bytes per message", e.What, e.Size, e.Limit)
	if e.Field != "" {
		msg += fmt.Sprintf(": its largest field, %s, takes %d bytes; shorten it (or send the rest in another event)", e.Field, e.FieldBytes)
	}
	return msg
}

// largestField names the top-level field of a JSON object that takes the
// most bytes; the first in name order among equals.
func largestField(data []byte) (string, int) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil {
		return "", 0
	}
	var name string
	size := -1
	for k, v := range fields {
		if len(v) > size || (len(v) == size && k < name) {
			name, size = k, len(v)
		}
	}
	return name, max(size, 0)
}

// DeadLetterMsgIDHeader carries the Nats-Msg-Id a dead-lettered message was
// published with, so that its publisher can find it.
const DeadLetterMsgIDHeader = "Deploywatch-Original-Msg-Id"
