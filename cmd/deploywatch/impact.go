package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/processors"
	"github.com/deploywatch/deploywatch/processors/impact"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"
)

// impactFlags are serve's settings of the deploy impact analysis.
type impactFlags struct {
	enabled bool
	config  string
	shard   string
}

func (f *impactFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.enabled, "impact", true, "run the deploy impact analysis (verdicts on the signals stream)")
	fs.StringVar(&f.config, "impact-config", "", "YAML file with the analysis policies per service and the services' dependencies (see deployments/impact.example.yaml)")
	fs.StringVar(&f.shard, "impact-shard", "0/1", "I/N: this replica analyses the services whose name hashes to I of N")
}

// impactFile is the layout of --impact-config.
type impactFile struct {
	Policies     impact.Policies     `yaml:"policies"`
	Dependencies map[string][]string `yaml:"dependencies"`
	// Lateness is how far behind a service's newest sample another sample
	// may arrive and still count.
	Lateness time.Duration `yaml:"lateness"`
}

// defaultLateness leaves room for instances and collectors that report a
// little behind each other; see impact.Config.Lateness.
const defaultLateness = 30 * time.Second

// loadImpactConfig reads the analysis settings: defaults, then the file, then validation.
func loadImpactConfig(f impactFlags) (impact.Config, error) {
	cfg := impact.Config{Policies: impact.Policies{Default: impact.DefaultPolicy()}, Lateness: defaultLateness}
	shard, err := parseShard(f.shard)
	if err != nil {
		return cfg, err
	}
	cfg.Shard = shard
	if f.config == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(f.config)
	if err != nil {
		return cfg, fmt.Errorf("cannot read --impact-config: %w", err)
	}
	file := impactFile{Policies: cfg.Policies, Lateness: cfg.Lateness}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		return cfg, fmt.Errorf("--impact-config %s: %w", f.config, err)
	}
	if err := file.Policies.Validate(); err != nil {
		return cfg, fmt.Errorf("--impact-config %s: %w", f.config, err)
	}
	if file.Lateness < 0 || file.Lateness > time.Hour {
		return cfg, fmt.Errorf("--impact-config %s: lateness must be between 0s and 1h, such as 30s; got %s", f.config, file.Lateness)
	}
	cfg.Policies, cfg.Dependencies, cfg.Lateness = file.Policies, file.Dependencies, file.Lateness
	return cfg, nil
}

func parseShard(s string) (impact.Shard, error) {
	if s == "" {
		return impact.Shard{Index: 0, Count: 1}, nil
	}
	i, n, ok := strings.Cut(s, "/")
	index, err1 := strconv.Atoi(i)
	count, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil || count < 1 || index < 0 || index >= count {
		return impact.Shard{}, fmt.Errorf("--impact-shard must be I/N with 0 <= I < N, such as 0/1 or 2/3; got %q", s)
	}
	return impact.Shard{Index: index, Count: count}, nil
}

// startImpact runs the impact processor and the incidents processor that
// follows its verdicts until ctx ends, or one of them fails (then both
// stop); the first error arrives on the channel.
func startImpact(ctx context.Context, cfg impact.Config, js jetstream.JetStream, pub processors.Publisher, ch processors.Querier, log *slog.Logger, set *metrics.Set) <-chan error {
	done := make(chan error, 1)
	cfg.History = processors.NewClickHouseHistory(ch)
	ctx, cancel := context.WithCancel(ctx)
	errs := make(chan error, 2)
	go func() {
		errs <- processors.RunImpact(ctx, js, pub, processors.ImpactConfig{
			Analyzer: cfg, Logger: log, Metrics: set,
		})
	}()
	go func() {
		errs <- processors.RunIncidents(ctx, js, pub, processors.IncidentsConfig{
			Logger: log.With("processor", "incidents"), Metrics: set,
		})
	}()
	go func() {
		first := <-errs
		cancel()
		second := <-errs
		done <- errors.Join(first, second)
	}()
	return done
}
