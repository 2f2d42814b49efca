package schema

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A contractCase is a request body and what the decoder makes of it: the
// fields it names as bad, none when it takes the body. The same cases are
// checked against the published JSON Schemas (jsonschema_test.go), so that
// the schemas and the decoder cannot drift apart.
type contractCase struct {
	name string
	// route is the JSON Schema the body is for: deploy, metrics, incident or
	// push (one kind of event, DecodeInto) or event
	// (POST /api/v1/events: one event or an array, DecodeEvent).
	route  string
	body   string
	fields []string
}

// contractCases are bodies on which the decoder and the JSON Schemas agree:
// both take the valid ones (no fields) and both refuse the others.
var contractCases = append(append(wholeBodyCases, editedCases()...), pushCases()...)

// wholeBodyCases are written out whole: valid bodies, bodies with many
// problems at once, and bodies that are not JSON objects.
var wholeBodyCases = []contractCase{
	// Valid deploys.
	{name: "deploy started", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`},
	{name: "deploy failed with a zone offset and sub-second time", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"failed","started_at":"2026-11-20T15:03:07.125+01:00","finished_at":"2026-11-20T14:05:00.5Z","strategy":"blue_green"}`},
	{name: "deploy with optional fields null or empty", route: "deploy", body: `{"id":null,"type":null,"service":"checkout","env":"prod","version":"v2.14.0","previous_version":null,"status":"rolled_back","started_at":null,"finished_at":"2026-11-20T14:21:00Z","commits":null,"author":"","strategy":"","url":"","labels":null}`},
	{name: "deploy of a feature flag with commits and labels", route: "deploy", body: `{"id":"flag-new-cart-2026-11-20","type":"deploy","service":"web.storefront","env":"prod-eu","version":"new_cart=on","status":"succeeded","finished_at":"2026-11-20T09:00:00Z","strategy":"flag","commits":[{"sha":"4be1c0de","time":"2026-11-19T17:12:44Z"},{"sha":"77ac21f0","author":"li.wei","message":"cart: new layout behind new_cart"}],"url":"https://flags.example.com/flags/new_cart?env=prod-eu","labels":{"team":"storefront","ticket":"SHOP-1182"}}`},

	// Valid metric batches.
	{name: "metrics with one bare sample", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":10,"requests":312,"errors":0}]}`},
	{name: "metrics with counts written as floats", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":1.2e4,"errors":3.0,"latency_histogram":{"bounds_ms":[50,250],"counts":[9000.0,2.9e3,100]}}]}`},
	{name: "metrics with a subset of quantiles and sample overrides", route: "metrics", body: `{"id":"batch-2026-11-20T14:10Z-eu1","type":"metrics","service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":15.5,"service":"checkout-worker","env":"","version":"v2.14.0","instance":"i-0a1b2c3d","requests":97,"errors":2,"latency_ms":{"p99":912.4},"latency_histogram":null},{"time":"2026-11-20T14:10:00Z","interval_s":15.5,"requests":0,"errors":0,"latency_ms":{},"version":null}]}`},

	// Valid incidents.
	{name: "incident opened without id", route: "incident", body: `{"service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z","title":"Checkout error rate above 5%","source":"pagerduty"}`},
	{name: "incident resolved", route: "incident", body: `{"id":"PD-Q2K7X1T9M4","service":"checkout","env":"prod","status":"resolved","time":"2026-11-20T14:52:10Z","deploy_id":"gh-run-7431190552"}`},

	// Valid bodies of POST /api/v1/events.
	{name: "events: one deploy", route: "event", body: `{"type":"deploy","service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`},
	{name: "events: one of each kind", route: "event", body: ` [
		{"type":"deploy","service":"checkout","env":"prod","version":"v2.14.0","status":"succeeded","finished_at":"2026-11-20T14:09:41Z"},
		{"type":"metrics","service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":18342,"errors":27}]},
		{"type":"incident","service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z"}
	]`},

	// Every bad sample of a batch is named at once.
	{name: "metrics with a bad field in each sample", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[
		{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1},
		{"time":"yesterday","interval_s":60,"requests":100,"errors":1},
		{"time":"2026-11-20T14:10:00Z","interval_s":0,"requests":100,"errors":1},
		{"time":"2026-11-20T14:10:00Z","interval_s":60,"errors":1},
		{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_histogram":{"bounds_ms":[50,100,250],"counts":[60,30,10]}},
		{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":120},
		{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_ms":{"p50":80,"p95":60}}
	]}`, fields: []string{"samples[1].time", "samples[2].interval_s", "samples[3].requests", "samples[4].latency_histogram.counts", "samples[5].errors", "samples[6].latency_ms.p95"}},
	{name: "metrics with unknown fields and values of the wrong kind in samples", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[
		{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"version":3},
		{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_ms":[41,187],"latency_histogram":{"bounds_ms":[1e400,50],"counts":[1,2,3]}},
		{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"instnace":"i-0a1b2c3d"}
	]}`, fields: []string{"samples[0].version", "samples[1].latency_ms", "samples[1].latency_histogram.bounds_ms[0]", "samples[2].instnace"}},
	{name: "metrics with a count that is not whole", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_histogram":{"bounds_ms":[50],"counts":[99.5,-1]}}]}`, fields: []string{"samples[0].latency_histogram.counts[0]", "samples[0].latency_histogram.counts[1]"}},
	{name: "metrics with counts as strings", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":"60","requests":"100","errors":-1}]}`, fields: []string{"samples[0].interval_s", "samples[0].requests", "samples[0].errors"}},
	{name: "metrics with a too long interval and bad quantiles", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":86401,"requests":100,"errors":1,"latency_ms":{"p50":-3,"max":1e400,"p75":40}}]}`, fields: []string{"samples[0].latency_ms.p75", "samples[0].interval_s", "samples[0].latency_ms.p50", "samples[0].latency_ms.max"}},
	{name: "metrics without samples", route: "metrics", body: `{"service":"checkout","env":"","samples":[]}`, fields: []string{"env", "samples"}},
	{name: "metrics with a histogram without bounds", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_histogram":{"counts":[100]}}]}`, fields: []string{"samples[0].latency_histogram.bounds_ms"}},
	{name: "metrics with a null histogram bound", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_histogram":{"bounds_ms":[null,50],"counts":[10,80,10]}}]}`, fields: []string{"samples[0].latency_histogram.bounds_ms[0]"}},
	{name: "metrics with NaN", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":NaN,"requests":100,"errors":1}]}`, fields: []string{"body"}},
	{name: "metrics with Infinity", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_ms":{"max":Infinity}}]}`, fields: []string{"body"}},
	{name: "metrics with a leading zero", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":0100,"errors":1}]}`, fields: []string{"body"}},
	{name: "metrics with a trailing dot", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60.,"requests":100,"errors":1}]}`, fields: []string{"body"}},
	{name: "metrics with a plus sign", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":+60,"requests":100,"errors":1}]}`, fields: []string{"body"}},
	{name: "metrics with a raw newline in a string", route: "metrics", body: "{\"service\":\"checkout\",\"env\":\"prod\",\"samples\":[{\"time\":\"2026-11-20T14:10:00Z\",\"interval_s\":60,\"requests\":100,\"errors\":1,\"instance\":\"a\nb\"}]}", fields: []string{"body"}},
	{name: "metrics with single quotes", route: "metrics", body: `{'service':'checkout','env':'prod','samples':[]}`, fields: []string{"body"}},
	{name: "metrics with a stray brace after it", route: "metrics", body: metricsBody + `}`, fields: []string{"body"}},
	{name: "metrics: empty body", route: "metrics", body: ``, fields: []string{"body"}},
	{name: "metrics: not an object", route: "metrics", body: `[` + metricsBody + `]`, fields: []string{"body"}},
	{name: "metrics with escapes and negative zero", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":-0,"instance":"caf\u00e9-\"1\"","version":"v2\/14"}]}`},
	{name: "metrics with a sample service that is not a name", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"service":"checkout/v2"}]}`, fields: []string{"samples[0].service"}},

	// Deploys the decoder refuses.
	{name: "deploy with finished_at misspelt", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"succeeded","finshed_at":"2026-11-20T14:09:41Z"}`, fields: []string{"finshed_at", "finished_at"}},
	{name: "deploy with a service of the wrong kind", route: "deploy", body: `{"service":5,"env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`, fields: []string{"service"}},
	{name: "deploy with a service of the wrong kind and more", route: "deploy", body: `{"service":5,"env":"prod west","version":"","status":"done"}`, fields: []string{"service", "env", "version", "status"}},
	{name: "deploy without anything", route: "deploy", body: `{}`, fields: []string{"service", "env", "version", "status"}},
	{name: "deploy started without started_at", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","finished_at":"2026-11-20T14:09:41Z"}`, fields: []string{"started_at"}},
	{name: "deploy rolled back without finished_at", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"rolled_back","started_at":"2026-11-20T14:03:07Z"}`, fields: []string{"finished_at"}},
	{name: "deploy failed without finished_at", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"failed","finished_at":""}`, fields: []string{"finished_at"}},
	{name: "deploy succeeded without finished_at", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"succeeded","started_at":"2026-11-20T14:03:07Z","finished_at":null}`, fields: []string{"finished_at"}},
	{name: "deploy with a time before 2000 and a blank version", route: "deploy", body: `{"service":"checkout","env":"prod","version":"  ","status":"started","started_at":"1970-01-01T00:00:00Z"}`, fields: []string{"version", "started_at"}},
	{name: "deploy with a bad id, strategy and url", route: "deploy", body: `{"id":"run 42","service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z","strategy":"big_bang","url":"ci.example.com/runs/42"}`, fields: []string{"id", "strategy", "url"}},
	{name: "deploy with bad commits", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z","commits":[{"sha":"","time":"2026-11-20"},{"sha":"77ac21f0","athor":"li.wei"}]}`, fields: []string{"commits[1].athor", "commits[0].sha", "commits[0].time"}},
	{name: "deploy with bad labels", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z","labels":{"team":"` + strings.Repeat("x", 1025) + `","":"x","ok":5}}`, fields: []string{"labels.ok", "labels", "labels.team"}},
	{name: "deploy of the wrong type", route: "deploy", body: `{"type":"metrics","service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`, fields: []string{"type"}},
	{name: "deploy with a stray brace after it", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}}`, fields: []string{"body"}},
	{name: "deploy followed by another", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"} {}`, fields: []string{"body"}},
	{name: "deploy in an array", route: "deploy", body: `[{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}]`, fields: []string{"body"}},
	{name: "deploy with a trailing comma", route: "deploy", body: `{"service":"checkout","env":"prod",}`, fields: []string{"body"}},
	{name: "deploy: empty body", route: "deploy", body: ``, fields: []string{"body"}},

	// Incidents the decoder refuses.
	{name: "incident resolved with an empty id", route: "incident", body: `{"id":"","service":"checkout","env":"prod","status":"resolved","time":"2026-11-20T14:52:10Z"}`, fields: []string{"id"}},
	{name: "incident resolved with a null id", route: "incident", body: `{"id":null,"service":"checkout","env":"prod","status":"resolved","time":"2026-11-20T14:52:10Z"}`, fields: []string{"id"}},
	{name: "incident resolved without id", route: "incident", body: `{"service":"checkout","env":"prod","status":"resolved","time":"2026-11-20T14:52:10Z"}`, fields: []string{"id"}},
	{name: "incident with a bad status and no time", route: "incident", body: `{"service":"checkout","env":"prod","status":"closed","deploy_id":"#42"}`, fields: []string{"status", "time", "deploy_id"}},

	// Bodies of POST /api/v1/events the decoder refuses.
	{name: "events: no type", route: "event", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`, fields: []string{"type"}},
	{name: "events: metrics without type", route: "event", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":10,"errors":1}]}`, fields: []string{"type"}},
	{name: "events: incident without type", route: "event", body: `{"service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z"}`, fields: []string{"type"}},
	{name: "events: unknown type", route: "event", body: `{"type":"alert","service":"checkout","env":"prod"}`, fields: []string{"type"}},
	{name: "events: type of the wrong kind", route: "event", body: `{"type":5,"service":"checkout","env":"prod"}`, fields: []string{"type"}},
	{name: "events: empty body", route: "event", body: ``, fields: []string{"body"}},
	{name: "events: blank body", route: "event", body: " \r\n\t", fields: []string{"body"}},
	{name: "events: not an object", route: "event", body: `"deploy"`, fields: []string{"body"}},
	{name: "events: trailing data", route: "event", body: `{"type":"incident","service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z"} x`, fields: []string{"body"}},
	{name: "events: empty array", route: "event", body: `[]`, fields: []string{"body"}},
	{name: "events: an array of numbers", route: "event", body: `[1]`, fields: []string{"[0]"}},
	{name: "events: an array of arrays", route: "event", body: `[[{"type":"incident","service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z"}]]`, fields: []string{"[0]"}},
	{name: "events: metrics without samples", route: "event", body: `{"type":"metrics","service":"checkout","env":"prod"}`, fields: []string{"samples"}},
	{name: "events: incident of type deploy", route: "event", body: `{"type":"deploy","service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z"}`, fields: []string{"time", "version", "status"}},
	{name: "events: null", route: "event", body: `null`, fields: []string{"type"}},
	{name: "events: fields of the wrong kind in an array", route: "event", body: `[
		{"type":"metrics","service":5,"env":"prod","id":7,"samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":10,"errors":1}]},
		{"type":"deploy","service":"checkout","env":["prod"],"version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}
	]`, fields: []string{"[0].service", "[0].id", "[1].env"}},
	{name: "events: bad events in an array", route: "event", body: `[
		{"type":"incident","service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z"},
		{"type":"incident","service":"checkout","env":"prod","status":"opened"},
		{"service":"checkout"},
		{"type":"metrics","service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":10,"errors":1,"instnace":"a"}]}
	]`, fields: []string{"[1].time", "[2].type", "[3].samples[0].instnace"}},
}

// Valid bodies that editedCases change one thing of.
const (
	deployBody   = `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`
	metricsBody  = `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_ms":{"p50":40,"p99":300},"latency_histogram":{"bounds_ms":[50,250],"counts":[70,25,5]}}]}`
	incidentBody = `{"service":"checkout","env":"prod","status":"opened","time":"2026-11-20T14:17:52Z"}`
)

// editedCases each change one field of a valid body, so that each rule of the
// JSON Schemas is held to the decoder on its own.
func editedCases() []contractCase {
	long := func(n int) string { return strings.Repeat("a", n) }
	many := func(n int, v any) []any {
		s := make([]any, n)
		for i := range s {
			s[i] = v
		}
		return s
	}
	labels := map[string]any{}
	for i := range 65 {
		labels["l"+itoa(i)] = "x"
	}
	d := func(name, path string, v any, fields ...string) contractCase {
		return contractCase{name: "deploy: " + name, route: "deploy", body: edit(deployBody, path, v), fields: fields}
	}
	m := func(name, path string, v any, fields ...string) contractCase {
		return contractCase{name: "metrics: " + name, route: "metrics", body: edit(metricsBody, path, v), fields: fields}
	}
	in := func(name, path string, v any, fields ...string) contractCase {
		return contractCase{name: "incident: " + name, route: "incident", body: edit(incidentBody, path, v), fields: fields}
	}
	return []contractCase{
		d("as it is", "service", "checkout"),
		d("128-character id", "id", "a"+long(127)),
		d("id with every allowed character", "id", "Run-42_a.b:c"),
		d("type deploy", "type", "deploy"),
		d("128-character service", "service", long(128)),
		d("finished_at too", "finished_at", "2026-11-20T14:09:41Z"),
		d("every strategy", "strategy", "rolling"),
		d("url with port and user", "url", "https://ci@ci.example.com:8443/runs/42"),
		d("1000 commits", "commits", many(1000, map[string]any{"sha": "4be1c0de"})),
		d("64 labels", "labels", func() map[string]any { delete(labels, "l64"); return labels }()),
		d("no service", "service", absent, "service"),
		d("empty service", "service", "", "service"),
		d("service with a space", "service", "check out", "service"),
		d("service starting with a dot", "service", ".checkout", "service"),
		d("129-character service", "service", long(129), "service"),
		d("no env", "env", absent, "env"),
		d("env of the wrong kind", "env", []any{"prod"}, "env"),
		d("no version", "version", absent, "version"),
		d("257-byte version", "version", long(257), "version"),
		d("257-byte previous_version", "previous_version", long(257), "previous_version"),
		d("no status", "status", absent, "status"),
		d("status in capitals", "status", "STARTED", "status"),
		d("no started_at", "started_at", absent, "started_at"),
		d("started_at null", "started_at", nil, "started_at"),
		d("started_at with a space for T", "started_at", "2026-11-20 14:03:07Z", "started_at"),
		d("started_at with a lower-case t", "started_at", "2026-11-20t14:03:07Z", "started_at"),
		d("started_at without a zone", "started_at", "2026-11-20T14:03:07", "started_at"),
		d("started_at without seconds", "started_at", "2026-11-20T14:03Z", "started_at"),
		d("started_at on 30 February", "started_at", "2026-02-30T14:03:07Z", "started_at"),
		d("started_at at 24:00", "started_at", "2026-11-20T24:00:00Z", "started_at"),
		d("started_at on a leap second", "started_at", "2016-12-31T23:59:60Z", "started_at"),
		d("started_at as a Unix time", "started_at", 1763647387, "started_at"),
		d("started_at in 1999", "started_at", "1999-12-31T23:59:59Z", "started_at"),
		d("id with a leading dash", "id", "-run-42", "id"),
		d("129-character id", "id", long(129), "id"),
		d("type deploy with a space", "type", "deploy ", "type"),
		d("strategy in capitals", "strategy", "Canary", "strategy"),
		d("url without a host", "url", "mailto:ops@example.com", "url"),
		d("url with a user and no host", "url", "https://ci@/runs/42", "url"),
		d("relative url", "url", "/runs/42", "url"),
		d("257-byte author", "author", long(257), "author"),
		d("commits as a string", "commits", "4be1c0de", "commits"),
		d("commit with an unknown field", "commits", []any{map[string]any{"sha": "4be1c0de", "athor": "li.wei"}}, "commits[0].athor"),
		d("commit with an empty sha", "commits", []any{map[string]any{"sha": ""}}, "commits[0].sha"),
		d("commit without sha", "commits", []any{map[string]any{"message": "fix"}}, "commits[0].sha"),
		d("commit that is a string", "commits", []any{"4be1c0de"}, "commits[0]"),
		d("1001 commits", "commits", many(1001, map[string]any{"sha": "4be1c0de"}), "commits"),
		d("4097-byte commit message", "commits", []any{map[string]any{"sha": "4be1c0de", "message": long(4097)}}, "commits[0].message"),
		d("257-byte commit author", "commits", []any{map[string]any{"sha": "4be1c0de", "author": long(257)}}, "commits[0].author"),
		d("65 labels", "labels", func() map[string]any { labels["l64"] = "x"; return labels }(), "labels"),
		d("129-byte label name", "labels", map[string]any{long(129): "x"}, "labels"),
		d("a field deploywatch computes", "duration_s", 394, "duration_s"),
		d("empty type", "type", ""),
		d("blank version", "version", "   ", "version"),
		d("commit time without a zone", "commits", []any{map[string]any{"sha": "4be1c0de", "time": "2026-11-20T14:03:07"}}, "commits[0].time"),
		d("1025-byte label value", "labels", map[string]any{"team": long(1025)}, "labels.team"),
		d("empty label name", "labels", map[string]any{"": "x"}, "labels"),
		d("label value of the wrong kind", "labels", map[string]any{"replicas": 3}, "labels.replicas"),

		m("as it is", "env", "prod"),
		m("id and type", "type", "metrics"),
		m("empty id", "id", ""),
		m("interval of a day", "samples.0.interval_s", 86400),
		m("sub-second interval", "samples.0.interval_s", 0.25),
		m("empty sample service", "samples.0.service", ""),
		m("no quantiles", "samples.0.latency_ms", absent),
		m("max quantile only", "samples.0.latency_ms", map[string]any{"max": 1630.8}),
		m("256 histogram bounds", "samples.0.latency_histogram", histogram(256, 257)),
		m("no service", "service", absent, "service"),
		m("no samples", "samples", absent, "samples"),
		m("samples of the wrong kind", "samples", "none", "samples"),
		m("a sample that is a number", "samples", []any{5}, "samples[0]"),
		m("type deploy", "type", "deploy", "type"),
		m("id with a slash", "id", "batch/42", "id"),
		m("sample without time", "samples.0.time", absent, "samples[0].time"),
		m("sample time yesterday", "samples.0.time", "yesterday", "samples[0].time"),
		m("zero interval", "samples.0.interval_s", 0, "samples[0].interval_s"),
		m("sample service", "samples.0.service", "checkout-worker"),
		m("infinite max", "samples.0.latency_ms.max", json.Number("1e400"), "samples[0].latency_ms.max"),
		m("infinite bound", "samples.0.latency_histogram.bounds_ms.1", json.Number("1e400"), "samples[0].latency_histogram.bounds_ms[1]"),
		m("one count only", "samples.0.latency_histogram", map[string]any{"bounds_ms": []any{}, "counts": []any{100}}, "samples[0].latency_histogram.bounds_ms"),
		m("histogram of the wrong kind", "samples.0.latency_histogram", []any{50, 100}, "samples[0].latency_histogram"),
		m("sample time without a zone", "samples.0.time", "2026-11-20T14:10:00", "samples[0].time"),
		m("sample without interval", "samples.0.interval_s", absent, "samples[0].interval_s"),
		m("negative interval", "samples.0.interval_s", -60, "samples[0].interval_s"),
		m("interval over a day", "samples.0.interval_s", 86400.5, "samples[0].interval_s"),
		m("sample without requests", "samples.0.requests", absent, "samples[0].requests"),
		m("requests null", "samples.0.requests", nil, "samples[0].requests"),
		m("sample without errors", "samples.0.errors", absent, "samples[0].errors"),
		m("fractional requests", "samples.0.requests", 100.5, "samples[0].requests"),
		m("negative errors", "samples.0.errors", -1, "samples[0].errors"),
		m("requests as a boolean", "samples.0.requests", true, "samples[0].requests"),
		m("requests over 2^63", "samples.0.requests", json.Number("1e19"), "samples[0].requests"),
		m("sample env that is not a name", "samples.0.env", "prod eu", "samples[0].env"),
		m("257-byte instance", "samples.0.instance", long(257), "samples[0].instance"),
		m("257-byte version", "samples.0.version", long(257), "samples[0].version"),
		m("unknown sample field", "samples.0.region", "eu-west-1", "samples[0].region"),
		m("negative p50", "samples.0.latency_ms.p50", -1, "samples[0].latency_ms.p50"),
		m("p50 as a string", "samples.0.latency_ms.p50", "40", "samples[0].latency_ms.p50"),
		m("p75", "samples.0.latency_ms.p75", 120, "samples[0].latency_ms.p75"),
		m("quantiles of the wrong kind", "samples.0.latency_ms", 40, "samples[0].latency_ms"),
		m("histogram without counts", "samples.0.latency_histogram.counts", absent, "samples[0].latency_histogram.counts"),
		m("histogram without bounds", "samples.0.latency_histogram.bounds_ms", absent, "samples[0].latency_histogram.bounds_ms", "samples[0].latency_histogram.counts"),
		m("negative bound", "samples.0.latency_histogram.bounds_ms.0", -50, "samples[0].latency_histogram.bounds_ms[0]"),
		m("bound as a string", "samples.0.latency_histogram.bounds_ms.0", "50", "samples[0].latency_histogram.bounds_ms[0]"),
		m("fractional count", "samples.0.latency_histogram.counts.1", 25.5, "samples[0].latency_histogram.counts[1]"),
		m("null count", "samples.0.latency_histogram.counts.1", nil, "samples[0].latency_histogram.counts[1]"),
		m("257 histogram bounds", "samples.0.latency_histogram", histogram(257, 257), "samples[0].latency_histogram.bounds_ms", "samples[0].latency_histogram.counts"),
		m("258 histogram counts", "samples.0.latency_histogram", histogram(256, 258), "samples[0].latency_histogram.counts"),
		m("one count for one bound", "samples.0.latency_histogram", histogram(1, 1), "samples[0].latency_histogram.counts"),
		m("empty samples", "samples", []any{}, "samples"),
		m("histogram sum", "samples.0.latency_histogram.sum_ms", 12000, "samples[0].latency_histogram.sum_ms"),

		in("as it is", "env", "prod"),
		in("with id and type", "id", "PD-Q2K7X1T9M4"),
		in("no service", "service", absent, "service"),
		in("no status", "status", absent, "status"),
		in("status closed", "status", "closed", "status"),
		in("no time", "time", absent, "time"),
		in("time as a date", "time", "2026-11-20", "time"),
		in("resolved without id", "status", "resolved", "id"),
		in("1025-byte title", "title", long(1025), "title"),
		in("257-byte source", "source", long(257), "source"),
		in("deploy_id with a space", "deploy_id", "run 42", "deploy_id"),
		in("type deploy", "type", "deploy", "type"),
		in("unknown field", "severity", "sev1", "severity"),
	}
}

// histogram returns a latency histogram of the given number of bounds and counts.
func histogram(nBounds, nCounts int) map[string]any {
	bounds := make([]any, nBounds)
	for i := range bounds {
		bounds[i] = 5 * (i + 1)
	}
	counts := make([]any, nCounts)
	for i := range counts {
		counts[i] = i
	}
	return map[string]any{"bounds_ms": bounds, "counts": counts}
}

// absent, given to edit as the value, removes the field.
var absent = &struct{ absent bool }{}

// edit returns body with the value at path (keys and array indices separated
// by dots, such as samples.0.requests) set to v, or removed if v is absent.
func edit(body, path string, v any) string {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		panic(err)
	}
	keys := strings.Split(path, ".")
	node := doc
	for _, k := range keys[:len(keys)-1] {
		switch n := node.(type) {
		case map[string]any:
			node = n[k]
		case []any:
			node = n[atoi(k)]
		}
	}
	last := keys[len(keys)-1]
	switch n := node.(type) {
	case map[string]any:
		if v == absent {
			delete(n, last)
		} else {
			n[last] = v
		}
	case []any:
		n[atoi(last)] = v
	default:
		panic("edit: no " + path + " in " + body)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return string(out)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// goOnlyCases are bodies the JSON Schemas take but the decoder refuses: checks
// across fields, against the clock or in bytes, which JSON Schema cannot
// express. The schemas' descriptions name each of them.
func goOnlyCases() []contractCase {
	future := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	return []contractCase{
		{name: "errors above requests", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":101}]}`, fields: []string{"samples[0].errors"}},
		{name: "decreasing quantiles", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_ms":{"p50":40,"p90":120,"p99":110}}]}`, fields: []string{"samples[0].latency_ms.p99"}},
		{name: "histogram bounds not increasing", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_histogram":{"bounds_ms":[100,50],"counts":[50,40,10]}}]}`, fields: []string{"samples[0].latency_histogram.bounds_ms[1]"}},
		{name: "histogram one count short", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":100,"errors":1,"latency_histogram":{"bounds_ms":[50,100],"counts":[90,10]}}]}`, fields: []string{"samples[0].latency_histogram.counts"}},
		{name: "finished before started", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"succeeded","started_at":"2026-11-20T14:03:07Z","finished_at":"2026-11-20T14:03:06Z"}`, fields: []string{"finished_at"}},
		{name: "time in the future", route: "incident", body: `{"service":"checkout","env":"prod","status":"opened","time":"` + future + `"}`, fields: []string{"time"}},
		{name: "label value over 1024 bytes in 600 characters", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z","labels":{"note":"` + strings.Repeat("é", 600) + `"}}`, fields: []string{"labels.note"}},
		{name: "year 2000 with an offset is 1999 in UTC", route: "deploy", body: `{"service":"checkout","env":"prod","version":"v2.14.0","status":"started","started_at":"2000-01-01T00:30:00+01:00"}`, fields: []string{"started_at"}},
	}
}

// lenientCases are bodies the decoder takes but the JSON Schemas refuse: the
// schemas publish the canonical form, and the decoder forgives some departures.
var lenientCases = []contractCase{
	{name: "names with white space around them", route: "deploy", body: `{"service":" checkout ","env":"prod\n","version":"v2.14.0","status":"started","started_at":"2026-11-20T14:03:07Z"}`},
	{name: "field names in another case", route: "deploy", body: `{"Service":"checkout","ENV":"prod","version":"v2.14.0","status":"started","Started_At":"2026-11-20T14:03:07Z"}`},
	{name: "time with a one-digit hour", route: "incident", body: `{"service":"checkout","env":"prod","status":"opened","time":"2026-11-20T9:04:05Z"}`},
	{name: "time with a decimal comma", route: "incident", body: `{"service":"checkout","env":"prod","status":"opened","time":"2026-11-20T09:04:05,5Z"}`},
	{name: "count above 2^63-1", route: "metrics", body: `{"service":"checkout","env":"prod","samples":[{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":9223372036854775808,"errors":0}]}`},
}

// decodeBody decodes body as the route that c.route names does.
func decodeBody(route string, body []byte) error {
	switch route {
	case "deploy":
		return DecodeInto(body, new(Deploy), "")
	case "metrics":
		return DecodeInto(body, new(MetricsBatch), "")
	case "incident":
		return DecodeInto(body, new(Incident), "")
	case "push":
		return DecodeInto(body, new(Push), "")
	case "event":
		_, err := DecodeEvents(body)
		return err
	}
	panic("no route " + route)
}

// badFields returns the fields err names; err must be nil or a *ValidationError.
func badFields(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("got %T %q, want a *ValidationError", err, err)
	}
	fields := make([]string, 0, len(verr.Fields))
	for _, f := range verr.Fields {
		if f.Problem == "" {
			t.Errorf("field %s has no problem stated", f.Field)
		}
		fields = append(fields, f.Field)
	}
	return fields
}

func TestDecodeNamesEveryBadField(t *testing.T) {
	cases := slices.Concat(contractCases, goOnlyCases(), lenientCases)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decodeBody(c.route, []byte(c.body))
			if got := badFields(t, err); !slices.Equal(got, c.fields) {
				t.Fatalf("bad fields: got %q, want %q\nerror: %v", got, c.fields, err)
			}
		})
	}
}

func TestDecodeLimitsTheProblemsReported(t *testing.T) {
	f := func(name, body string) {
		t.Helper()
		err := DecodeInto([]byte(body), new(MetricsBatch), "")
		var verr *ValidationError
		if !errors.As(err, &verr) {
			t.Fatalf("%s: got %v, want a *ValidationError", name, err)
		}
		last := verr.Fields[len(verr.Fields)-1]
		if len(verr.Fields) != maxReportedProblems+1 || !strings.Contains(last.Problem, "more problems not listed") {
			t.Fatalf("%s: got %d problems ending with %+v, want %d ending with a note that there are more", name, len(verr.Fields), last, maxReportedProblems+1)
		}
	}
	sample := `{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":1,"errors":2}`
	f("bad samples", `{"service":"checkout","env":"prod","samples":[`+strings.Repeat(sample+",", 999)+sample+`]}`)
	sample = `{"time":"2026-11-20T14:10:00Z","interval_s":60,"requests":1,"errors":0,"instnace":"a"}`
	f("unknown fields", `{"service":"checkout","env":"prod","samples":[`+strings.Repeat(sample+",", 999)+sample+`]}`)
}

func TestDecodeProblemsArePrecise(t *testing.T) {
	// The fields are pinned by TestDecodeNamesEveryBadField; here, the words
	// a sender reads for the cases that need them most.
	f := func(route, body, field, wantProblem string) {
		t.Helper()
		err := decodeBody(route, []byte(body))
		var verr *ValidationError
		if !errors.As(err, &verr) {
			t.Fatalf("got %v, want a *ValidationError", err)
		}
		for _, fe := range verr.Fields {
			if fe.Field == field {
				if !strings.Contains(fe.Problem, wantProblem) {
					t.Fatalf("%s: got problem %q, want it to say %q", field, fe.Problem, wantProblem)
				}
				return
			}
		}
		t.Fatalf("%s not named in %v", field, err)
	}
	f("deploy", `{"service":5}`, "service", "must be a JSON string, got number")
	f("deploy", `{"finshed_at":"2026-11-20T14:09:41Z"}`, "finshed_at", "is not a known field")
	f("metrics", `{"samples":[{"time":"yesterday"}]}`, "samples[0].time", `got "yesterday"`)
	f("metrics", `{"samples":[{"requests":10,"errors":11}]}`, "samples[0].errors", "more than requests")
	f("metrics", `{"samples":[{"latency_histogram":{"bounds_ms":[1],"counts":[1]}}]}`, "samples[0].latency_histogram.counts", "has 1 counts for 1 bounds")
	f("event", ``, "body", "is empty")
	f("deploy", `{}]`, "body", "has data after the JSON value")
}
