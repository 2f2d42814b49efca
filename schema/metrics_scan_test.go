package schema

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fastjson/fastfloat"
)

// scanAgrees checks the one promise of scanMetricsBatch: where it decodes a
// body at all, the general path decodes it too, without a problem, into the
// same batch.
func scanAgrees(t *testing.T, body string) (scanned bool) {
	t.Helper()
	var fast, slow MetricsBatch
	if !scanMetricsBatch([]byte(body), &fast) {
		if !reflect.DeepEqual(fast, MetricsBatch{}) {
			t.Fatalf("the scanner gave up on %.200s but left a partial batch behind", body)
		}
		return false
	}
	var p problems
	if !decodeMetricsTree([]byte(body), &slow, "", &p) || len(p.list) > 0 {
		t.Fatalf("the scanner decoded %.200s, which the general path refuses: %v", body, p.err())
	}
	if !reflect.DeepEqual(fast, slow) {
		fj, _ := json.Marshal(&fast)
		sj, _ := json.Marshal(&slow)
		t.Fatalf("the scanner and the general path decode %.200s differently:\nscanner %.300s\ngeneral %.300s", body, fj, sj)
	}
	return true
}

func TestScanMetricsBatch(t *testing.T) {
	realistic := realisticBatch(500)
	realistic.Normalize(nil)
	body, err := json.Marshal(realistic)
	if err != nil {
		t.Fatal(err)
	}
	indented, err := json.MarshalIndent(realistic, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	// What the scanner takes: JSON as senders write it.
	for _, body := range []string{
		string(body),
		string(indented),
		`{"service":"checkout","env":"prod","samples":[{"time":"2026-11-22T10:05:00Z","interval_s":60,"version":"v1.4.2","instance":"web-1","requests":1840,"errors":7,"latency_ms":{"p50":41.5,"p95":120,"p99":310}}]}`,
		// Any order, overrides, sub-second times and offsets, an empty latency_ms.
		`{"samples":[{"errors":0,"requests":0,"interval_s":0.5,"time":"2026-11-22T10:05:00.123456789+05:30","service":"search","env":"staging","latency_ms":{}}],"env":"prod","service":"checkout","type":"metrics","id":"batch-1"}`,
		` {"service" : "a" , "env":"b","samples" : [ {"time":"2024-02-29T23:59:59.5-00:30","interval_s":1e1,"requests":18446744073709,"errors":1,"latency_ms":{"max":-0,"p50":1.25E-3,"p90":123456789012345,"p99":0.1234567890123456789}} ] } `,
		`{"service":"a","env":"b","samples":[{"time":"2026-01-01T00:00:00Z","interval_s":10,"requests":5,"errors":1,"latency_histogram":{"bounds_ms":[5,10.5,1e3],"counts":[1,2,1,1]}},{"time":"2026-01-01T00:00:10Z","interval_s":10,"requests":1,"errors":0,"latency_histogram":{"counts":[],"bounds_ms":[]}}]}`,
		`{"service":"a","env":"b","samples":[]}`,
		`{}`,
		// Later duplicates win, as in the general path.
		`{"service":"a","service":"b","env":"b","samples":[{"requests":1,"requests":2,"latency_ms":{"p50":1},"latency_ms":{"p99":2}}]}`,
		// Values the validation refuses later are still decoded alike.
		`{"service":"no spaces allowed","env":"","samples":[{"time":"1999-12-31T23:59:59Z","interval_s":-10,"requests":1,"errors":5,"version":"üé"}]}`,
		"{\"service\":\"a\",\"env\":\"b\",\"samples\":[{\"instance\":\"not UTF-8: \xff\"}]}",
	} {
		if !scanAgrees(t, body) {
			t.Errorf("the scanner gave up on %.200s", body)
		}
	}
	// What it leaves to the general path, which names the problems or
	// decodes what is valid but unusual.
	for _, body := range []string{
		``, ` `, `[]`, `null`, `{`, `{"service":"a"`, `{"service":"a",}`, `{"service":"a"} x`, `{"service":"a"}}`,
		`{"servic\u0065":"a"}`, `{"service":"a\"b"}`, `{"service":"a\nb"}`, "{\"service\":\"a\tb\"}",
		`{"service":null}`, `{"samples":null}`, `{"samples":[null]}`, `{"samples":[{"latency_ms":null}]}`,
		`{"samples":"not a list"}`, `{"samples":[{"requests":"12"}]}`, `{"samples":[{"requests":true}]}`,
		`{"unknown":1}`, `{"samples":[{"latency":1}]}`, `{"samples":[{"latency_ms":{"p42":1}}]}`,
		`{"samples":[{"latency_histogram":{"bounds":[1]}}]}`,
		`{"samples":[{"requests":1e3}]}`, `{"samples":[{"requests":12.0}]}`, `{"samples":[{"requests":-1}]}`,
		`{"samples":[{"requests":1234567890123456789}]}`, `{"samples":[{"requests":012}]}`,
		`{"samples":[{"interval_s":01}]}`, `{"samples":[{"interval_s":1.}]}`, `{"samples":[{"interval_s":.5}]}`,
		`{"samples":[{"interval_s":+1}]}`, `{"samples":[{"interval_s":1e}]}`, `{"samples":[{"interval_s":1e999}]}`,
		`{"samples":[{"interval_s":NaN}]}`, `{"samples":[{"interval_s":10abc}]}`,
		`{"samples":[{"time":""}]}`, `{"samples":[{"time":"2026-11-22"}]}`, `{"samples":[{"time":"2026-11-22 10:05:00Z"}]}`,
		`{"samples":[{"time":"2026-11-22t10:05:00z"}]}`, `{"samples":[{"time":"2026-02-29T10:05:00Z"}]}`,
		`{"samples":[{"time":"2026-11-22T24:00:00Z"}]}`, `{"samples":[{"time":"2026-11-22T10:05:60Z"}]}`,
		`{"samples":[{"time":"2026-11-22T10:05:00.Z"}]}`, `{"samples":[{"time":"2026-11-22T10:05:00.1234567891Z"}]}`,
		`{"samples":[{"time":"2026-11-22T10:05:00+24:00"}]}`, `{"samples":[{"time":"2026-11-22T10:05:00+0100"}]}`,
		`{"samples":[{"time":1764000000}]}`,
	} {
		if scanAgrees(t, body) {
			t.Errorf("the scanner decoded %q; it should leave it to the general path", body)
		}
	}
}

func TestParseRFC3339(t *testing.T) {
	f := func(s string) {
		t.Helper()
		got, ok := parseRFC3339([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok {
			return // the general path decides
		}
		if err != nil {
			t.Fatalf("parseRFC3339 takes %q, time.Parse refuses it: %v", s, err)
		}
		if got != want.UTC() {
			t.Fatalf("parseRFC3339(%q) = %#v, time.Parse gives %#v", s, got, want.UTC())
		}
	}
	f("2026-11-22T10:05:00Z")
	f("2026-11-22T10:05:00.5Z")
	f("2026-11-22T10:05:00.000000001Z")
	f("2026-11-22T10:05:00.123456789-11:59")
	f("2026-11-22T00:05:00+23:59")
	f("2000-02-29T00:00:00Z")
	f("1900-02-28T00:00:00Z")
	f("0000-01-01T00:00:00Z")
	f("9999-12-31T23:59:59.999999999Z")
	f("2026-12-31T23:59:59-00:00")
	for _, bad := range []string{"2100-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-00-01T00:00:00Z", "2026-11-22T10:05:00", "2026-11-22T10:05:00ZZ"} {
		if _, ok := parseRFC3339([]byte(bad)); ok {
			t.Errorf("parseRFC3339 takes %q", bad)
		}
	}
}

// FuzzScanMetricsBatch looks for bodies that the scanner decodes otherwise
// than the general path: `go test -fuzz FuzzScanMetricsBatch ./schema/`.
func FuzzScanMetricsBatch(f *testing.F) {
	b := realisticBatch(3)
	b.Normalize(nil)
	body, _ := json.Marshal(b)
	f.Add(string(body))
	f.Add(`{"service":"a","env":"b","samples":[{"time":"2024-02-29T23:59:59.5-00:30","interval_s":1e1,"requests":1,"errors":0,"latency_ms":{"p50":1.25E-3}}]}`)
	f.Add(`{"samples":[{"latency_histogram":{"bounds_ms":[5,10],"counts":[1,2,3]}}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		scanAgrees(t, body)
		if strings.HasPrefix(body, "{") {
			if tm, ok := parseRFC3339([]byte(body[1:])); ok {
				if want, err := time.Parse(time.RFC3339Nano, body[1:]); err != nil || want.UTC() != tm {
					t.Fatalf("parseRFC3339(%q) = %v, time.Parse gives %v, %v", body[1:], tm, want, err)
				}
			}
		}
	})
}

// TestScanLongNumbers: the scanner reads numbers of more than 15 digits
// without an exponent with strconv, which must give what fastfloat gives.
func TestScanLongNumbers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + rng.IntN(10))
		}
		if b[0] == '0' {
			b[0] = '1'
		}
		return string(b)
	}
	for range 200_000 {
		n := 16 + rng.IntN(10)
		text := digits(n)
		if point := rng.IntN(n + 1); point < n {
			text = text[:point] + "." + text[point:]
			if point == 0 {
				text = "0" + text
			}
		}
		if rng.IntN(2) == 0 {
			text = "-" + text
		}
		want, err := fastfloat.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := strconv.ParseFloat(text, 64); err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%s: strconv gives %v (%v), fastfloat %v", text, got, err, want)
		}
		scanAgrees(t, `{"samples":[{"interval_s":`+text+`}]}`)
	}
}
