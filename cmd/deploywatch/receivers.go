package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/alerts"
	"github.com/nats-io/nats.go/jetstream"
)

// deliveryFlags are serve's settings of the webhook delivery.
type deliveryFlags struct {
	receivers string
}

func (f *deliveryFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.receivers, "receivers", "", "YAML file of webhook receivers that alerts are delivered to, signed and retried "+
		"(see deployments/receivers.example.yaml; none: no webhooks)")
}

// loadReceivers reads --receivers; nil when none is given. Secrets written
// as env:NAME are read from the environment here.
func loadReceivers(f deliveryFlags) (*alerts.Receivers, error) {
	if f.receivers == "" {
		return nil, nil
	}
	data, err := os.ReadFile(f.receivers)
	if err != nil {
		return nil, fmt.Errorf("cannot read --receivers: %w", err)
	}
	rs, err := alerts.ParseReceivers(data, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("--receivers %s: %w", f.receivers, err)
	}
	return rs, nil
}

// startDelivery delivers alerts to the receivers until stop is called; a
// failure arrives on done. Without receivers it does nothing.
func startDelivery(ctx context.Context, rs *alerts.Receivers, js jetstream.JetStream, pub alerts.Publisher,
	log *slog.Logger, set *metrics.Set) (done <-chan error, stop func()) {
	if rs == nil {
		return nil, func() {}
	}
	names := make([]string, 0, len(rs.Receivers))
	for _, r := range rs.Receivers {
		names = append(names, r.Name)
	}
	log.Info("delivering alerts to webhook receivers", "receivers", names)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	errs := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		errs <- alerts.RunDelivery(runCtx, js, pub, alerts.DeliveryConfig{
			Receivers: rs, UserAgent: "deploywatch/" + version, Logger: log, Metrics: set,
		})
	}()
	var once sync.Once
	return errs, func() {
		once.Do(func() {
			cancel()
			<-exited
			select {
			case err := <-errs:
				if err != nil {
					log.Error("the webhook delivery did not stop cleanly; JetStream hands out again what it did not ack", "err", err)
				}
			default: // serve took it already
			}
		})
	}
}
