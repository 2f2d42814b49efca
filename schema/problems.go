package schema

import (
	"fmt"
	"regexp"
	"strings"
)

// FieldError names one bad field and what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// ValidationError lists every bad field of an input at once, so a sender can
// fix them all in one go.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Fields))
	for _, f := range e.Fields {
		parts = append(parts, f.Field+": "+f.Problem)
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// problems collects FieldErrors during validation, at most
// maxReportedProblems of them and then a note that there are more.
type problems struct {
	list      []FieldError
	truncated bool
}

func (p *problems) add(field, problem string) {
	switch {
	case p.truncated:
	case len(p.list) >= maxReportedProblems:
		p.truncated = true
		p.list = append(p.list, FieldError{Field: "body", Problem: "has more problems not listed: fix the ones above first"})
	default:
		p.list = append(p.list, FieldError{Field: field, Problem: problem})
	}
}

// addUnder adds the problems of element i of the array at field, whose paths
// are relative to the element.
func (p *problems) addUnder(field string, i int, element *problems) {
	if len(element.list) == 0 {
		return
	}
	base := field + "[" + itoa(i) + "]"
	for _, fe := range element.list {
		if fe.Field == "" { // the element itself
			p.add(base, fe.Problem)
			continue
		}
		p.add(join(base, fe.Field), fe.Problem)
	}
}

func (p *problems) addf(field, format string, args ...any) {
	p.add(field, fmt.Sprintf(format, args...))
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Fields: p.list}
}

// join builds a field path: join("samples[3]", "requests") = "samples[3].requests".
func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// namePattern is what service and env names may look like: they become parts of
// JetStream subjects and ClickHouse keys.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// idPattern is what a sender-chosen event id may look like (UUIDs, ULIDs, CI run ids).
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// maxIDLen is the longest id idPattern takes.
const maxIDLen = 128

func checkName(p *problems, field, value string, required bool) {
	switch {
	case value == "" && required:
		p.add(field, "is required")
	case value != "" && !namePattern.MatchString(value):
		p.addf(field, "must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit; got %q", value)
	}
}

func checkID(p *problems, field, value string) {
	if value != "" && !idPattern.MatchString(value) {
		p.addf(field, "must be 1-128 characters of letters, digits, '.', '_', ':' or '-', or left out to have one generated; got %q", value)
	}
}

func checkText(p *problems, field, value string, max int) {
	if len(value) > max {
		p.addf(field, "is %d bytes long; the limit is %d", len(value), max)
	}
}
