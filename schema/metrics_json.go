package schema

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Metric batches are deploywatch's hot path: every sample is decoded at the
// API (the consumers of the event log read the binary encoding of
// metrics_wire.go). encoding/json's reflection (and its re-scan of every
// custom MarshalJSON's output) made that path a few times slower than
// ClickHouse, so batches are decoded in one pass by scanMetricsBatch
// (metrics_scan.go) when they have the usual shape, else by walking a
// fastjson value, and encoded by appending bytes. Walking the value lets
// every problem name its exact field, index included.

var parsers fastjson.ParserPool

// decodeMetricsBatch decodes raw into b, recording shape problems (unknown
// fields, values of the wrong kind) in p. It reports false when raw is not a
// JSON object at all.
func decodeMetricsBatch(raw []byte, b *MetricsBatch, prefix string, p *problems) bool {
	// Most batches are decoded in one pass; the rest, the invalid ones
	// among them, by walking a value tree, where every problem is named.
	if scanMetricsBatch(raw, b) {
		return true
	}
	return decodeMetricsTree(raw, b, prefix, p)
}

// decodeMetricsTree is decodeMetricsBatch on a fastjson value tree.
func decodeMetricsTree(raw []byte, b *MetricsBatch, prefix string, p *problems) bool {
	// fastjson's parser takes what is not JSON (0100, 60., raw control
	// characters in strings); its validator does not.
	if err := fastjson.ValidateBytes(raw); err != nil {
		p.add(fieldOrBody(prefix), "is not valid JSON: "+err.Error())
		return false
	}
	parser := parsers.Get()
	defer parsers.Put(parser)
	v, err := parser.ParseBytes(raw)
	if err != nil {
		p.add(fieldOrBody(prefix), "is not valid JSON: "+err.Error())
		return false
	}
	obj, err := v.Object()
	if err != nil {
		p.add(fieldOrBody(prefix), "must be a JSON object")
		return false
	}
	obj.Visit(func(key []byte, v *fastjson.Value) {
		switch string(key) {
		case "id":
			b.ID = jsonString(p, join(prefix, "id"), v)
		case "type":
			b.Type = Type(jsonString(p, join(prefix, "type"), v))
		case "service":
			b.Service = jsonString(p, join(prefix, "service"), v)
		case "env":
			b.Env = jsonString(p, join(prefix, "env"), v)
		case "samples":
			field := join(prefix, "samples")
			if v.Type() == fastjson.TypeNull {
				return
			}
			arr, err := v.Array()
			if err != nil {
				p.add(field, "must be a JSON array of samples")
				return
			}
			b.Samples = make([]Sample, len(arr))
			var scratch problems
			for i, sv := range arr {
				scratch.list = scratch.list[:0]
				decodeSample(sv, &b.Samples[i], &scratch)
				p.addUnder(field, i, &scratch)
			}
		default:
			p.add(keyField(prefix, string(key)), unknownFieldProblem)
		}
	})
	return true
}

// decodeSample decodes one sample; problems' paths are relative to it.
func decodeSample(v *fastjson.Value, s *Sample, p *problems) {
	const prefix = ""
	obj, err := v.Object()
	if err != nil {
		p.add("", "must be a JSON object")
		return
	}
	obj.Visit(func(key []byte, v *fastjson.Value) {
		switch string(key) {
		case "time":
			s.Time = jsonTime(v)
		case "interval_s":
			s.IntervalS = jsonNumber(v)
		case "service":
			s.Service = jsonString(p, "service", v)
		case "env":
			s.Env = jsonString(p, "env", v)
		case "version":
			s.Version = jsonString(p, "version", v)
		case "instance":
			s.Instance = jsonString(p, "instance", v)
		case "requests":
			s.Requests = jsonCount(v)
		case "errors":
			s.Errors = jsonCount(v)
		case "latency_ms":
			s.LatencyMs = decodeQuantiles(v, "latency_ms", p)
		case "latency_histogram":
			s.LatencyHistogram = decodeHistogram(v, "latency_histogram", p)
		default:
			p.add(keyField("", string(key)), unknownFieldProblem)
		}
	})
}

func decodeQuantiles(v *fastjson.Value, prefix string, p *problems) *LatencyQuantiles {
	if v.Type() == fastjson.TypeNull {
		return nil
	}
	obj, err := v.Object()
	if err != nil {
		p.add(prefix, "must be a JSON object such as {\"p50\": 12.5, \"p99\": 80}")
		return nil
	}
	q := &LatencyQuantiles{}
	obj.Visit(func(key []byte, v *fastjson.Value) {
		switch string(key) {
		case "p50":
			q.P50 = jsonNumber(v)
		case "p90":
			q.P90 = jsonNumber(v)
		case "p95":
			q.P95 = jsonNumber(v)
		case "p99":
			q.P99 = jsonNumber(v)
		case "max":
			q.Max = jsonNumber(v)
		default:
			p.add(join(prefix, string(key)), "is not a known quantile: use p50, p90, p95, p99 or max")
		}
	})
	return q
}

func decodeHistogram(v *fastjson.Value, prefix string, p *problems) *LatencyHistogram {
	if v.Type() == fastjson.TypeNull {
		return nil
	}
	obj, err := v.Object()
	if err != nil {
		p.add(prefix, "must be a JSON object {\"bounds_ms\": [...], \"counts\": [...]}")
		return nil
	}
	h := &LatencyHistogram{}
	obj.Visit(func(key []byte, v *fastjson.Value) {
		switch string(key) {
		case "bounds_ms":
			field := prefix + ".bounds_ms"
			arr, err := v.Array()
			if err != nil {
				p.add(field, "must be a JSON array of numbers")
				return
			}
			h.BoundsMs = make([]float64, len(arr))
			for i, e := range arr {
				n := jsonNumber(e)
				if !n.Set {
					p.add(field+"["+itoa(i)+"]", "must be a number, got "+e.String())
				}
				h.BoundsMs[i] = n.Value
			}
		case "counts":
			field := prefix + ".counts"
			arr, err := v.Array()
			if err != nil {
				p.add(field, "must be a JSON array of whole numbers")
				return
			}
			h.Counts = make([]Count, len(arr))
			for i, e := range arr {
				h.Counts[i] = jsonCount(e)
				if !h.Counts[i].Set {
					p.add(field+"["+itoa(i)+"]", "must be a whole number >= 0, got "+e.String())
				}
			}
		default:
			p.add(keyField(prefix, string(key)), unknownFieldProblem)
		}
	})
	return h
}

func jsonString(p *problems, field string, v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return string(b)
	case fastjson.TypeNull:
		return ""
	}
	p.add(field, "must be a JSON string, got "+v.String())
	return ""
}

func jsonTime(v *fastjson.Value) Time {
	switch v.Type() {
	case fastjson.TypeNull:
		return Time{}
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			if len(b) == 0 {
				return Time{invalid: `""`}
			}
			return Time{invalid: string(b)}
		}
		return Time{Time: t.UTC()}
	}
	return Time{invalid: v.String()}
}

func jsonNumber(v *fastjson.Value) Number {
	switch v.Type() {
	case fastjson.TypeNull:
		return Number{}
	case fastjson.TypeNumber:
		if f, err := v.Float64(); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return Number{Value: f, Set: true}
		}
	}
	return Number{invalid: v.String()}
}

func jsonCount(v *fastjson.Value) Count {
	switch v.Type() {
	case fastjson.TypeNull:
		return Count{}
	case fastjson.TypeNumber:
		if n, err := v.Uint64(); err == nil {
			return Count{Value: n, Set: true}
		}
		// Whole numbers written as floats (1e3, 12.0) are counts too.
		var c Count
		_ = c.UnmarshalJSON(v.MarshalTo(nil))
		return c
	}
	return Count{invalid: v.String()}
}

// AppendJSON appends the batch's JSON encoding to dst. It is what json.Marshal
// produces for the batch, without reflection.
func (b *MetricsBatch) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, b.ID)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, string(b.Type))
	dst = append(dst, `,"service":`...)
	dst = appendJSONString(dst, b.Service)
	dst = append(dst, `,"env":`...)
	dst = appendJSONString(dst, b.Env)
	dst = append(dst, `,"samples":[`...)
	for i := range b.Samples {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = b.Samples[i].appendJSON(dst)
	}
	return append(dst, "]}"...)
}

func (s *Sample) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"time":`...)
	dst = appendJSONTime(dst, s.Time)
	dst = append(dst, `,"interval_s":`...)
	dst = appendJSONNumber(dst, s.IntervalS)
	for _, f := range [...]struct{ name, value string }{
		{`,"service":`, s.Service}, {`,"env":`, s.Env}, {`,"version":`, s.Version}, {`,"instance":`, s.Instance},
	} {
		if f.value != "" {
			dst = append(dst, f.name...)
			dst = appendJSONString(dst, f.value)
		}
	}
	dst = append(dst, `,"requests":`...)
	dst = appendJSONCount(dst, s.Requests)
	dst = append(dst, `,"errors":`...)
	dst = appendJSONCount(dst, s.Errors)
	if q := s.LatencyMs; q != nil {
		dst = append(dst, `,"latency_ms":{`...)
		first := true
		for _, f := range [...]struct {
			name string
			n    Number
		}{{`"p50":`, q.P50}, {`"p90":`, q.P90}, {`"p95":`, q.P95}, {`"p99":`, q.P99}, {`"max":`, q.Max}} {
			if !f.n.Set {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(dst, f.name...)
			dst = appendJSONNumber(dst, f.n)
		}
		dst = append(dst, '}')
	}
	if h := s.LatencyHistogram; h != nil {
		dst = append(dst, `,"latency_histogram":{"bounds_ms":[`...)
		for i, bound := range h.BoundsMs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendFloat(dst, bound, 'g', -1, 64)
		}
		dst = append(dst, `],"counts":[`...)
		for i, c := range h.Counts {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONCount(dst, c)
		}
		dst = append(dst, "]}"...)
	}
	return append(dst, '}')
}

func appendJSONTime(dst []byte, t Time) []byte {
	if t.Time.IsZero() {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = t.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

func appendJSONNumber(dst []byte, n Number) []byte {
	if !n.Set {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, n.Value, 'g', -1, 64)
}

func appendJSONCount(dst []byte, c Count) []byte {
	if !c.Set {
		return append(dst, "null"...)
	}
	return strconv.AppendUint(dst, c.Value, 10)
}

// appendJSONString appends s as a JSON string, escaped as encoding/json does
// (without its HTML escaping, which JSON does not need).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
