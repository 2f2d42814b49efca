package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Type names the kind of an event.
type Type string

const (
	TypeDeploy   Type = "deploy"
	TypeMetrics  Type = "metrics"
	TypeIncident Type = "incident"
)

// Event is what every event type has: a stable id used for deduplication, a
// type, an event time and the service it concerns.
type Event interface {
	EventType() Type
	// EventID is unique per fact and the same when the fact is sent again;
	// it is the JetStream Nats-Msg-Id and the ClickHouse deduplication key.
	EventID() string
	EventTime() Time
	EventService() string
}

// idNamespace makes derived ids deploywatch's own UUIDv5 space.
var idNamespace = uuid.MustParse("6b1c2a0e-5d1f-4c57-9a55-2f7d3c1e8b90")

func derivedID(kind string, parts ...string) string {
	var buf bytes.Buffer
	buf.WriteString(kind)
	for _, p := range parts {
		buf.WriteByte(0)
		buf.WriteString(p)
	}
	return uuid.NewSHA1(idNamespace, buf.Bytes()).String()
}

func itoa(i int) string { return strconv.Itoa(i) }

// DecodeEvent decodes one event whose kind its "type" field names, normalizes
// it and validates it. Field names in errors start with prefix.
func DecodeEvent(raw []byte, prefix string) (Event, error) {
	if len(bytes.TrimLeft(raw, jsonSpace)) == 0 {
		return nil, &ValidationError{Fields: []FieldError{{Field: fieldOrBody(prefix), Problem: "is empty: send a JSON object"}}}
	}
	var head struct {
		Type Type `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, decodeError(err, prefix)
	}
	switch head.Type {
	case TypeDeploy:
		var d Deploy
		return &d, DecodeInto(raw, &d, prefix)
	case TypeMetrics:
		var b MetricsBatch
		return &b, DecodeInto(raw, &b, prefix)
	case TypeIncident:
		var in Incident
		return &in, DecodeInto(raw, &in, prefix)
	case TypePush:
		var p Push
		return &p, DecodeInto(raw, &p, prefix)
	case "":
		return nil, &ValidationError{Fields: []FieldError{{Field: join(prefix, "type"), Problem: "is required: one of deploy, metrics, incident, push"}}}
	default:
		return nil, &ValidationError{Fields: []FieldError{{Field: join(prefix, "type"), Problem: fmt.Sprintf("must be one of deploy, metrics, incident, push; got %q", head.Type)}}}
	}
}

// decodable is an event that can normalize and validate itself.
type decodable interface {
	Event
	validate(p *problems, prefix string)
}

// DecodeInto decodes raw into ev (a *Deploy, *MetricsBatch, *Incident or *Push),
// normalizes and validates it. Unknown fields are rejected so that a misspelt
// field is reported instead of silently dropped.
func DecodeInto(raw []byte, ev Event, prefix string) error {
	if b, ok := ev.(*MetricsBatch); ok {
		return decodeMetrics(raw, b, prefix)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var shape problems
	if err := dec.Decode(ev); err != nil {
		if !decodedPartly(err) {
			return decodeError(err, prefix)
		}
		// encoding/json names only the first unknown field or value of the
		// wrong kind, and without array indices; it has decoded the rest. Name
		// them all, then validate the rest too.
		if complete := checkShape(&shape, raw, ev, prefix); !complete || len(shape.list) == 0 {
			if len(shape.list) == 0 {
				return decodeError(err, prefix)
			}
			return shape.err()
		}
	} else if len(bytes.TrimLeft(raw[dec.InputOffset():], jsonSpace)) > 0 {
		// dec.More() would miss a stray ']' or '}'.
		return &ValidationError{Fields: []FieldError{{Field: fieldOrBody(prefix), Problem: "has data after the JSON value: send one JSON document"}}}
	}
	wantType := ev.EventType()
	var p problems
	switch e := ev.(type) {
	case *Deploy:
		checkType(&p, prefix, e.Type, wantType)
		e.Normalize()
	case *MetricsBatch:
		checkType(&p, prefix, e.Type, wantType)
		e.Normalize(raw)
	case *Incident:
		checkType(&p, prefix, e.Type, wantType)
		e.Normalize()
	case *Push:
		checkType(&p, prefix, e.Type, wantType)
		e.Normalize()
	default:
		return fmt.Errorf("cannot decode events of type %T", ev)
	}
	ev.(decodable).validate(&p, prefix)
	if len(shape.list) == 0 {
		return p.err()
	}
	// A field of the wrong kind was left empty: do not also call it missing.
	shaped := shape.list[:len(shape.list):len(shape.list)]
	for _, fe := range p.list {
		if !coveredBy(fe.Field, shaped) {
			shape.list = append(shape.list, fe)
		}
	}
	return shape.err()
}

// decodeMetrics decodes, normalizes and validates a metrics batch on the fast path.
func decodeMetrics(raw []byte, b *MetricsBatch, prefix string) error {
	var shape problems
	if !decodeMetricsBatch(raw, b, prefix, &shape) {
		return shape.err()
	}
	var p problems
	checkType(&p, prefix, b.Type, TypeMetrics)
	b.Normalize(raw)
	b.validate(&p, prefix)
	// A field of the wrong kind was left empty: do not also call it missing.
	shaped := shape.list[:len(shape.list):len(shape.list)]
	for _, fe := range p.list {
		if !coveredBy(fe.Field, shaped) {
			shape.add(fe.Field, fe.Problem)
		}
	}
	return shape.err()
}

// MarshalJSON encodes the batch without reflection.
func (b *MetricsBatch) MarshalJSON() ([]byte, error) { return b.AppendJSON(nil), nil }

// jsonSpace is the white space JSON allows between values.
const jsonSpace = " \t\r\n"

// decodedPartly reports whether encoding/json went on decoding after err: it
// does after an unknown field or a value of the wrong kind inside the object,
// not after a syntax error or when the document is not an object at all.
func decodedPartly(err error) bool {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return typeErr.Field != ""
	}
	_, unknown := unknownField(err.Error())
	return unknown
}

// coveredBy reports whether field is one of the fields in list or lies within one.
func coveredBy(field string, list []FieldError) bool {
	for _, fe := range list {
		if field == fe.Field || (strings.HasPrefix(field, fe.Field) && (field[len(fe.Field)] == '.' || field[len(fe.Field)] == '[')) {
			return true
		}
	}
	return false
}

func checkType(p *problems, prefix string, got, want Type) {
	if got != "" && got != want {
		p.addf(join(prefix, "type"), "is %q but this route takes %q events", got, want)
	}
}

func fieldOrBody(prefix string) string {
	if prefix == "" {
		return "body"
	}
	return prefix
}

// decodeError turns a JSON decoding error into a ValidationError naming the field.
func decodeError(err error, prefix string) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return &ValidationError{Fields: []FieldError{{Field: fieldOrBody(prefix), Problem: "must be a JSON object"}}}
		}
		return &ValidationError{Fields: []FieldError{{Field: join(prefix, field), Problem: "must be a JSON " + jsonKind(typeErr.Type.Kind().String()) + ", got " + typeErr.Value}}}
	case errors.As(err, &syntaxErr):
		return &ValidationError{Fields: []FieldError{{Field: fieldOrBody(prefix), Problem: fmt.Sprintf("is not valid JSON at byte %d: %s", syntaxErr.Offset, syntaxErr.Error())}}}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return &ValidationError{Fields: []FieldError{{Field: fieldOrBody(prefix), Problem: "is empty: send a JSON object"}}}
	default:
		msg := err.Error()
		if f, ok := unknownField(msg); ok {
			return &ValidationError{Fields: []FieldError{{Field: keyField(prefix, f), Problem: unknownFieldProblem}}}
		}
		return &ValidationError{Fields: []FieldError{{Field: fieldOrBody(prefix), Problem: msg}}}
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "slice", "array":
		return "array"
	case "map", "struct", "ptr":
		return "object"
	case "bool":
		return "boolean"
	default:
		return "number"
	}
}

const unknownFieldProblem = "is not a known field: check its spelling against the event's JSON Schema"

// keyField is the path of the member key of the object at prefix; an empty
// key is shown as "" so that the problem still names a field.
func keyField(prefix, key string) string {
	if key == "" {
		key = `""`
	}
	return join(prefix, key)
}

// unknownField extracts the name from encoding/json's `json: unknown field "x"`.
func unknownField(msg string) (string, bool) {
	const p = `json: unknown field "`
	if len(msg) > len(p) && msg[:len(p)] == p {
		return msg[len(p) : len(msg)-1], true
	}
	return "", false
}

// DecodeEvents takes one event or an array of them (what POST /api/v1/events
// takes) and reports the problems of all of them at once, field names
// prefixed with the element's index ("[1].service").
func DecodeEvents(body []byte) ([]Event, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		ev, err := DecodeEvent(body, "")
		if err != nil {
			return nil, err
		}
		return []Event{ev}, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, &ValidationError{Fields: []FieldError{{Field: "body", Problem: "is not a valid JSON array of events: " + err.Error()}}}
	}
	if len(raws) == 0 {
		return nil, &ValidationError{Fields: []FieldError{{Field: "body", Problem: "is an empty array: send at least one event"}}}
	}
	events := make([]Event, 0, len(raws))
	var all ValidationError
	for i, raw := range raws {
		ev, err := DecodeEvent(raw, "["+itoa(i)+"]")
		var verr *ValidationError
		switch {
		case errors.As(err, &verr):
			all.Fields = append(all.Fields, verr.Fields...)
		case err != nil:
			return nil, err
		default:
			events = append(events, ev)
		}
	}
	if len(all.Fields) > 0 {
		return nil, &all
	}
	return events, nil
}
