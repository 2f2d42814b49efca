package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deploywatch/deploywatch/processors/impact"
)

func TestImpactConfigExample(t *testing.T) {
	cfg, err := loadImpactConfig(impactFlags{config: "../../deployments/impact.example.yaml", shard: "1/3"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Shard != (impact.Shard{Index: 1, Count: 3}) {
		t.Errorf("shard %+v, want 1 of 3", cfg.Shard)
	}
	reports := cfg.Policies.For("reports")
	if reports.AfterWindow != time.Hour || reports.BeforeWindow != 30*time.Minute {
		t.Errorf("reports' windows: %s before, %s after; want 30m, 1h", reports.BeforeWindow, reports.AfterWindow)
	}
	p99 := reports.Metrics.LatencyP99
	if p99.Critical || p99.Tolerance != 1.0 || p99.Harm != impact.HarmIncrease || p99.MinDelta != 10 {
		t.Errorf("reports' latency_p99 policy %+v: want the file's critical and tolerance over the default's harm and min_delta", p99)
	}
	if got := cfg.Policies.For("checkout"); got.AfterWindow != 30*time.Minute || !got.Metrics.LatencyP99.Critical {
		t.Errorf("checkout should have the default policy, got %+v", got)
	}
	if deps := cfg.Dependencies["checkout"]; len(deps) != 2 || deps[0] != "payments" {
		t.Errorf("checkout's dependencies: %v", deps)
	}
}

func TestImpactConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown key":  {"policies:\n  default:\n    after_windw: 10m\n", `unknown field "after_windw"`},
		"bad value":    {"policies:\n  default:\n    alpha: 0.9\n", "default.alpha must be above 0 and below 0.5"},
		"service key":  {"policies:\n  services:\n    cart:\n      metrics:\n        error_rate: {harm: up}\n", `services.cart.metrics.error_rate.harm must be increase, decrease or both`},
		"top-level":    {"polices: {}\n", "polices"},
		"shard format": {"", "--impact-shard must be I/N"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			shard := "0/1"
			if name == "shard format" {
				shard = "2/2"
			}
			_, err := loadImpactConfig(impactFlags{config: path, shard: shard})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
