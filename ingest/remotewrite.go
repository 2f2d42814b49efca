package ingest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// Prometheus remote_write 1.0: a snappy-compressed (block format) protobuf
// prometheus.WriteRequest. Only the fields deploywatch maps are decoded;
// metadata, exemplars and native histograms are skipped.

// rwSeries is one prometheus.TimeSeries.
type rwSeries struct {
	Labels  []rwLabel
	Samples []rwSample
}

type rwLabel struct {
	Name, Value string
}

type rwSample struct {
	Value       float64
	TimestampMs int64
}

// errRemoteWriteTooLarge is returned when the declared decoded size of a
// body exceeds the limit.
var errRemoteWriteTooLarge = errors.New("remote_write body too large")

// maxSnappyExpansion bounds how many bytes a snappy block decodes to per
// byte: no element yields more than 64 bytes out of 3 (a copy with a two-byte
// offset). A block that declares more is corrupt and is refused before its
// buffer is allocated, so a small body costs little however much it claims.
const maxSnappyExpansion = 22

// decodeSnappy decodes a snappy block after checking the size it declares
// against max, so that a small body claiming a huge size allocates nothing.
func decodeSnappy(dst, src []byte, max int) ([]byte, error) {
	n, err := snappy.DecodedLen(src)
	if err != nil {
		return nil, fmt.Errorf("cannot decode the snappy block: %v", err)
	}
	if n > max {
		return nil, fmt.Errorf("%w: it declares %d decoded bytes, the limit is %d", errRemoteWriteTooLarge, n, max)
	}
	if n > maxSnappyExpansion*len(src) {
		return nil, fmt.Errorf("cannot decode the snappy block: it declares %d decoded bytes in %d, more than snappy can expand to", n, len(src))
	}
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	out, err := snappy.Decode(dst[:n], src)
	if err != nil {
		return nil, fmt.Errorf("cannot decode the snappy block: %v", err)
	}
	return out, nil
}

// decodeRemoteWrite decodes the snappy-compressed WriteRequest src, appending
// its series to series.
func decodeRemoteWrite(series []rwSeries, src []byte, maxDecoded int) ([]rwSeries, error) {
	buf, err := decodeSnappy(nil, src, maxDecoded)
	if err != nil {
		return series, err
	}
	// buf is ours and is never written again.
	return decodeWriteRequest(series, buf)
}

// rwDecoder decodes one WriteRequest with few allocations: label strings are
// substrings of the request's buffer (as VictoriaMetrics does), and the series' labels and
// samples are sub-slices of two arenas, each allocated once at the size the
// request needs.
type rwDecoder struct {
	str     string // the request as a string
	capAll  int    // cap of the request's buffer
	labels  []rwLabel
	samples []rwSample
}

// sub is v, a sub-slice of the request's buffer, as a substring of d.str. A
// sub-slice that reaches to the end of the buffer's capacity (protowire only
// slices that way) starts cap(buf)-cap(v) bytes into it.
func (d *rwDecoder) sub(v []byte) string {
	off := d.capAll - cap(v)
	return d.str[off : off+len(v)]
}

// errRemoteWriteTooDense is returned for a request whose series would take
// more memory per byte than any Prometheus request does.
var errRemoteWriteTooDense = errors.New("remote_write body too dense")

// maxDecodedBytesPerByte bounds the memory a request's series take, per byte
// of the decoded request. Prometheus never sends more than 4: its shortest
// label (a one-letter name and value, 8 bytes) is 32 bytes decoded, its
// shortest series (only __name__, one sample of value 0, 26 bytes) 96. A
// request of hundreds of thousands of tiny series, which would take tens of
// times its size, is refused before its series are allocated.
const maxDecodedBytesPerByte = 6

const (
	seriesBytes = int(unsafe.Sizeof(rwSeries{}))
	labelBytes  = int(unsafe.Sizeof(rwLabel{}))
	sampleBytes = int(unsafe.Sizeof(rwSample{}))
)

// decodeWriteRequest decodes a protobuf WriteRequest. Series without samples
// carry nothing and are left out, costing no memory. The series' strings
// share b's memory: b must not be modified afterwards.
func decodeWriteRequest(series []rwSeries, b []byte) ([]rwSeries, error) {
	if len(b) == 0 {
		return series, nil
	}
	c := countWriteRequest(b)
	// The labels of a series without samples are decoded (and checked)
	// before it is left out: the arena has room for the longest such.
	labels := c.labels + c.maxSkippedLabels
	if need := c.series*seriesBytes + labels*labelBytes + c.samples*sampleBytes; need > maxDecodedBytesPerByte*len(b) {
		return series, fmt.Errorf("%w: its %d series, %d labels and %d samples in %d bytes would take %d bytes decoded, more than %d per byte: this is no Prometheus request",
			errRemoteWriteTooDense, c.series, c.labels, c.samples, len(b), need, maxDecodedBytesPerByte)
	}
	d := rwDecoder{
		str: unsafe.String(&b[0], len(b)), capAll: cap(b),
		labels: make([]rwLabel, 0, labels), samples: make([]rwSample, 0, c.samples),
	}
	series = slices.Grow(series, c.series)
	for i := 0; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return series, fmt.Errorf("cannot decode the WriteRequest: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			msg, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return series, fmt.Errorf("cannot decode timeseries %d: %w", i, protowire.ParseError(n))
			}
			b = b[n:]
			s, err := d.timeSeries(msg)
			if err != nil {
				return series, fmt.Errorf("cannot decode timeseries %d: %w", i, err)
			}
			i++
			if len(s.Samples) > 0 {
				series = append(series, s)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return series, fmt.Errorf("cannot decode the WriteRequest: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return series, nil
}

// rwCounts is what the series of a WriteRequest take once decoded.
type rwCounts struct {
	series, labels, samples int // of the series with samples
	maxSkippedLabels        int // the most labels of a series without samples
}

// countWriteRequest counts the series of a WriteRequest, their labels and
// samples, so that each is allocated once and a request too dense is refused
// before; it stops at the first error, which the decoding reports.
func countWriteRequest(b []byte) rwCounts {
	var c rwCounts
	for len(b) > 0 {
		num, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return c
		}
		b = b[m:]
		if num == 1 && typ == protowire.BytesType {
			msg, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return c
			}
			b = b[m:]
			labels, samples := countTimeSeries(msg)
			if samples == 0 {
				c.maxSkippedLabels = max(c.maxSkippedLabels, labels)
				continue
			}
			c.series++
			c.labels += labels
			c.samples += samples
			continue
		}
		m = protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return c
		}
		b = b[m:]
	}
	return c
}

// countTimeSeries counts the labels and samples of a prometheus.TimeSeries.
func countTimeSeries(b []byte) (labels, samples int) {
	for len(b) > 0 {
		// The fast path: a label (field 1) or a sample (field 2) of less
		// than 128 bytes, as Prometheus sends them.
		if len(b) >= 2 && (b[0] == 0x0a || b[0] == 0x12) && b[1] < 0x80 && len(b) >= 2+int(b[1]) {
			if b[0] == 0x0a {
				labels++
			} else {
				samples++
			}
			b = b[2+int(b[1]):]
			continue
		}
		num, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return labels, samples
		}
		b = b[m:]
		if typ == protowire.BytesType {
			switch num {
			case 1:
				labels++
			case 2:
				samples++
			}
		}
		m = protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return labels, samples
		}
		b = b[m:]
	}
	return labels, samples
}

func (d *rwDecoder) timeSeries(b []byte) (rwSeries, error) {
	l0, s0 := len(d.labels), len(d.samples)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return rwSeries{}, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			msg, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return rwSeries{}, protowire.ParseError(n)
			}
			b = b[n:]
			l, err := d.label(msg)
			if err != nil {
				return rwSeries{}, fmt.Errorf("label %d: %w", len(d.labels)-l0, err)
			}
			d.labels = append(d.labels, l)
		case num == 2 && typ == protowire.BytesType:
			msg, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return rwSeries{}, protowire.ParseError(n)
			}
			b = b[n:]
			smp, err := decodeSample(msg)
			if err != nil {
				return rwSeries{}, fmt.Errorf("sample %d: %w", len(d.samples)-s0, err)
			}
			d.samples = append(d.samples, smp)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return rwSeries{}, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	// The arenas were sized by countWriteRequest, so they do not move; were
	// one to, the indices would still hold.
	ls, ss := d.labels[l0:], d.samples[s0:]
	// The spec says a series' labels MUST be sorted by name and unique: a
	// sender that breaks it may mean two series by one, so it is refused.
	for i := 1; i < len(ls); i++ {
		if ls[i].Name <= ls[i-1].Name {
			if ls[i].Name == ls[i-1].Name {
				return rwSeries{}, fmt.Errorf("label %q appears twice: a series' labels must be unique (remote_write spec)", ls[i].Name)
			}
			return rwSeries{}, fmt.Errorf("label %q comes after %q: a series' labels must be sorted by name (remote_write spec)", ls[i].Name, ls[i-1].Name)
		}
	}
	if len(ss) == 0 {
		// Left out: its labels' room is used again.
		d.labels = d.labels[:l0]
		return rwSeries{}, nil
	}
	s := rwSeries{Labels: ls[:len(ls):len(ls)], Samples: ss[:len(ss):len(ss)]}
	if len(s.Labels) == 0 {
		s.Labels = nil
	}
	return s, nil
}

func (d *rwDecoder) label(b []byte) (rwLabel, error) {
	// The fast path: a name and a value of less than 128 bytes each, in
	// this order, as Prometheus sends labels.
	if len(b) >= 4 && b[0] == 0x0a && b[1] > 0 && b[1] < 0x80 {
		n := int(b[1])
		if len(b) >= 4+n && b[2+n] == 0x12 && b[3+n] < 0x80 && len(b) == 4+n+int(b[3+n]) {
			return rwLabel{Name: d.sub(b[2 : 2+n]), Value: d.sub(b[4+n:])}, nil
		}
	}
	var l rwLabel
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return l, protowire.ParseError(n)
			}
			b = b[n:]
			if num == 1 {
				l.Name = d.sub(v)
			} else {
				l.Value = d.sub(v)
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return l, protowire.ParseError(n)
		}
		b = b[n:]
	}
	if l.Name == "" {
		return l, errors.New("the label has no name")
	}
	return l, nil
}

func decodeSample(b []byte) (rwSample, error) {
	var s rwSample
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return s, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			s.Value = math.Float64frombits(v)
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
			s.TimestampMs = int64(v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return s, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return s, nil
}

// remoteWrite1Proto is remote_write 1.0's message, as Content-Type's proto=
// names it.
const remoteWrite1Proto = "prometheus.WriteRequest"

// remoteWriter holds what POST /api/v1/write needs beyond the API's own.
type remoteWriter struct {
	mapper *rwMapper
	err    error // of an invalid RemoteWriteConfig
	parts  RemoteWriteParts
	slots  chan struct{}
	stored *metrics.Counter
	// inflightBytes is the decoded size of the requests being handled,
	// bounded by maxInflightBytes.
	inflightBytes    atomic.Int64
	maxInflightBytes int64
}

// reserve takes n decoded bytes of the in-flight budget; it fails when that
// would go above the budget while another request holds some of it.
func (rw *remoteWriter) reserve(n int64) bool {
	if total := rw.inflightBytes.Add(n); total > rw.maxInflightBytes && total != n {
		rw.inflightBytes.Add(-n)
		return false
	}
	return true
}

func newRemoteWriter(cfg RemoteWriteConfig, set *metrics.Set) *remoteWriter {
	m, err := newRWMapper(cfg, set)
	if err != nil {
		err = fmt.Errorf("invalid remote_write configuration: %w", err)
	}
	return &remoteWriter{
		mapper: m,
		err:    err,
		parts:  cfg.Parts,
		slots:  make(chan struct{}, cfg.withDefaults().MaxInflight),
		stored: set.GetOrCreateCounter(`deploywatch_remote_write_parts_total`),

		maxInflightBytes: cfg.withDefaults().MaxInflightBytes,
	}
}

// postRemoteWrite serves Prometheus remote_write 1.0. As the spec asks, it
// answers 400 for what can never be stored (Prometheus drops it), 429 when
// overloaded and 5xx when the event log cannot take writes (both retried),
// and 204 once every part was acknowledged by the event log.
func (a *API) postRemoteWrite(w http.ResponseWriter, r *http.Request) {
	rw := a.rw
	if rw.err != nil {
		writeError(w, http.StatusInternalServerError, rw.err.Error(), nil)
		return
	}
	select {
	case rw.slots <- struct{}{}:
		defer func() { <-rw.slots }()
	default:
		w.Header().Set("Retry-After", a.retryAfter())
		writeError(w, http.StatusTooManyRequests, "too many remote_write requests at once: retry later", nil)
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-protobuf" {
		a.rejected.Inc()
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/x-protobuf (Prometheus remote_write 1.0)", nil)
		return
	}
	// remote_write 2.0 names its message (io.prometheus.write.v2.Request)
	// in proto=; decoded as 1.0 it would give no series, and a 204.
	if proto, ok := params["proto"]; ok && proto != remoteWrite1Proto {
		a.rejected.Inc()
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type names the protobuf message %q: deploywatch takes remote_write 1.0 only; set protobuf_message: %s in this remote_write of prometheus.yml", proto, remoteWrite1Proto), nil)
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "snappy" {
		a.rejected.Inc()
		writeError(w, http.StatusUnsupportedMediaType, "Content-Encoding must be snappy (Prometheus remote_write 1.0)", nil)
		return
	}
	sizeHint := int64(0)
	if r.ContentLength <= a.cfg.MaxBodyBytes {
		sizeHint = r.ContentLength
	}
	// Memory follows the decoded size, which the snappy block's first bytes
	// declare: it is checked against the limit and the in-flight budget
	// before the body is read. An invalid header is the decoder's to refuse.
	in := bufio.NewReaderSize(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes), 16)
	head, _ := in.Peek(binary.MaxVarintLen32)
	if decoded, err := snappy.DecodedLen(head); err == nil {
		if decoded > int(a.cfg.MaxBodyBytes) {
			a.rejected.Inc()
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the snappy block declares %d decoded bytes, the limit is %d: lower queue_config.max_samples_per_send", decoded, a.cfg.MaxBodyBytes), nil)
			return
		}
		if !rw.reserve(int64(decoded)) {
			w.Header().Set("Retry-After", a.retryAfter())
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("the remote_write requests in flight already take their %d decoded bytes: retry later", rw.maxInflightBytes), nil)
			return
		}
		defer rw.inflightBytes.Add(-int64(decoded))
	}
	body, err := readAll(in, sizeHint)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		a.rejected.Inc()
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes: lower queue_config.max_samples_per_send", a.cfg.MaxBodyBytes), nil)
		return
	case err != nil:
		a.reject(w, fmt.Errorf("cannot read the body: %v", err))
		return
	}
	series, err := decodeRemoteWrite(nil, body, int(a.cfg.MaxBodyBytes))
	switch {
	case errors.Is(err, errRemoteWriteTooLarge):
		a.rejected.Inc()
		writeError(w, http.StatusRequestEntityTooLarge, err.Error()+": lower queue_config.max_samples_per_send", nil)
		return
	case err != nil:
		a.reject(w, err)
		return
	}
	// The parts wait in the event log's bucket for the rest of their
	// samples: RemoteWriteFinisher publishes the complete samples.
	parts, updates := rw.mapper.mapParts(series)
	if len(parts) > 0 {
		if rw.parts == nil {
			writeError(w, http.StatusInternalServerError, "remote_write has no store for its parts: it is not wired (a bug)", nil)
			return
		}
		// A retried request maps to the same parts (the last values are
		// only updated below), stored under the same keys.
		if err := storeParts(r.Context(), rw.parts, parts, a.cfg.MaxMessageBytes); err != nil {
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				return
			}
			a.log.Warn("cannot store remote_write parts in the event log", "route", r.URL.Path, "parts", len(parts), "err", err)
			w.Header().Set("Retry-After", a.retryAfter())
			writeError(w, http.StatusServiceUnavailable, "the event log cannot take writes right now: Prometheus will retry ("+err.Error()+")", nil)
			return
		}
	}
	rw.mapper.commit(updates)
	rw.stored.Add(len(parts))
	a.samplesPerRequest.Update(float64(len(parts)))
	w.WriteHeader(http.StatusNoContent)
}
