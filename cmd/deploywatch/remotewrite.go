package main

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/ingest"
)

// remoteWritePartsMaxAge is how long remote_write's parts and markers stay
// in their bucket: longer than Prometheus retries a request (its WAL keeps
// about 2 h), so a late retry finds its sample's marker.
const remoteWritePartsMaxAge = 3 * time.Hour

// remoteWriteFlags are serve's settings of POST /api/v1/write: which series
// and labels become deploywatch samples. An empty flag means ingest's default,
// named in its help.
type remoteWriteFlags struct {
	requestCounters, latencyHistograms, statusLabels, serviceLabels string
	errorStatus, envLabel, versionLabel, instanceLabel, defaultEnv  string
	maxSeries, maxInflight                                          int
	maxInflightBytes                                                int64
	finishDelay                                                     time.Duration
}

func (f *remoteWriteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.requestCounters, "remote-write-request-counters", "", "comma-separated names of the request counters of /api/v1/write (none: http_requests_total,http_server_requests_total)")
	fs.StringVar(&f.latencyHistograms, "remote-write-latency-histograms", "", "comma-separated names of the latency histograms' _bucket series; bounds of *_seconds_bucket are converted to ms (none: http_request_duration_seconds_bucket,http_server_request_duration_seconds_bucket)")
	fs.StringVar(&f.statusLabels, "remote-write-status-labels", "", "comma-separated labels holding a request counter's status code, first found wins (none: code,status)")
	fs.StringVar(&f.errorStatus, "remote-write-error-status", "", "regular expression (anchored) of the status codes counted as errors (none: 5..)")
	fs.StringVar(&f.serviceLabels, "remote-write-service-labels", "", "comma-separated labels naming the service, first found wins (none: service,job)")
	fs.StringVar(&f.envLabel, "remote-write-env-label", "", "label naming the env (none: env)")
	fs.StringVar(&f.versionLabel, "remote-write-version-label", "", "label naming the version (none: version)")
	fs.StringVar(&f.instanceLabel, "remote-write-instance-label", "", "label naming the instance (none: instance)")
	fs.StringVar(&f.defaultEnv, "remote-write-default-env", "", "env of series without the env label (none: production)")
	fs.IntVar(&f.maxSeries, "remote-write-max-series", 0, "how many series' last values are kept for counter increases (0: 200000)")
	fs.IntVar(&f.maxInflight, "remote-write-max-inflight", 0, "remote_write requests handled at once; more are answered 429 (0: 16)")
	fs.Int64Var(&f.maxInflightBytes, "remote-write-max-inflight-bytes", 0, "decoded bytes of the remote_write requests handled at once (memory is a few times that); a request above it is answered 429 unless it is alone (0: 33554432, 32 MiB)")
	fs.DurationVar(&f.finishDelay, "remote-write-finish-delay", 0, "how long a remote_write sample waits for the rest of its scrape, which Prometheus may split over several requests, after its timestamp and its first part's arrival; keep it above queue_config.batch_send_deadline (0: 10s)")
}

// config checks the flags and returns the mapping, reporting every problem
// at once by flag name.
func (f *remoteWriteFlags) config() (ingest.RemoteWriteConfig, error) {
	c := ingest.RemoteWriteConfig{
		RequestCounters:   splitList(f.requestCounters),
		LatencyHistograms: splitList(f.latencyHistograms),
		StatusLabels:      splitList(f.statusLabels),
		ErrorStatus:       strings.TrimSpace(f.errorStatus),
		ServiceLabels:     splitList(f.serviceLabels),
		EnvLabel:          strings.TrimSpace(f.envLabel),
		VersionLabel:      strings.TrimSpace(f.versionLabel),
		InstanceLabel:     strings.TrimSpace(f.instanceLabel),
		DefaultEnv:        strings.TrimSpace(f.defaultEnv),
		MaxSeries:         f.maxSeries,
		MaxInflight:       f.maxInflight,
		MaxInflightBytes:  f.maxInflightBytes,
	}
	var errs []error
	if c.ErrorStatus != "" {
		if _, err := regexp.Compile("^(?:" + c.ErrorStatus + ")$"); err != nil {
			errs = append(errs, fmt.Errorf("--remote-write-error-status %q is not a regular expression: %v", c.ErrorStatus, err))
		}
	}
	for _, n := range c.LatencyHistograms {
		if !strings.HasSuffix(n, "_bucket") {
			errs = append(errs, fmt.Errorf("--remote-write-latency-histograms: %q is not a histogram's bucket series: name the one ending in _bucket, e.g. %s_bucket", n, n))
		}
	}
	if f.maxSeries < 0 {
		errs = append(errs, fmt.Errorf("--remote-write-max-series must be 0 (the default) or more, got %d", f.maxSeries))
	}
	if f.finishDelay < 0 {
		errs = append(errs, fmt.Errorf("--remote-write-finish-delay must be 0 (the default, 10s) or more, got %s", f.finishDelay))
	}
	if f.maxInflightBytes < 0 {
		errs = append(errs, fmt.Errorf("--remote-write-max-inflight-bytes must be 0 (the default) or more, got %d", f.maxInflightBytes))
	}
	if f.maxInflight < 0 {
		errs = append(errs, fmt.Errorf("--remote-write-max-inflight must be 0 (the default) or more, got %d", f.maxInflight))
	}
	if len(errs) == 0 {
		// What ingest checks beyond the flags' own rules.
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}
