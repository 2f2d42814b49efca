package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaBase is where the tests pretend the JSON Schemas are served from; the
// schemas refer to each other relatively, so any base works.
const schemaBase = "https://deploywatch.test/schemas/"

var routes = []string{"deploy", "metrics", "incident", "push", "event"}

// compileJSONSchemas compiles the embedded JSON Schemas, as strictly as an
// integrator's validator could: formats are asserted, not just annotations.
func compileJSONSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	for _, route := range routes {
		if err := c.AddResource(schemaBase+route+".schema.json", readJSONSchema(t, route)); err != nil {
			t.Fatalf("cannot add %s.schema.json: %v", route, err)
		}
	}
	compiled := make(map[string]*jsonschema.Schema)
	for _, route := range routes {
		sch, err := c.Compile(schemaBase + route + ".schema.json")
		if err != nil {
			t.Fatalf("cannot compile %s.schema.json: %v", route, err)
		}
		compiled[route] = sch
	}
	return compiled
}

// readJSONSchema returns the embedded JSON Schema of route, as the validator reads it.
func readJSONSchema(t *testing.T, route string) any {
	t.Helper()
	b, err := fs.ReadFile(JSONSchemas, "jsonschema/"+route+".schema.json")
	if err != nil {
		t.Fatalf("cannot read the JSON Schema of %s: %v", route, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("cannot parse %s.schema.json: %v", route, err)
	}
	return doc
}

// validateWithSchema reports whether sch takes body; a body that is not one
// JSON document it does not take.
func validateWithSchema(sch *jsonschema.Schema, body string) error {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(doc)
}

func TestJSONSchemasAreEmbedded(t *testing.T) {
	names, err := fs.Glob(JSONSchemas, "jsonschema/*")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, route := range routes {
		want = append(want, "jsonschema/"+route+".schema.json")
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("embedded: %q, want %q", names, want)
	}
}

// TestJSONSchemasAgreeWithDecoder keeps the published schemas honest: on every
// body of the contract, the schema of its route and the decoder agree.
func TestJSONSchemasAgreeWithDecoder(t *testing.T) {
	schemas := compileJSONSchemas(t)
	for _, c := range contractCases {
		t.Run(c.name, func(t *testing.T) {
			goErr := decodeBody(c.route, []byte(c.body))
			schemaErr := validateWithSchema(schemas[c.route], c.body)
			if (goErr == nil) != (schemaErr == nil) {
				t.Fatalf("the decoder and %s.schema.json disagree on\n%s\ndecoder: %v\nschema: %v", c.route, abbreviate(c.body), goErr, schemaErr)
			}
		})
	}
}

// TestJSONSchemasKnownDifferences pins where the schemas and the decoder
// knowingly differ, so that a new difference is a decision, not an accident.
func TestJSONSchemasKnownDifferences(t *testing.T) {
	schemas := compileJSONSchemas(t)
	for _, c := range goOnlyCases() {
		t.Run("decoder only/"+c.name, func(t *testing.T) {
			if err := validateWithSchema(schemas[c.route], c.body); err != nil {
				t.Fatalf("%s.schema.json refuses\n%s\nthough only the decoder should: %v", c.route, abbreviate(c.body), err)
			}
			if err := decodeBody(c.route, []byte(c.body)); err == nil {
				t.Fatalf("the decoder takes\n%s", abbreviate(c.body))
			}
		})
	}
	for _, c := range lenientCases {
		t.Run("schema only/"+c.name, func(t *testing.T) {
			if err := validateWithSchema(schemas[c.route], c.body); err == nil {
				t.Fatalf("%s.schema.json takes\n%s\nthough it publishes the canonical form", c.route, abbreviate(c.body))
			}
			if err := decodeBody(c.route, []byte(c.body)); err != nil {
				t.Fatalf("the decoder refuses\n%s\n%v", abbreviate(c.body), err)
			}
		})
	}
}

// TestJSONSchemaExamples checks that each schema's examples are valid for the
// schema and for the decoder: integrators copy them.
func TestJSONSchemaExamples(t *testing.T) {
	schemas := compileJSONSchemas(t)
	for _, route := range routes {
		doc := readJSONSchema(t, route).(map[string]any)
		examples, _ := doc["examples"].([]any)
		if len(examples) == 0 {
			t.Errorf("%s.schema.json has no examples", route)
		}
		for i, ex := range examples {
			if err := schemas[route].Validate(ex); err != nil {
				t.Errorf("%s.schema.json: example %d is not valid for it: %v", route, i, err)
			}
			body, err := json.Marshal(ex)
			if err != nil {
				t.Fatal(err)
			}
			if err := decodeBody(route, body); err != nil {
				t.Errorf("%s.schema.json: example %d is refused by the decoder: %v", route, i, err)
			}
		}
	}
}

// TestJSONSchemaFieldsMatchGo checks that each object in the schemas has
// exactly the fields of the Go type the decoder fills.
func TestJSONSchemaFieldsMatchGo(t *testing.T) {
	f := func(route, pointer string, goType reflect.Type) {
		t.Helper()
		node := readJSONSchema(t, route)
		for _, key := range strings.Split(strings.Trim(pointer, "/"), "/") {
			if key != "" {
				node = node.(map[string]any)[key]
			}
		}
		props := node.(map[string]any)["properties"].(map[string]any)
		var inSchema, inGo []string
		for name := range props {
			inSchema = append(inSchema, name)
		}
		for i := range goType.NumField() {
			name, _, _ := strings.Cut(goType.Field(i).Tag.Get("json"), ",")
			inGo = append(inGo, name)
		}
		slices.Sort(inSchema)
		slices.Sort(inGo)
		if !slices.Equal(inSchema, inGo) {
			t.Errorf("%s.schema.json#%s has fields %q; %s has %q", route, pointer, inSchema, goType, inGo)
		}
		if ap, _ := node.(map[string]any)["additionalProperties"].(bool); ap {
			t.Errorf("%s.schema.json#%s must not allow other fields: the decoder refuses them", route, pointer)
		}
	}
	f("deploy", "", reflect.TypeFor[Deploy]())
	f("deploy", "/$defs/commit", reflect.TypeFor[Commit]())
	f("metrics", "", reflect.TypeFor[MetricsBatch]())
	f("metrics", "/$defs/sample", reflect.TypeFor[Sample]())
	f("metrics", "/$defs/sample/properties/latency_ms", reflect.TypeFor[LatencyQuantiles]())
	f("metrics", "/$defs/sample/properties/latency_histogram", reflect.TypeFor[LatencyHistogram]())
	f("incident", "", reflect.TypeFor[Incident]())
	f("push", "", reflect.TypeFor[Push]())
	f("push", "/$defs/commit", reflect.TypeFor[Commit]())
}

// TestJSONSchemaSharedDefinitions checks that the definitions each schema
// repeats, so that it stands alone, are the same in all of them.
func TestJSONSchemaSharedDefinitions(t *testing.T) {
	defs := func(route string) map[string]any {
		return readJSONSchema(t, route).(map[string]any)["$defs"].(map[string]any)
	}
	want := defs("deploy")
	for _, route := range []string{"metrics", "incident", "push"} {
		for _, name := range []string{"name", "id", "time"} {
			if !reflect.DeepEqual(defs(route)[name], want[name]) {
				t.Errorf("%s.schema.json#/$defs/%s differs from deploy.schema.json's", route, name)
			}
		}
	}
	// The patterns are the decoder's own.
	for def, re := range map[string]string{"name": namePattern.String(), "id": idPattern.String()} {
		if got := want[def].(map[string]any)["pattern"]; got != re {
			t.Errorf("$defs/%s pattern is %q, the decoder's is %q", def, got, re)
		}
	}
}

func TestJSONSchemaEnumsMatchGo(t *testing.T) {
	f := func(route, pointer string, want ...string) {
		t.Helper()
		node := readJSONSchema(t, route)
		for _, key := range strings.Split(strings.Trim(pointer, "/"), "/") {
			node = node.(map[string]any)[key]
		}
		var got []string
		for _, v := range node.(map[string]any)["enum"].([]any) {
			if s, ok := v.(string); ok && s != "" {
				got = append(got, s)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s.schema.json#/%s: enum %q, want %q", route, pointer, got, want)
		}
	}
	f("deploy", "properties/status", string(DeployStarted), string(DeploySucceeded), string(DeployFailed), string(DeployRolledBack))
	f("deploy", "properties/strategy", string(StrategyRolling), string(StrategyCanary), string(StrategyBlueGreen), string(StrategyFlag))
	f("incident", "properties/status", string(IncidentOpened), string(IncidentResolved))
	f("deploy", "properties/type", string(TypeDeploy))
	f("metrics", "properties/type", string(TypeMetrics))
	f("incident", "properties/type", string(TypeIncident))
	f("push", "properties/type", string(TypePush))
}

func abbreviate(body string) string {
	if len(body) > 600 {
		return body[:600] + "…"
	}
	return body
}
