package schema

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func decodeDeploy(t *testing.T, body string) *Deploy {
	t.Helper()
	var d Deploy
	if err := DecodeInto([]byte(body), &d, ""); err != nil {
		t.Fatalf("cannot decode deploy %s: %v", body, err)
	}
	return &d
}

func TestDecodeDeploy(t *testing.T) {
	started := decodeDeploy(t, `{"service":" checkout ","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T15:03:07+01:00","commits":[{"sha":"9f2c1e4b","time":"2026-11-20T11:47:15+01:00"}]}`)
	// A strategy left out stays out: the deploys view keeps the one an
	// earlier change of the deploy named.
	if started.Type != TypeDeploy || started.Strategy != "" || started.Service != "checkout" {
		t.Fatalf("not normalized: type %q, strategy %q, service %q", started.Type, started.Strategy, started.Service)
	}
	if !uuidPattern.MatchString(started.ID) {
		t.Fatalf("derived id %q is not a UUIDv5", started.ID)
	}
	wantStart := time.Date(2026, 11, 20, 14, 3, 7, 0, time.UTC)
	if !started.EventTime().Time.Equal(wantStart) || started.EventTime().Location() != time.UTC {
		t.Fatalf("event time %v, want %v in UTC", started.EventTime(), wantStart)
	}
	if started.EventID() != started.ID+":started" || started.EventService() != "checkout" || started.EventType() != TypeDeploy {
		t.Fatalf("event id %q, service %q, type %q", started.EventID(), started.EventService(), started.EventType())
	}

	// The same request again gets the same id.
	again := decodeDeploy(t, `{"service":" checkout ","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T15:03:07+01:00","commits":[{"sha":"9f2c1e4b","time":"2026-11-20T11:47:15+01:00"}]}`)
	if again.ID != started.ID {
		t.Fatalf("the same deploy got ids %q and %q", started.ID, again.ID)
	}

	// The deploy's end, with the same started_at written in another zone,
	// is a change of the same deploy: the same id, another event id.
	succeeded := decodeDeploy(t, `{"service":"checkout","env":"prod","version":"v2.14.0","status":"succeeded","started_at":"2026-11-20T14:03:07Z","finished_at":"2026-11-20T14:09:41Z"}`)
	if succeeded.ID != started.ID {
		t.Fatalf("started and succeeded of one deploy got ids %q and %q", started.ID, succeeded.ID)
	}
	if succeeded.EventID() == started.EventID() {
		t.Fatalf("started and succeeded share the event id %q: one would be dropped as a duplicate", started.EventID())
	}
	if want := time.Date(2026, 11, 20, 14, 9, 41, 0, time.UTC); !succeeded.EventTime().Time.Equal(want) {
		t.Fatalf("succeeded event time %v, want finished_at %v", succeeded.EventTime(), want)
	}

	// Another deploy gets another id.
	for _, body := range []string{
		`{"service":"checkout","env":"prod","version":"v2.14.1","status":"started","started_at":"2026-11-20T14:03:07Z"}`,
		`{"service":"checkout","env":"staging","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`,
		`{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07.001Z"}`,
		`{"service":"cart","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`,
	} {
		if other := decodeDeploy(t, body); other.ID == started.ID {
			t.Fatalf("%s got the id of another deploy", body)
		}
	}

	// A sender's own id is kept.
	own := decodeDeploy(t, `{"id":"gh-run-7431190552","service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`)
	if own.ID != "gh-run-7431190552" || own.EventID() != "gh-run-7431190552:started" {
		t.Fatalf("id %q, event id %q", own.ID, own.EventID())
	}
}

func TestDecodeIncident(t *testing.T) {
	decode := func(body string) *Incident {
		t.Helper()
		var in Incident
		if err := DecodeInto([]byte(body), &in, ""); err != nil {
			t.Fatalf("cannot decode incident %s: %v", body, err)
		}
		return &in
	}
	const opened = `{"service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z","title":"Checkout error rate above 5%","source":"pagerduty"}`
	a, b := decode(opened), decode(opened)
	if !uuidPattern.MatchString(a.ID) || a.ID != b.ID || a.Type != TypeIncident {
		t.Fatalf("ids %q and %q, type %q: want one derived UUID", a.ID, b.ID, a.Type)
	}
	if other := decode(`{"service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z","title":"Checkout latency p99 above 1s","source":"pagerduty"}`); other.ID == a.ID {
		t.Fatal("another incident got the same id")
	}
	resolved := decode(`{"id":"` + a.ID + `","service":"checkout","env":"prod","status":"resolved","time":"2026-11-20T14:52:10Z"}`)
	if resolved.ID != a.ID || resolved.EventID() == a.EventID() {
		t.Fatalf("resolved: id %q, event id %q; opened: id %q, event id %q", resolved.ID, resolved.EventID(), a.ID, a.EventID())
	}
}

func TestDecodeMetrics(t *testing.T) {
	const body = `{"service":"checkout","env":"prod","samples":[
		{"time":"2026-11-20T14:09:00Z","interval_s":60,"requests":18342,"errors":27,"latency_ms":{"p50":41.2,"p99":412}},
		{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":1.7908e4,"errors":9.0,"latency_histogram":{"bounds_ms":[50,250],"counts":[12000,5800.0,108]}}
	]}`
	decode := func(body string) *MetricsBatch {
		t.Helper()
		var b MetricsBatch
		if err := DecodeInto([]byte(body), &b, ""); err != nil {
			t.Fatalf("cannot decode metrics: %v", err)
		}
		return &b
	}
	a := decode(body)
	if a.Type != TypeMetrics || !uuidPattern.MatchString(a.ID) || a.EventID() != a.ID {
		t.Fatalf("type %q, id %q, event id %q", a.Type, a.ID, a.EventID())
	}
	if got := a.Samples[1].Requests; got != CountOf(17908) {
		t.Fatalf("requests 1.7908e4 decoded as %+v", got)
	}
	if got := a.Samples[1].LatencyHistogram.Counts; len(got) != 3 || got[1] != CountOf(5800) {
		t.Fatalf("counts decoded as %+v", got)
	}
	if want := time.Date(2026, 11, 20, 14, 10, 0, 0, time.UTC); !a.EventTime().Time.Equal(want) {
		t.Fatalf("event time %v, want the newest sample's %v", a.EventTime(), want)
	}
	// The id is derived from the body as sent: the same body, the same id;
	// any other body, even one only formatted differently, another id.
	if b := decode(body); b.ID != a.ID {
		t.Fatalf("the same batch got ids %q and %q", a.ID, b.ID)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if b := decode(compact.String()); b.ID == a.ID {
		t.Fatalf("a batch formatted differently got the same id %q", a.ID)
	}
	// Without a body, the id is derived from the batch's JSON encoding.
	c := *a
	c.ID = ""
	c.Normalize(nil)
	d := *a
	d.ID = ""
	d.Normalize(nil)
	if c.ID == "" || c.ID != d.ID {
		t.Fatalf("ids derived from the encoding: %q and %q", c.ID, d.ID)
	}
}

// TestDecodeRoundTrip checks that what the decoder takes, encoded as it goes
// into the event log, decodes to the same event: consumers decode it again.
func TestDecodeRoundTrip(t *testing.T) {
	for _, c := range contractCases {
		if len(c.fields) > 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			events, err := decodeRoute(c.route, []byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				first, err := json.Marshal(ev)
				if err != nil {
					t.Fatalf("cannot encode: %v", err)
				}
				again, err := DecodeEvent(first, "")
				if err != nil {
					t.Fatalf("cannot decode what was encoded, %s: %v", first, err)
				}
				second, err := json.Marshal(again)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(first, second) {
					t.Fatalf("round trip changed the event:\n%s\n%s", first, second)
				}
				if again.EventID() != ev.EventID() || !again.EventTime().Time.Equal(ev.EventTime().Time) || again.EventService() != ev.EventService() {
					t.Fatalf("round trip changed id, time or service: %q %v %q, then %q %v %q",
						ev.EventID(), ev.EventTime(), ev.EventService(), again.EventID(), again.EventTime(), again.EventService())
				}
			}
		})
	}
}

// decodeRoute is decodeBody, returning the events.
func decodeRoute(route string, body []byte) ([]Event, error) {
	var ev Event
	switch route {
	case "deploy":
		ev = new(Deploy)
	case "metrics":
		ev = new(MetricsBatch)
	case "incident":
		ev = new(Incident)
	case "push":
		ev = new(Push)
	default:
		return DecodeEvents(body)
	}
	return []Event{ev}, DecodeInto(body, ev, "")
}

func TestDecodeEventPrefixesFields(t *testing.T) {
	_, err := DecodeEvent([]byte(`{"type":"metrics","service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"errors":1}]}`), "[4]")
	if got := badFields(t, err); len(got) != 1 || got[0] != "[4].samples[0].requests" {
		t.Fatalf("got %q, want [4].samples[0].requests", got)
	}
	_, err = DecodeEvent([]byte(`{"type":"deploy","servce":"checkout"}`), "[2]")
	if got := badFields(t, err); len(got) == 0 || got[0] != "[2].servce" {
		t.Fatalf("got %q, want [2].servce first", got)
	}
}
