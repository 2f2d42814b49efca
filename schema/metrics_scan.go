package schema

import (
	"strconv"
	"time"

	"github.com/valyala/fastjson/fastfloat"
)

// scanMetricsBatch decodes a metrics batch of the usual shape in one pass
// over raw, without the validation pass and the value tree of the general
// path (decodeMetricsBatch), which took most of the API's time.
//
// It takes strict JSON only, and only what it can decode exactly as the
// general path would: it gives up on anything else (escapes in strings,
// nulls, unknown fields, values of the wrong kind, numbers or times of an
// unusual form, any syntax error) and leaves b as it was, and the caller then
// decodes with the general path, which names every problem. Where it
// succeeds, b holds what the general path would have given, so validation
// follows as before.
func scanMetricsBatch(raw []byte, b *MetricsBatch) bool {
	s := scanner{data: raw}
	decoded := *b
	if !s.batch(&decoded) {
		return false
	}
	*b = decoded
	return true
}

// scanner walks JSON text; every method reports false when it meets
// something it does not handle.
type scanner struct {
	data []byte
	i    int
	// Samples of a batch repeat a few versions and instances: they share one copy.
	intern map[string]string
	// Quantiles, histograms and their values are allocated in chunks.
	quantiles []LatencyQuantiles
	floats    []float64
	counts    []Count
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume skips white space and then c.
func (s *scanner) consume(c byte) bool {
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// object walks the members of an object, calling member with each key (the
// scanner then stands at the value). An empty object is fine.
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.consume('{') {
		return false
	}
	if s.consume('}') {
		return true
	}
	for {
		s.ws()
		key, ok := s.rawString()
		if !ok || !s.consume(':') {
			return false
		}
		s.ws()
		if !member(key) {
			return false
		}
		if s.consume(',') {
			continue
		}
		return s.consume('}')
	}
}

// array walks the elements of an array, calling element with the scanner at each.
func (s *scanner) array(element func() bool) bool {
	if !s.consume('[') {
		return false
	}
	if s.consume(']') {
		return true
	}
	for {
		s.ws()
		if !element() {
			return false
		}
		if s.consume(',') {
			continue
		}
		return s.consume(']')
	}
}

// rawString returns the bytes of a string without escapes.
func (s *scanner) rawString() ([]byte, bool) {
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.data); j++ {
		switch c := s.data[j]; {
		case c == '"':
			s.i = j + 1
			return s.data[start:j], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func (s *scanner) string() (string, bool) {
	b, ok := s.rawString()
	if !ok {
		return "", false
	}
	if v, ok := s.intern[string(b)]; ok {
		return v, true
	}
	v := string(b)
	if s.intern == nil {
		s.intern = make(map[string]string)
	}
	if len(s.intern) < 1024 {
		s.intern[v] = v
	}
	return v, true
}

// number returns the text of a number as JSON's grammar has it.
func (s *scanner) number() ([]byte, bool) {
	d, start := s.data, s.i
	j := start
	if j < len(d) && d[j] == '-' {
		j++
	}
	switch {
	case j < len(d) && d[j] == '0':
		j++
	case j < len(d) && d[j] >= '1' && d[j] <= '9':
		for j < len(d) && d[j] >= '0' && d[j] <= '9' {
			j++
		}
	default:
		return nil, false
	}
	if j < len(d) && d[j] == '.' {
		j++
		k := j
		for j < len(d) && d[j] >= '0' && d[j] <= '9' {
			j++
		}
		if j == k {
			return nil, false
		}
	}
	if j < len(d) && (d[j] == 'e' || d[j] == 'E') {
		j++
		if j < len(d) && (d[j] == '+' || d[j] == '-') {
			j++
		}
		k := j
		for j < len(d) && d[j] >= '0' && d[j] <= '9' {
			j++
		}
		if j == k {
			return nil, false
		}
	}
	s.i = j
	return d[start:j], true
}

// float reads a finite number as jsonNumber does (fastfloat.Parse). Numbers
// of up to 15 digits without an exponent, the usual kind, are computed here
// with fastfloat's operations. Longer ones without an exponent go to
// strconv.ParseFloat, as fastfloat sends them too (or, for 16-18 digits
// without a point, converts the integer exactly as strconv rounds it), and
// without allocating. Numbers with an exponent go to fastfloat itself.
func (s *scanner) float() (Number, bool) {
	text, ok := s.number()
	if !ok {
		return Number{}, false
	}
	t, minus := text, false
	if t[0] == '-' {
		t, minus = t[1:], true
	}
	var d uint64
	digits, frac, inFrac, exponent := 0, 0, false, false
	for _, c := range t {
		switch {
		case c >= '0' && c <= '9':
			d = d*10 + uint64(c-'0')
			digits++
			if inFrac {
				frac++
			}
		case c == '.':
			inFrac = true
		default:
			exponent = true
		}
	}
	if exponent || digits > 15 {
		var f float64
		var err error
		if exponent {
			f, err = fastfloat.Parse(string(text))
		} else {
			f, err = strconv.ParseFloat(string(text), 64)
		}
		if err != nil || f-f != 0 { // an error, ±Inf or NaN
			return Number{}, false
		}
		return Number{Value: f, Set: true}, true
	}
	f := float64(d)
	if frac > 0 {
		f /= pow10[frac]
	}
	if minus {
		f = -f
	}
	return Number{Value: f, Set: true}, true
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// count reads a whole number of up to 18 digits; other forms (1e3, 12.0,
// larger numbers) are left to the general path.
func (s *scanner) count() (Count, bool) {
	text, ok := s.number()
	if !ok || len(text) > 18 {
		return Count{}, false
	}
	var n uint64
	for _, c := range text {
		if c < '0' || c > '9' {
			return Count{}, false
		}
		n = n*10 + uint64(c-'0')
	}
	return Count{Value: n, Set: true}, true
}

func (s *scanner) batch(b *MetricsBatch) bool {
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			b.ID, ok = s.string()
		case "type":
			var t string
			t, ok = s.string()
			b.Type = Type(t)
		case "service":
			b.Service, ok = s.string()
		case "env":
			b.Env, ok = s.string()
		case "samples":
			var samples []Sample
			if n := len(s.data) / 200; n > 0 {
				samples = make([]Sample, 0, n) // about the size of a sample with quantiles
			}
			ok = s.array(func() bool {
				samples = append(samples, Sample{})
				return s.sample(&samples[len(samples)-1])
			})
			if samples == nil {
				samples = []Sample{}
			}
			b.Samples = samples
		}
		return ok
	})
	s.ws()
	return ok && s.i == len(s.data)
}

func (s *scanner) sample(sm *Sample) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "time":
			var raw []byte
			if raw, ok = s.rawString(); ok {
				sm.Time.Time, ok = parseRFC3339(raw)
				sm.Time.invalid = ""
			}
		case "interval_s":
			sm.IntervalS, ok = s.float()
		case "service":
			sm.Service, ok = s.string()
		case "env":
			sm.Env, ok = s.string()
		case "version":
			sm.Version, ok = s.string()
		case "instance":
			sm.Instance, ok = s.string()
		case "requests":
			sm.Requests, ok = s.count()
		case "errors":
			sm.Errors, ok = s.count()
		case "latency_ms":
			if len(s.quantiles) == cap(s.quantiles) {
				s.quantiles = make([]LatencyQuantiles, 0, 256)
			}
			s.quantiles = s.quantiles[:len(s.quantiles)+1]
			q := &s.quantiles[len(s.quantiles)-1]
			ok = s.object(func(key []byte) bool {
				var ok bool
				switch string(key) {
				case "p50":
					q.P50, ok = s.float()
				case "p90":
					q.P90, ok = s.float()
				case "p95":
					q.P95, ok = s.float()
				case "p99":
					q.P99, ok = s.float()
				case "max":
					q.Max, ok = s.float()
				}
				return ok
			})
			sm.LatencyMs = q
		case "latency_histogram":
			h := &LatencyHistogram{}
			ok = s.object(func(key []byte) bool {
				switch string(key) {
				case "bounds_ms":
					from := len(s.floats)
					ok := s.array(func() bool {
						n, ok := s.float()
						if len(s.floats) == cap(s.floats) {
							// Start a new chunk and move this histogram's bounds to it.
							grown := make([]float64, len(s.floats)-from, max(1024, 2*(len(s.floats)-from)))
							copy(grown, s.floats[from:])
							s.floats, from = grown, 0
						}
						s.floats = append(s.floats, n.Value)
						return ok
					})
					h.BoundsMs = s.floats[from:len(s.floats):len(s.floats)]
					if h.BoundsMs == nil {
						h.BoundsMs = []float64{}
					}
					return ok
				case "counts":
					from := len(s.counts)
					ok := s.array(func() bool {
						c, ok := s.count()
						if len(s.counts) == cap(s.counts) {
							grown := make([]Count, len(s.counts)-from, max(1024, 2*(len(s.counts)-from)))
							copy(grown, s.counts[from:])
							s.counts, from = grown, 0
						}
						s.counts = append(s.counts, c)
						return ok
					})
					h.Counts = s.counts[from:len(s.counts):len(s.counts)]
					if h.Counts == nil {
						h.Counts = []Count{}
					}
					return ok
				}
				return false
			})
			sm.LatencyHistogram = h
		}
		return ok
	})
}

// parseRFC3339 parses the times that time.Parse(time.RFC3339Nano, ·) takes
// on its fast path, to the same instant in UTC: 2026-11-22T10:05:00Z,
// with 1-9 digits of fractional seconds, with Z or an offset ±hh:mm.
func parseRFC3339(b []byte) (time.Time, bool) {
	ok := true
	num := func(b []byte, lo, hi int) int {
		x := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				ok = false
				return lo
			}
			x = x*10 + int(c-'0')
		}
		if x < lo || x > hi {
			ok = false
			return lo
		}
		return x
	}
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year := num(b[0:4], 0, 9999)
	month := num(b[5:7], 1, 12)
	day := num(b[8:10], 1, daysIn(time.Month(month), year))
	hour := num(b[11:13], 0, 23)
	minute := num(b[14:16], 0, 59)
	sec := num(b[17:19], 0, 59)
	rest := b[19:]
	nsec := 0
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return time.Time{}, false
		}
		nsec = num(rest[1:n], 0, 999_999_999)
		for range 10 - n {
			nsec *= 10
		}
		rest = rest[n:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		offset = (num(rest[1:3], 0, 23)*60 + num(rest[4:6], 0, 59)) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	if !ok {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 30 + int((m+m/8)%2)
}
