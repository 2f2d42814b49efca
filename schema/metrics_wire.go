package schema

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// The API writes metric batches to the event log in a compact binary encoding
// instead of JSON: every consumer of the metrics stream (the ClickHouse sink,
// the impact analysis, replay) decodes every batch, and decoding JSON was most
// of the pipeline's CPU time. A binary batch is about a fifth of its JSON and
// decodes some twenty times faster. It is still validated as JSON is, because
// anyone who can publish to NATS can write one: the encoding saves parsing,
// not checking. JSON stays accepted on the stream for outside publishers.

// EncodingHeader is the message header that names the encoding of a message's
// body on the event log. A body without it is JSON.
const EncodingHeader = "Deploywatch-Encoding"

// MetricsBinaryEncoding is EncodingHeader's value for a metrics batch in
// deploywatch's binary encoding (MetricsBatch.AppendBinary).
const MetricsBinaryEncoding = "deploywatch-metrics-binary/1"

// metricsMagic starts every binary batch, so that the body names its own
// encoding too: no JSON text starts with a zero byte.
const metricsMagic = "\x00DWMB\x01"

// EncodingOf names the encoding of a body as EncodingHeader would: "" for
// JSON (or anything else), MetricsBinaryEncoding for a binary batch.
func EncodingOf(data []byte) string {
	if len(data) >= len(metricsMagic) && string(data[:len(metricsMagic)]) == metricsMagic {
		return MetricsBinaryEncoding
	}
	return ""
}

// DecodeMetricsMessage decodes a metrics batch as the event log stores it,
// in the encoding that the message's EncodingHeader names ("" for JSON),
// normalizes it and validates it as the API does. Every consumer of the
// metrics stream decodes with it. Samples of a binary batch may share their
// histograms' BoundsMs: treat them as read-only.
func DecodeMetricsMessage(encoding string, data []byte, b *MetricsBatch) error {
	switch encoding {
	case "":
		return decodeMetrics(data, b, "")
	case MetricsBinaryEncoding:
		if err := decodeMetricsBinary(data, b); err != nil {
			return &ValidationError{Fields: []FieldError{{Field: "body", Problem: "is not a valid binary metrics batch: " + err.Error()}}}
		}
		b.Normalize(data)
		var p problems
		b.validate(&p, "")
		return p.err()
	default:
		return fmt.Errorf("cannot decode a metrics batch in the encoding %q (header %s): this version knows JSON and %s", encoding, EncodingHeader, MetricsBinaryEncoding)
	}
}

// The binary encoding, little-endian, with varints as encoding/binary writes them:
//
//	magic     "\x00DWMB\x01"
//	batch     id, service, env (strings: uvarint length, then the bytes)
//	strings   uvarint n, then n strings; samples refer to them by index + 1, 0 is ""
//	bounds    uvarint n, then n times: uvarint length, that many float64;
//	          histograms refer to them by index + 1
//	samples   uvarint n, then n times:
//	  flags      1 byte: bits 0-4 which of p50, p90, p95, p99, max follow; bit 5
//	             latency_ms present; bit 6 histogram present; bit 7 interval_s
//	             as the previous sample's
//	  time       varint seconds since the previous sample's (the first: since
//	             the Unix epoch), uvarint nanoseconds
//	  interval_s float64, unless flag bit 7
//	  requests, errors                          uvarint
//	  service, env, version, instance           uvarint string references
//	  quantiles  float64 each, as flagged
//	  histogram  when flagged: uvarint bounds reference, uvarint n, n uvarint counts
//
// Only valid batches are encoded: absent or unparsable counts, times and
// numbers have no representation, and the decoder never produces them.
const (
	wireLatency    = 1 << 5
	wireHistogram  = 1 << 6
	wireSameInterv = 1 << 7
	wireQuantiles  = 1<<5 - 1
)

// AppendBinary appends the batch in the binary encoding to dst. b must be
// valid (see Validate).
func (b *MetricsBatch) AppendBinary(dst []byte) []byte {
	// Strings and histogram bounds go into tables ahead of the samples, which
	// refer to them: a batch repeats a few versions and instances thousands of times.
	refs := make([]uint32, 5*len(b.Samples))
	var strs []string
	strIndex := map[string]uint32{}
	ref := func(s string) uint32 {
		if s == "" {
			return 0
		}
		if i, ok := strIndex[s]; ok {
			return i
		}
		strs = append(strs, s)
		strIndex[s] = uint32(len(strs))
		return uint32(len(strs))
	}
	var bounds [][]float64
	boundsRef := func(bs []float64) uint32 {
		// Histograms of one batch nearly always share their bounds; look back a little.
		for i := len(bounds) - 1; i >= max(0, len(bounds)-8); i-- {
			if slices.Equal(bounds[i], bs) {
				return uint32(i + 1)
			}
		}
		bounds = append(bounds, bs)
		return uint32(len(bounds))
	}
	size := len(metricsMagic) + len(b.ID) + len(b.Service) + len(b.Env) + 16
	for i := range b.Samples {
		s := &b.Samples[i]
		r := refs[5*i : 5*i+5]
		r[0], r[1], r[2], r[3] = ref(s.Service), ref(s.Env), ref(s.Version), ref(s.Instance)
		size += 24
		if s.LatencyMs != nil {
			size += 40
		}
		if h := s.LatencyHistogram; h != nil {
			r[4] = boundsRef(h.BoundsMs)
			size += 4 + 3*len(h.Counts)
		}
	}
	dst = slices.Grow(dst, size)
	dst = append(dst, metricsMagic...)
	dst = appendWireString(dst, b.ID)
	dst = appendWireString(dst, b.Service)
	dst = appendWireString(dst, b.Env)
	dst = binary.AppendUvarint(dst, uint64(len(strs)))
	for _, s := range strs {
		dst = appendWireString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(len(bounds)))
	for _, bs := range bounds {
		dst = binary.AppendUvarint(dst, uint64(len(bs)))
		for _, v := range bs {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.Samples)))
	var prevSec int64
	prevInterval := math.NaN()
	for i := range b.Samples {
		s := &b.Samples[i]
		r := refs[5*i : 5*i+5]
		var flags byte
		var q [5]Number
		if s.LatencyMs != nil {
			flags |= wireLatency
			q = [5]Number{s.LatencyMs.P50, s.LatencyMs.P90, s.LatencyMs.P95, s.LatencyMs.P99, s.LatencyMs.Max}
			for j := range q {
				if q[j].Set {
					flags |= 1 << j
				}
			}
		}
		if s.LatencyHistogram != nil {
			flags |= wireHistogram
		}
		if s.IntervalS.Value == prevInterval {
			flags |= wireSameInterv
		}
		dst = append(dst, flags)
		sec := s.Time.Time.Unix()
		dst = binary.AppendVarint(dst, sec-prevSec)
		dst = binary.AppendUvarint(dst, uint64(s.Time.Time.Nanosecond()))
		prevSec = sec
		if flags&wireSameInterv == 0 {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.IntervalS.Value))
			prevInterval = s.IntervalS.Value
		}
		dst = binary.AppendUvarint(dst, s.Requests.Value)
		dst = binary.AppendUvarint(dst, s.Errors.Value)
		for _, x := range r[:4] {
			dst = binary.AppendUvarint(dst, uint64(x))
		}
		for j := range q {
			if flags&(1<<j) != 0 {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(q[j].Value))
			}
		}
		if h := s.LatencyHistogram; h != nil {
			dst = binary.AppendUvarint(dst, uint64(r[4]))
			dst = binary.AppendUvarint(dst, uint64(len(h.Counts)))
			for _, c := range h.Counts {
				dst = binary.AppendUvarint(dst, c.Value)
			}
		}
	}
	return dst
}

func appendWireString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

var errTruncated = errors.New("it ends early")

// wireReader reads the binary encoding, remembering the first error.
type wireReader struct {
	data []byte
	off  int
	err  error
}

func (r *wireReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.off = len(r.data)
}

func (r *wireReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.data[r.off:])
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.off += n
	return v
}

func (r *wireReader) varint() int64 {
	v, n := binary.Varint(r.data[r.off:])
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.off += n
	return v
}

func (r *wireReader) byte() byte {
	if r.off >= len(r.data) {
		r.fail(errTruncated)
		return 0
	}
	r.off++
	return r.data[r.off-1]
}

func (r *wireReader) float() float64 {
	if len(r.data)-r.off < 8 {
		r.fail(errTruncated)
		return 0
	}
	r.off += 8
	return math.Float64frombits(binary.LittleEndian.Uint64(r.data[r.off-8:]))
}

func (r *wireReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.data)-r.off) {
		r.fail(errTruncated)
		return ""
	}
	r.off += int(n)
	return string(r.data[r.off-int(n) : r.off])
}

// count reads a number of elements that take at least size bytes each, so a
// corrupt length cannot make the decoder allocate more than the data justifies.
func (r *wireReader) count(what string, size int) int {
	n := r.uvarint()
	if n > uint64((len(r.data)-r.off)/size) {
		r.fail(fmt.Errorf("it claims %d %s in %d bytes", n, what, len(r.data)-r.off))
		return 0
	}
	return int(n)
}

// number reads a float64 that must be finite, as JSON numbers are.
func (r *wireReader) number() Number {
	v := r.float()
	if math.IsInf(v, 0) || math.IsNaN(v) {
		r.fail(fmt.Errorf("it holds the number %g at byte %d: numbers must be finite", v, r.off-8))
		return Number{}
	}
	return Number{Value: v, Set: true}
}

// decodeMetricsBinary decodes data into b, allocating per batch rather than
// per sample. It checks the encoding only; the values are validated by the caller.
func decodeMetricsBinary(data []byte, b *MetricsBatch) error {
	if EncodingOf(data) != MetricsBinaryEncoding {
		return errors.New("it does not start with the binary batch's magic bytes")
	}
	r := &wireReader{data: data, off: len(metricsMagic)}
	*b = MetricsBatch{Type: TypeMetrics}
	b.ID, b.Service, b.Env = r.string(), r.string(), r.string()
	strs := make([]string, r.count("strings", 1)+1)
	for i := 1; i < len(strs); i++ {
		strs[i] = r.string()
	}
	str := func() string {
		i := r.uvarint()
		if i >= uint64(len(strs)) {
			r.fail(fmt.Errorf("it refers to string %d of %d", i, len(strs)-1))
			return ""
		}
		return strs[i]
	}
	bounds := make([][]float64, r.count("histogram bounds", 1))
	for i := range bounds {
		bounds[i] = make([]float64, r.count("bounds", 8))
		for j := range bounds[i] {
			bounds[i][j] = r.float()
		}
	}
	const minSample = 9 // flags, time (2), interval or not, requests, errors, 4 strings
	n := r.count("samples", minSample)
	if r.err != nil {
		return r.err
	}
	b.Samples = make([]Sample, n)
	// One allocation for all the samples' quantiles and one for their
	// histograms' counts, instead of one per sample.
	var quantiles []LatencyQuantiles
	var histograms []LatencyHistogram
	var counts []Count
	var sec int64
	interval := Number{}
	for i := range b.Samples {
		s := &b.Samples[i]
		flags := r.byte()
		sec += r.varint()
		nsec := r.uvarint()
		if nsec >= 1e9 {
			r.fail(fmt.Errorf("sample %d has %d nanoseconds", i, nsec))
		}
		s.Time = Time{Time: time.Unix(sec, int64(nsec)).UTC()}
		if flags&wireSameInterv == 0 {
			interval = r.number()
		} else if i == 0 {
			r.fail(errors.New("its first sample repeats a previous interval"))
		}
		s.IntervalS = interval
		s.Requests = Count{Value: r.uvarint(), Set: true}
		s.Errors = Count{Value: r.uvarint(), Set: true}
		s.Service, s.Env, s.Version, s.Instance = str(), str(), str(), str()
		if flags&wireLatency != 0 {
			if len(quantiles) == cap(quantiles) {
				quantiles = make([]LatencyQuantiles, 0, min(n-i, max(64, 2*cap(quantiles))))
			}
			quantiles = quantiles[:len(quantiles)+1]
			q := &quantiles[len(quantiles)-1]
			for j, dst := range [5]*Number{&q.P50, &q.P90, &q.P95, &q.P99, &q.Max} {
				if flags&(1<<j) != 0 {
					*dst = r.number()
				}
			}
			s.LatencyMs = q
		} else if flags&wireQuantiles != 0 {
			r.fail(fmt.Errorf("sample %d has quantiles without latency_ms", i))
		}
		if flags&wireHistogram != 0 {
			if len(histograms) == cap(histograms) {
				histograms = make([]LatencyHistogram, 0, min(n-i, max(16, 2*cap(histograms))))
			}
			histograms = histograms[:len(histograms)+1]
			h := &histograms[len(histograms)-1]
			ref := r.uvarint()
			if ref == 0 || ref > uint64(len(bounds)) {
				r.fail(fmt.Errorf("sample %d refers to histogram bounds %d of %d", i, ref, len(bounds)))
				return r.err
			}
			h.BoundsMs = bounds[ref-1]
			k := r.count("counts", 1)
			if len(counts)+k > cap(counts) {
				counts = make([]Count, 0, min((n-i)*k, max(16*k, 2*cap(counts))))
			}
			h.Counts = counts[len(counts) : len(counts)+k : len(counts)+k]
			counts = counts[:len(counts)+k]
			for j := range h.Counts {
				h.Counts[j] = Count{Value: r.uvarint(), Set: true}
			}
			s.LatencyHistogram = h
		}
		if r.err != nil {
			return r.err
		}
	}
	if r.off != len(data) {
		return fmt.Errorf("it has %d bytes after its last sample", len(data)-r.off)
	}
	return nil
}
