package schema

import "embed"

// JSONSchemas holds the JSON Schemas (draft 2020-12) published for integrators,
// under jsonschema/: deploy.schema.json, metrics.schema.json and
// incident.schema.json describe the bodies of the routes for one kind of event,
// push.schema.json a push event, event.schema.json the body of
// POST /api/v1/events (one event or an array of them). event.schema.json refers to the others by relative references, so
// serve them side by side, for example from fs.Sub(JSONSchemas, "jsonschema").
//
// They describe what DecodeInto and DecodeEvent accept, and the tests hold
// them to it. What JSON Schema cannot express (errors at most requests,
// quantiles that do not decrease, times not in the future, limits in bytes)
// they state in their descriptions.
//
//go:embed jsonschema/*.json
var JSONSchemas embed.FS
