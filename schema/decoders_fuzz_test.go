package schema

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// Fuzz targets for the decoders of the JSON API and the event log. Run one
// with `go test -run '^$' -fuzz '^FuzzDecodeEvent$' -fuzztime 30s ./schema/`;
// `make fuzz` runs each briefly.

// jsonSeeds are realistic bodies: the examples of the published JSON
// Schemas and a batch as a sender builds it.
func jsonSeeds(f *testing.F) [][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("jsonschema", "*.schema.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no JSON Schemas to take examples from: %v", err)
	}
	var seeds [][]byte
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		var s struct {
			Examples []json.RawMessage `json:"examples"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		for _, ex := range s.Examples {
			seeds = append(seeds, ex)
		}
	}
	b := realisticBatch(6)
	b.Normalize(nil)
	seeds = append(seeds, b.AppendJSON(nil))
	return seeds
}

// reencodes checks what every consumer of the event log relies on: an event
// that decoded is published as ingest publishes it, and that message decodes
// again to the same event under the same id.
func reencodes(t *testing.T, ev Event) {
	t.Helper()
	msgs, err := EncodeMessages(ev, 2, 0)
	if err != nil {
		t.Fatalf("cannot encode a decoded %s event: %v", ev.EventType(), err)
	}
	if b, ok := ev.(*MetricsBatch); ok {
		var n int
		for _, m := range msgs {
			var part MetricsBatch
			if err := DecodeMetricsMessage(EncodingOf(m.Data), m.Data, &part); err != nil {
				t.Fatalf("batch %s encoded for the event log does not decode: %v", b.ID, err)
			}
			if part.ID != m.ID || m.Subject != Subject(&part) {
				t.Fatalf("part %s on %s decodes as %s on %s", m.ID, m.Subject, part.ID, Subject(&part))
			}
			for i := range part.Samples {
				if !reflect.DeepEqual(sampleJSON(&part.Samples[i]), sampleJSON(&b.Samples[n+i])) {
					t.Fatalf("sample %d decodes as %s after encoding, was %s", n+i, sampleJSON(&part.Samples[i]), sampleJSON(&b.Samples[n+i]))
				}
			}
			n += len(part.Samples)
		}
		if n != len(b.Samples) {
			t.Fatalf("the parts of a batch of %d samples hold %d", len(b.Samples), n)
		}
		return
	}
	again, err := DecodeEvent(msgs[0].Data, "")
	if err != nil {
		t.Fatalf("%s event encoded for the event log does not decode: %v\n%s", ev.EventType(), err, msgs[0].Data)
	}
	if again.EventID() != ev.EventID() || msgs[0].ID != ev.EventID() {
		t.Fatalf("event %s decodes as %s after encoding", ev.EventID(), again.EventID())
	}
	if second, _ := json.Marshal(again); string(second) != string(msgs[0].Data) {
		t.Fatalf("encoding is not stable:\n%s\n%s", msgs[0].Data, second)
	}
}

func sampleJSON(s *Sample) string { return string(s.appendJSON(nil)) }

// validationNamesFields checks that a refusal names fields, as the API's 400 does.
func validationNamesFields(t *testing.T, err error) {
	t.Helper()
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("refused with %T %v, want a *ValidationError naming the fields", err, err)
	}
	if len(verr.Fields) == 0 {
		t.Fatal("a ValidationError without fields")
	}
	for _, fe := range verr.Fields {
		if fe.Field == "" || fe.Problem == "" {
			t.Fatalf("a field error without its field or problem: %+v", fe)
		}
	}
}

// FuzzDecodeEvents is POST /api/v1/events, and DecodeEvent with it.
func FuzzDecodeEvents(f *testing.F) {
	seeds := jsonSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte("[" + string(seeds[0]) + "," + string(seeds[1]) + "]"))
	f.Add([]byte(`[{"type":"deploy"},{"type":"metrics","samples":[{"requests":-1}]},7]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := DecodeEvents(body)
		if err != nil {
			validationNamesFields(t, err)
			return
		}
		for _, ev := range events {
			reencodes(t, ev)
		}
	})
}

// FuzzDecodeMetricsJSON is POST /api/v1/metrics: the one-pass scanner or the
// value tree, then validation.
func FuzzDecodeMetricsJSON(f *testing.F) {
	for _, s := range jsonSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte(`{"service":"a","env":"b","samples":[{"time":"2026-02-28T23:59:59.5+01:00","interval_s":15,"requests":3,"errors":1,"latency_histogram":{"bounds_ms":[5,10],"counts":[1,1,1]}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var b MetricsBatch
		if err := DecodeInto(body, &b, ""); err != nil {
			validationNamesFields(t, err)
			return
		}
		reencodes(t, &b)
	})
}

// FuzzDecodeMetricsBinary decodes what anyone who can publish to NATS could
// put on the metrics stream. Whatever decodes re-encodes to the same batch,
// and a corrupt length never makes the decoder allocate much more than the
// message holds.
func FuzzDecodeMetricsBinary(f *testing.F) {
	b := realisticBatch(30)
	b.Normalize(nil)
	f.Add(b.AppendBinary(nil))
	small := realisticBatch(1)
	small.Normalize(nil)
	f.Add(small.AppendBinary(nil))
	f.Add([]byte(metricsMagic + "\x00\x00\x00\x00\x00\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var got MetricsBatch
		err := DecodeMetricsMessage(MetricsBinaryEncoding, data, &got)
		runtime.ReadMemStats(&after)
		// Samples are some 300 bytes decoded and at least 9 encoded.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 64*uint64(len(data))+64<<10 {
			t.Fatalf("decoding %d bytes allocated %d", len(data), grew)
		}
		if err != nil {
			validationNamesFields(t, err)
			return
		}
		var again MetricsBatch
		if err := DecodeMetricsMessage(MetricsBinaryEncoding, got.AppendBinary(nil), &again); err != nil {
			t.Fatalf("a decoded batch re-encodes to one that does not decode: %v", err)
		}
		if string(got.AppendJSON(nil)) != string(again.AppendJSON(nil)) {
			t.Fatalf("re-encoding changed the batch:\n%s\n%s", got.AppendJSON(nil), again.AppendJSON(nil))
		}
	})
}

// FuzzDecodeInboxMessage is what a NATS publisher can put on deploywatch.in.>:
// a valid event moves onto the subject the event log files it under, for the
// service the inbox subject named.
func FuzzDecodeInboxMessage(f *testing.F) {
	for _, s := range jsonSeeds(f) {
		var head struct {
			Type    Type   `json:"type"`
			Service string `json:"service"`
		}
		_ = json.Unmarshal(s, &head)
		f.Add(InboxSubject(head.Type, head.Service), "", s)
	}
	b := realisticBatch(4)
	b.Normalize(nil)
	f.Add(InboxSubject(TypeMetrics, "checkout"), MetricsBinaryEncoding, b.AppendBinary(nil))
	f.Add("deploywatch.in.deploy", "", []byte(`{}`))
	b.Samples[2].Service = "billing"
	f.Add(InboxSubject(TypeMetrics, "checkout"), MetricsBinaryEncoding, b.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, subject, encoding string, data []byte) {
		ev, err := DecodeInboxMessage(subject, encoding, data)
		if err != nil {
			var verr *ValidationError
			if errors.As(err, &verr) {
				validationNamesFields(t, err)
			}
			return
		}
		typ, token, _ := parseInboxSubject(subject)
		if ev.EventType() != typ || SubjectToken(ev.EventService()) != token {
			t.Fatalf("%s on %s decoded as a %s event of %q", data, subject, ev.EventType(), ev.EventService())
		}
		if !strings.HasSuffix(Subject(ev), "."+token) {
			t.Fatalf("a %s event from %s goes to %s", ev.EventType(), subject, Subject(ev))
		}
		if mb, ok := ev.(*MetricsBatch); ok {
			for i := range mb.Samples {
				if s := mb.Samples[i].ResolvedService(mb); SubjectToken(s) != token {
					t.Fatalf("sample %d of a batch from %s is stored for the service %q", i, subject, s)
				}
			}
		}
		reencodes(t, ev)
	})
}
