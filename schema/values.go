package schema

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Time is an RFC 3339 timestamp. A value that does not parse is kept rather than
// failing the whole decode, so that validation can name the field it came from.
type Time struct {
	time.Time
	invalid string
}

// At returns t as a Time in UTC.
func At(t time.Time) Time { return Time{Time: t.UTC()} }

// IsZero reports whether the timestamp is absent (and not merely invalid).
func (t Time) IsZero() bool { return t.Time.IsZero() && t.invalid == "" }

func (t *Time) UnmarshalJSON(b []byte) error {
	*t = Time{}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		t.invalid = string(b)
		return nil
	}
	parsed, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.invalid = s
		if t.invalid == "" {
			t.invalid = `""`
		}
		return nil
	}
	t.Time = parsed.UTC()
	return nil
}

func (t Time) MarshalJSON() ([]byte, error) {
	if t.Time.IsZero() {
		return []byte("null"), nil
	}
	b := make([]byte, 0, len(time.RFC3339Nano)+2)
	b = append(b, '"')
	b = t.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

func (t Time) check(p *problems, field string, required bool) {
	switch {
	case t.invalid != "":
		p.add(field, "must be an RFC 3339 time such as 2026-11-22T10:04:05Z, got "+strconv.Quote(t.invalid))
	case t.Time.IsZero() && required:
		p.add(field, "is required: an RFC 3339 time such as 2026-11-22T10:04:05Z")
	case !t.Time.IsZero() && t.Time.Year() < 2000:
		p.add(field, "is before the year 2000: send the real event time in RFC 3339")
	case t.Time.After(time.Now().Add(maxClockSkew)):
		p.add(field, "is more than 1h in the future: check the sender's clock and time zone")
	}
}

// UsableTime tells whether t passes the checks every event time gets: not
// before the year 2000 and at most maxClockSkew in the future.
func UsableTime(t time.Time) bool {
	return t.Year() >= 2000 && !t.After(time.Now().Add(maxClockSkew))
}

// maxClockSkew is how far in the future an event time may lie before it is
// taken for a wrong clock or time zone.
const maxClockSkew = time.Hour

// Count is a required non-negative whole number, such as a request count. It
// remembers whether it was present and what it could not parse.
type Count struct {
	Value   uint64
	Set     bool
	invalid string
}

// CountOf returns a present Count.
func CountOf(n uint64) Count { return Count{Value: n, Set: true} }

func (c *Count) UnmarshalJSON(b []byte) error {
	*c = Count{}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		// Accept whole numbers written as floats (1e3, 12.0): some senders only have doubles.
		f, ferr := strconv.ParseFloat(string(b), 64)
		if ferr != nil || f < 0 || f != math.Trunc(f) || f > math.MaxUint64/2 {
			c.invalid = string(b)
			return nil
		}
		n = uint64(f)
	}
	c.Value, c.Set = n, true
	return nil
}

func (c Count) MarshalJSON() ([]byte, error) {
	if !c.Set {
		return []byte("null"), nil
	}
	return strconv.AppendUint(nil, c.Value, 10), nil
}

func (c Count) check(p *problems, field string) {
	switch {
	case c.invalid != "":
		p.add(field, "must be a whole number >= 0, got "+c.invalid)
	case !c.Set:
		p.add(field, "is required: a whole number >= 0")
	}
}

// Number is an optional finite number, such as a latency quantile.
type Number struct {
	Value   float64
	Set     bool
	invalid string
}

// NumberOf returns a present Number.
func NumberOf(v float64) Number { return Number{Value: v, Set: true} }

func (n *Number) UnmarshalJSON(b []byte) error {
	*n = Number{}
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		n.invalid = string(b)
		return nil
	}
	n.Value, n.Set = v, true
	return nil
}

func (n Number) MarshalJSON() ([]byte, error) {
	if !n.Set {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, n.Value, 'g', -1, 64), nil
}

// IsZero lets `omitzero` leave out absent numbers.
func (n Number) IsZero() bool { return !n.Set && n.invalid == "" }

func (n Number) checkNonNegative(p *problems, field string) {
	switch {
	case n.invalid != "":
		p.add(field, "must be a finite number, got "+n.invalid)
	case n.Set && n.Value < 0:
		p.add(field, "must be >= 0, got "+strconv.FormatFloat(n.Value, 'g', -1, 64))
	}
}
