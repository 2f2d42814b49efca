package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
)

// checkShape walks raw alongside the Go type ev points to and names every
// object key that has no field and every value of a JSON kind that its field
// cannot take, each with its full path (samples[3].instance). It reports
// whether it got through the whole document without hitting the limit of
// reported problems.
//
// encoding/json stops reporting at the first such problem and names it
// without array indices (samples.instance). checkShape runs only after
// encoding/json has failed, so it need not be fast.
func checkShape(p *problems, raw []byte, ev any, prefix string) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	w := shapeWalker{dec: dec, p: p, prefix: prefix}
	tok, err := dec.Token()
	if err == nil {
		err = w.value(prefix, reflect.TypeOf(ev).Elem(), tok)
	}
	return !errors.Is(err, errTooManyProblems)
}

type shapeWalker struct {
	dec    *json.Decoder
	p      *problems
	prefix string
}

var errTooManyProblems = errors.New("too many problems to list")

var (
	timeType   = reflect.TypeFor[Time]()
	countType  = reflect.TypeFor[Count]()
	numberType = reflect.TypeFor[Number]()
)

// value checks the value that starts with tok against t.
func (w *shapeWalker) value(path string, t reflect.Type, tok json.Token) error {
	if tok == nil {
		return nil // encoding/json leaves a field alone on null
	}
	switch t {
	case timeType, countType, numberType:
		// These take any JSON value; validation names what is wrong with it.
		return w.skip(tok)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return w.value(path, t.Elem(), tok)
	case reflect.String:
		if _, ok := tok.(string); !ok {
			return w.wrongKind(path, "string", tok)
		}
	case reflect.Float64:
		n, ok := tok.(json.Number)
		if !ok {
			return w.wrongKind(path, "number", tok)
		}
		if _, err := strconv.ParseFloat(string(n), 64); err != nil {
			return w.add(path, "must be a finite number, got "+string(n))
		}
	case reflect.Slice:
		if tok != json.Delim('[') {
			return w.wrongKind(path, "array", tok)
		}
		for i := 0; w.dec.More(); i++ {
			if err := w.next(path+"["+itoa(i)+"]", t.Elem()); err != nil {
				return err
			}
		}
		_, err := w.dec.Token() // ]
		return err
	case reflect.Map, reflect.Struct:
		if tok != json.Delim('{') {
			return w.wrongKind(path, "object", tok)
		}
		for w.dec.More() {
			keyTok, err := w.dec.Token()
			if err != nil {
				return err
			}
			key, _ := keyTok.(string)
			var elem reflect.Type // nil: skip the value
			if t.Kind() == reflect.Map {
				elem = t.Elem()
			} else if ft, ok := fieldType(t, key); ok {
				elem = ft
			} else if err := w.add(keyField(path, key), unknownFieldProblem); err != nil {
				return err
			}
			if err := w.next(join(path, key), elem); err != nil {
				return err
			}
		}
		_, err := w.dec.Token() // }
		return err
	default:
		return w.skip(tok)
	}
	return nil
}

// next checks the next value against t, or skips it when t is nil.
func (w *shapeWalker) next(path string, t reflect.Type) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	if t == nil {
		return w.skip(tok)
	}
	return w.value(path, t, tok)
}

func (w *shapeWalker) wrongKind(path, want string, tok json.Token) error {
	if err := w.add(path, "must be a JSON "+want+", got "+jsonKindOf(tok)); err != nil {
		return err
	}
	return w.skip(tok)
}

func (w *shapeWalker) add(path, problem string) error {
	if len(w.p.list) >= maxReportedProblems {
		w.p.add(fieldOrBody(w.prefix), "has more problems not listed: fix the ones above first")
		return errTooManyProblems
	}
	w.p.add(path, problem)
	return nil
}

// skip consumes the rest of the value that starts with tok.
func (w *shapeWalker) skip(tok json.Token) error {
	depth := 0
	for {
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
		if depth == 0 {
			return nil
		}
		var err error
		if tok, err = w.dec.Token(); err != nil {
			return err
		}
	}
}

func jsonKindOf(tok json.Token) string {
	switch tok := tok.(type) {
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case json.Delim:
		if tok == '[' {
			return "array"
		}
		return "object"
	}
	return "null"
}

// fieldType finds the field of struct t that encoding/json decodes key into:
// the one of that name, else one whose name matches but for case.
func fieldType(t reflect.Type, key string) (reflect.Type, bool) {
	var folded reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		if name == key {
			return f.Type, true
		}
		if folded == nil && strings.EqualFold(name, key) {
			folded = f.Type
		}
	}
	return folded, folded != nil
}
