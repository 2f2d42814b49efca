package dashboards_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"

	"github.com/deploywatch/deploywatch/dashboards"
)

var update = flag.Bool("update", false, "rewrite the generated files kept in deployments/grafana/")

// kept is where the repository keeps the generated files.
var kept = filepath.Join("..", "deployments", "grafana")

// TestGeneratedFilesAreKept compares freshly generated files with the ones
// in deployments/grafana/ (go test ./dashboards -update rewrites them).
func TestGeneratedFilesAreKept(t *testing.T) {
	files, err := dashboards.Generate(dashboards.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.RemoveAll(filepath.Join(kept, "dashboards")); err != nil {
			t.Fatal(err)
		}
		if err := dashboards.WriteFiles(kept, files); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for _, f := range files {
		want = append(want, f.Path)
		got, err := os.ReadFile(filepath.Join(kept, f.Path))
		if err != nil {
			t.Errorf("cannot read %s (go test ./dashboards -update writes it): %s", f.Path, err)
			continue
		}
		if string(got) != string(f.Data) {
			t.Errorf("%s differs from what the generator writes now (go test ./dashboards -update rewrites it)", f.Path)
		}
	}
	// No dashboard left behind that the generator no longer writes.
	found, err := filepath.Glob(filepath.Join(kept, "dashboards", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range found {
		rel, _ := filepath.Rel(kept, path)
		if !slices.Contains(want, rel) {
			t.Errorf("%s is not generated any more: delete it (or run -update)", path)
		}
	}
}

// TestGeneratedJSONDecodesIntoTheSDKTypes decodes every generated dashboard
// back into the SDK's dashboard.Dashboard and checks that panels, queries,
// variables and annotations survived the round trip.
func TestGeneratedJSONDecodesIntoTheSDKTypes(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	cog.NewRuntime().RegisterDataqueryVariant(dashboards.ClickHouseVariantConfig())
	built, err := dashboards.All()
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]bool{}
	for _, want := range built {
		data, err := dashboards.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var got dashboard.Dashboard
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("dashboard %s does not decode into dashboard.Dashboard: %s", *want.Uid, err)
		}
		if got.Uid == nil || *got.Uid != *want.Uid || uids[*got.Uid] {
			t.Fatalf("dashboard uid %v after decoding, want %s, once", got.Uid, *want.Uid)
		}
		uids[*got.Uid] = true
		if len(got.Panels) != len(want.Panels) || len(got.Panels) == 0 {
			t.Errorf("%s: %d panels after decoding, want %d", *want.Uid, len(got.Panels), len(want.Panels))
		}
		ids := map[uint32]bool{}
		for _, p := range got.Panels {
			if p.Panel == nil || p.Panel.Id == nil || ids[*p.Panel.Id] || len(p.Panel.Targets) == 0 {
				t.Errorf("%s: a panel without a unique id or without queries: %+v", *want.Uid, p.Panel)
				continue
			}
			ids[*p.Panel.Id] = true
			for _, q := range p.Panel.Targets {
				switch q.(type) {
				case dashboards.ClickHouseQuery, *prometheus.Dataquery:
				default:
					t.Errorf("%s panel %s: a query decoded as %T", *want.Uid, *p.Panel.Title, q)
				}
			}
		}
		if w, g := dashboards.ClickHouseQueries(want), dashboards.ClickHouseQueries(got); !reflect.DeepEqual(w, g) {
			t.Errorf("%s: the ClickHouse queries changed in the round trip:\n got %+v\nwant %+v", *want.Uid, g, w)
		}
		if len(got.Templating.List) != len(want.Templating.List) {
			t.Errorf("%s: %d variables after decoding, want %d", *want.Uid, len(got.Templating.List), len(want.Templating.List))
		}
		if len(got.Annotations.List) != len(want.Annotations.List) {
			t.Errorf("%s: %d annotations after decoding, want %d", *want.Uid, len(got.Annotations.List), len(want.Annotations.List))
		}
	}
	for _, uid := range []string{dashboards.ServiceImpactUID, dashboards.FleetUID, dashboards.DeliveryUID, dashboards.PipelineHealthUID} {
		if !uids[uid] {
			t.Errorf("no dashboard %s", uid)
		}
	}
}
