package schema

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// inboxBatchJSON is a metrics batch of search.api as a NATS publisher sends
// it: four instances' samples ending a minute ago; sampleServices[i], when
// not "", is sample i's own service.
func inboxBatchJSON(sampleServices ...string) []byte {
	end := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	var b strings.Builder
	b.WriteString(`{"type":"metrics","id":"search-api-scrape-77120","service":"search.api","env":"production","samples":[`)
	for i := range 6 {
		if i > 0 {
			b.WriteByte(',')
		}
		service := ""
		if i < len(sampleServices) && sampleServices[i] != "" {
			service = `"service":` + strconv.Quote(sampleServices[i]) + `,`
		}
		fmt.Fprintf(&b, `{"time":%q,"interval_s":15,%s"version":"v3.8.1","instance":"search-api-%d","requests":%d,"errors":%d,"latency_ms":{"p50":31.5,"p95":88,"p99":141}}`,
			end.Add(-time.Duration(i/4)*15*time.Second).Format(time.RFC3339), service, i%4, 1180+37*i, i%3)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// A sample's own service is what the sink stores, so on the inbox it must be
// the subject's service, as the batch's must: a permission on
// deploywatch.in.metrics.search_api is a permission on search.api only.
func TestDecodeInboxMessageSampleServiceIsTheSubjects(t *testing.T) {
	subject := InboxSubject(TypeMetrics, "search.api")
	f := func(name string, services []string, wantFields ...string) {
		t.Helper()
		var b MetricsBatch
		if err := DecodeMetricsMessage("", inboxBatchJSON(services...), &b); err != nil {
			t.Fatalf("%s: the batch does not decode: %v", name, err)
		}
		b.Normalize(nil)
		bodies := map[string][]byte{"": inboxBatchJSON(services...), MetricsBinaryEncoding: b.AppendBinary(nil)}
		for encoding, body := range bodies {
			_, err := DecodeInboxMessage(subject, encoding, body)
			var got []string
			var verr *ValidationError
			if errors.As(err, &verr) {
				for _, fe := range verr.Fields {
					got = append(got, fe.Field)
				}
			} else if err != nil {
				t.Fatalf("%s (encoding %q): %v, want a ValidationError", name, encoding, err)
			}
			if strings.Join(got, " ") != strings.Join(wantFields, " ") {
				t.Errorf("%s (encoding %q): bad fields %q, want %q (%v)", name, encoding, got, wantFields, err)
			}
			if len(wantFields) > 0 && !strings.Contains(err.Error(), "deploywatch.in.metrics.billing") {
				t.Errorf("%s (encoding %q): %q does not say where billing's samples go", name, encoding, err)
			}
		}
	}
	f("no sample names a service", nil)
	f("samples name the batch's service", []string{"search.api", "", "search.api"})
	f("a sample names another service", []string{"", "", "", "billing"}, "samples[3].service")
	f("two samples name other services", []string{"billing", "search.api", "", "", "billing", "search-api"}, "samples[0].service", "samples[4].service", "samples[5].service")
}

// inboxDeployJSON is a deploy of checkout with n commits whose messages are
// squash merges of about 3.9 KB each.
func inboxDeployJSON(n int) []byte {
	var msg strings.Builder
	msg.WriteString("checkout: move payment capture to the async PSP client (#4471)\n\n")
	for i := 0; msg.Len() < 3900; i++ {
		fmt.Fprintf(&msg, "* retry capture %d times on 502/503 from the PSP with jittered backoff; log the PSP request id\n", i+2)
	}
	var b strings.Builder
	b.WriteString(`{"type":"deploy","id":"checkout-20261122-1140","service":"checkout","env":"production","version":"v2.15.0","status":"succeeded",` +
		`"started_at":"2026-11-22T11:40:02Z","finished_at":"2026-11-22T11:46:51Z","commits":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sha":"%040x","time":"2026-11-21T17:%02d:00Z","author":"Ana Souza","message":%q}`, 0x9f2c1e7b4a+i, i%60, msg.String())
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// An event that cannot be made to fit one event log message is a
// TooLargeError naming the event, its size, the limit and the field to
// shorten; a metrics batch is split instead, down to single samples.
func TestEncodeMessagesTooLarge(t *testing.T) {
	const limit = 960 << 10
	deploy := func(n int) Event {
		t.Helper()
		ev, err := DecodeEvent(inboxDeployJSON(n), "")
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	if msgs, err := EncodeMessages(deploy(200), 1000, limit); err != nil || len(msgs) != 1 {
		t.Fatalf("a deploy of 200 commits (about 800 KB): %d messages, %v; want 1", len(msgs), err)
	}
	_, err := EncodeMessages(deploy(1000), 1000, limit)
	var tooLarge *TooLargeError
	if !errors.As(err, &tooLarge) {
		t.Fatalf("a deploy of 1000 commits (about 4 MB): %v, want a TooLargeError", err)
	}
	if tooLarge.Size <= limit || tooLarge.Limit != limit || tooLarge.Field != "commits" {
		t.Errorf("%+v, want the size above %d, the limit and the field commits", tooLarge, limit)
	}
	for _, want := range []string{"deploy event checkout-20261122-1140:succeeded", strconv.Itoa(tooLarge.Size), strconv.Itoa(limit), "commits"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
	if msgs, err := EncodeMessages(deploy(1000), 1000, 0); err != nil || len(msgs) != 1 {
		t.Errorf("without a limit: %d messages, %v; want 1", len(msgs), err)
	}

	var b MetricsBatch
	if err := DecodeInto(inboxBatchJSON(), &b, ""); err != nil {
		t.Fatal(err)
	}
	one := len(b.Split(1)[0].AppendBinary(nil))
	if msgs, err := EncodeMessages(&b, 1000, one); err != nil || len(msgs) != len(b.Samples) {
		t.Errorf("a limit of one sample's size: %d messages, %v; want one per sample", len(msgs), err)
	}
	_, err = EncodeMessages(&b, 1000, one-1)
	if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), "samples[0] of the metrics batch "+b.ID) || tooLarge.Field != "" {
		t.Errorf("a limit below one sample's size: %v, want a TooLargeError naming samples[0]", err)
	}
}
