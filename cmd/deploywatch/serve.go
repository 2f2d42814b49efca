package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/VictoriaMetrics/metrics"
	"github.com/cenkalti/backoff/v4"
	"github.com/deploywatch/deploywatch/eventlog"
	"github.com/deploywatch/deploywatch/ingest"
	"github.com/deploywatch/deploywatch/internal/chlocal"
	"github.com/deploywatch/deploywatch/processors"
	"github.com/deploywatch/deploywatch/schema/chschema"
	"github.com/deploywatch/deploywatch/store"
	"github.com/nats-io/nats.go"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// serveConfig is everything `deploywatch serve` can be told.
type serveConfig struct {
	listen       string
	dataDir      string
	apiTokens    string
	maxBodyBytes int64
	logLevel     string
	logFormat    string
	memoryLimit  int64

	natsURL, natsListen                          string
	natsUser, natsPassword, natsToken, natsCreds string
	natsReplicas                                 int
	changesMaxAge, metricsMaxAge                 time.Duration
	metricsMaxBytes                              int64

	clickhouseDSN    string
	clickhouseListen string
	clickhouseDB     string

	flushRows     int
	flushInterval time.Duration
	ackWait       time.Duration

	impact   impactFlags
	alerts   alertsFlags
	delivery deliveryFlags

	alertmanagerEnv string

	githubWebhookSecret, gitlabWebhookToken  string
	webhookServiceMap, githubDeployWorkflows string

	remoteWrite remoteWriteFlags

	// onReady, when set (by tests), is told the API's address once serve accepts requests.
	onReady func(apiAddr string)
}

func serveCommand(stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("deploywatch serve", flag.ContinueOnError)
	var c serveConfig
	limits := eventlog.DefaultStreamLimits()
	fs.String("config", "", "YAML file with any of these flags as keys (flags and DEPLOYWATCH_* variables win over it)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8080", "address of the HTTP API")
	fs.StringVar(&c.dataDir, "data-dir", "./data", "directory for the embedded NATS' JetStream files and the local ClickHouse's data")
	fs.StringVar(&c.apiTokens, "api-tokens", "", "comma-separated bearer tokens required on /api/ routes and /webhooks/alertmanager (none: open)")
	fs.StringVar(&c.alertmanagerEnv, "alertmanager-env", ingest.DefaultAlertmanagerEnv, "env of the incidents of alerts posted to /webhooks/alertmanager without an env or environment label")
	fs.StringVar(&c.githubWebhookSecret, "github-webhook-secret", "", "secret of the GitHub webhook posting to /webhooks/github, which verifies X-Hub-Signature-256 (none: the route answers 503)")
	fs.StringVar(&c.gitlabWebhookToken, "gitlab-webhook-token", "", "secret token of the GitLab webhook posting to /webhooks/gitlab, compared with X-Gitlab-Token (none: the route answers 503)")
	fs.StringVar(&c.webhookServiceMap, "webhook-service-map", "", "comma-separated repo=service pairs naming the service of a GitHub repository or GitLab project (owner/name or name; none: the repository's name)")
	fs.StringVar(&c.githubDeployWorkflows, "github-deploy-workflows", "", "pattern of the GitHub Actions workflow names whose completed runs are deploys, * any characters and ? one, e.g. 'Deploy*' (none: workflow runs are not deploys)")
	fs.Int64Var(&c.maxBodyBytes, "max-body-bytes", 10<<20, "largest request body accepted, after decompression")
	fs.Int64Var(&c.memoryLimit, "memory-limit", 256<<20, "soft limit in bytes for the Go heap: the garbage collector works harder near it (0: none; GOMEMLIMIT wins when set)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.natsURL, "nats-url", "", "external NATS to use as the event log (none: run an embedded NATS server)")
	fs.StringVar(&c.natsListen, "nats-listen", "127.0.0.1:4222", "where the embedded NATS server listens for other clients")
	fs.StringVar(&c.natsUser, "nats-user", "", "user for --nats-url")
	fs.StringVar(&c.natsPassword, "nats-password", "", "password for --nats-user")
	fs.StringVar(&c.natsToken, "nats-token", "", "token for --nats-url, or required by the embedded server from its clients")
	fs.StringVar(&c.natsCreds, "nats-creds", "", "credentials file for --nats-url")
	fs.IntVar(&c.natsReplicas, "nats-replicas", limits.Replicas, "stream replicas (3 on a NATS cluster)")
	fs.DurationVar(&c.changesMaxAge, "changes-max-age", limits.ChangesMaxAge, "how long the event log keeps deploys and incidents (0: for ever)")
	fs.DurationVar(&c.metricsMaxAge, "metrics-max-age", limits.MetricsMaxAge, "how long the event log keeps metric batches")
	fs.Int64Var(&c.metricsMaxBytes, "metrics-max-bytes", limits.MetricsMaxBytes, "how many bytes of metric batches the event log keeps")
	fs.StringVar(&c.clickhouseDSN, "clickhouse-dsn", "", "ClickHouse to project into, e.g. clickhouse://user:pass@host:9000/deploywatch (none: start a local clickhouse-server under --data-dir)")
	fs.StringVar(&c.clickhouseListen, "clickhouse-listen", "127.0.0.1:19000", "native-protocol address of the local clickhouse-server (its HTTP port is the next one)")
	fs.StringVar(&c.clickhouseDB, "clickhouse-database", "deploywatch", "database of the local clickhouse-server")
	fs.IntVar(&c.flushRows, "sink-flush-rows", 50_000, "the sink writes to ClickHouse once this many rows are buffered")
	fs.DurationVar(&c.flushInterval, "sink-flush-interval", time.Second, "the sink writes to ClickHouse at the latest this long after a row arrived")
	fs.DurationVar(&c.ackWait, "sink-ack-wait", 60*time.Second, "how long JetStream waits for the sink's ack before redelivering")
	c.impact.register(fs)
	c.alerts.register(fs)
	c.delivery.register(fs)
	c.remoteWrite.register(fs)
	return &ffcli.Command{
		Name:       "serve",
		ShortUsage: "deploywatch serve [flags]",
		ShortHelp:  "run the pipeline: HTTP API, event log (NATS JetStream) and ClickHouse sink",
		LongHelp: "Runs everything in one process: an embedded NATS JetStream server (or --nats-url),\n" +
			"the HTTP API on --listen, and the sink that projects the event log into ClickHouse\n" +
			"(--clickhouse-dsn, or a local clickhouse-server it starts and supervises).\n" +
			"SIGINT or SIGTERM stops it gracefully: no new requests, buffered rows written and acked.",
		FlagSet: fs,
		Options: settings(),
		Exec: func(ctx context.Context, _ []string) error {
			log, err := newLogger(stderr, c.logLevel, c.logFormat)
			if err != nil {
				return err
			}
			return serve(ctx, c, log)
		},
	}
}

func serve(ctx context.Context, c serveConfig, log *slog.Logger) error {
	set := metrics.NewSet()
	impactCfg, err := loadImpactConfig(c.impact)
	if err != nil {
		return err
	}
	alertRules, err := loadAlertRules(c.alerts)
	if err != nil {
		return err
	}
	receivers, err := loadReceivers(c.delivery)
	if err != nil {
		return err
	}
	webhooks, err := webhookConfig(c)
	if err != nil {
		return err
	}
	remoteWrite, err := c.remoteWrite.config()
	if err != nil {
		return err
	}
	if c.memoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(c.memoryLimit)
	}
	if err := os.MkdirAll(c.dataDir, 0o750); err != nil {
		return fmt.Errorf("cannot create --data-dir %s: %w", c.dataDir, err)
	}

	// The event log.
	natsURL := c.natsURL
	if natsURL == "" {
		host, port, err := splitHostPort(c.natsListen)
		if err != nil {
			return fmt.Errorf("--nats-listen: %w", err)
		}
		if port == 0 {
			port = -1 // nats-server reads 0 as its default port; -1 picks a free one
		}
		srv, err := eventlog.StartEmbedded(eventlog.EmbeddedOptions{
			Host: host, Port: port, StoreDir: filepath.Join(c.dataDir, "jetstream"), Token: c.natsToken, Logger: log.With("component", "nats"),
		})
		if err != nil {
			return err
		}
		defer func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		}()
		natsURL = srv.ClientURL()
		log.Info("embedded NATS JetStream started", "url", natsURL, "store", filepath.Join(c.dataDir, "jetstream"))
	}
	nc, js, err := connectJetStream(eventlog.ConnectOptions{
		URL: natsURL, Name: "deploywatch serve", User: c.natsUser, Password: c.natsPassword,
		Token: c.natsToken, CredsFile: c.natsCreds, Logger: log,
	})
	if err != nil {
		return err
	}
	defer nc.Close()
	limits := eventlog.StreamLimits{
		ChangesMaxAge: c.changesMaxAge, MetricsMaxAge: c.metricsMaxAge, MetricsMaxBytes: c.metricsMaxBytes,
		DuplicateWindow: eventlog.DefaultStreamLimits().DuplicateWindow, Replicas: c.natsReplicas,
	}
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	if err := eventlog.EnsureStreams(setupCtx, js, limits); err != nil {
		return err
	}
	// remote_write's parts wait there for the rest of their scrape, which
	// Prometheus may split over requests, and the markers of finished samples
	// stay there as long as Prometheus may retry a request from its WAL (about
	// 2 h): a part retried after its marker expired would be folded into a
	// partial sample replacing the complete one.
	rwParts, err := eventlog.OpenBucket(setupCtx, js, eventlog.BucketConfig{
		Name: "remote_write_parts", Description: "deploywatch: parts of remote_write samples waiting for the rest of their scrape",
		MaxAge: remoteWritePartsMaxAge, Replicas: c.natsReplicas,
	})
	if err != nil {
		return err
	}
	remoteWrite.Parts = rwParts
	// Webhook delivery ids, so a delivery sent again is not published again;
	// GitHub redelivers up to 3 days back, a week covers that and GitLab's retries.
	webhooks.Deliveries, err = eventlog.OpenBucket(setupCtx, js, eventlog.BucketConfig{
		Name: "webhook_deliveries", Description: "deploywatch: GitHub and GitLab webhook deliveries whose events the event log acknowledged",
		MaxAge: 7 * 24 * time.Hour, Replicas: c.natsReplicas,
	})
	if err != nil {
		return err
	}

	// ClickHouse.
	dsn := c.clickhouseDSN
	if dsn == "" {
		local, err := startLocalClickHouse(ctx, c, log)
		if err != nil {
			return err
		}
		defer local.stop()
		dsn = local.dsn
	}
	conn, err := chschema.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := migrate(setupCtx, conn, dsn, log); err != nil {
		return err
	}

	// The HTTP API.
	pub, err := eventlog.NewPublisher(nc, 30*time.Second, set)
	if err != nil {
		return err
	}
	api := ingest.New(ingest.Config{
		MaxBodyBytes: c.maxBodyBytes,
		// Leave room for headers under the server's payload limit.
		MaxMessageBytes: int(nc.MaxPayload()) - 16<<10,
		APITokens:       splitList(c.apiTokens),
		Checks: map[string]ingest.Check{
			"nats":       pub.Check,
			"clickhouse": conn.Ping,
		},
		Verdicts:        store.NewVerdicts(conn),
		Incidents:       store.NewIncidents(conn),
		Dora:            store.NewDora(conn),
		Alerts:          store.NewAlerts(conn),
		AlertmanagerEnv: c.alertmanagerEnv,
		Webhooks:        webhooks,
		RemoteWrite:     remoteWrite,
		Logger:          log.With("component", "api"),
		Metrics:         set,
	}, pub, store.NewDeploys(conn))

	// The alert engine: opened before the impact analysis starts, so that no verdict slips past it.
	alertsDone, stopAlerts, err := startAlerts(ctx, alertRules, c.alerts, js, pub, log.With("component", "alerts"), set)
	if err != nil {
		return err
	}
	defer stopAlerts()
	deliveryDone, stopDelivery := startDelivery(ctx, receivers, js, pub, log.With("component", "delivery"), set)
	defer stopDelivery()

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("cannot listen on --listen %s: %w", c.listen, err)
	}

	// The sink.
	sinkCtx, stopSink := context.WithCancel(context.WithoutCancel(ctx))
	sinkDone := make(chan error, 1)
	go func() {
		sinkDone <- processors.RunSink(sinkCtx, js, conn, processors.SinkConfig{
			FlushRows: c.flushRows, FlushInterval: c.flushInterval, AckWait: c.ackWait,
			Logger: log.With("component", "sink"), Metrics: set,
		})
	}()

	// The inbox: events that NATS publishers put on deploywatch.in.>, validated onto the event log.
	inboxCtx, stopInbox := context.WithCancel(context.WithoutCancel(ctx))
	defer stopInbox()
	inboxDone := make(chan error, 1)
	go func() {
		inboxDone <- processors.RunInbox(inboxCtx, js, pub, processors.InboxConfig{
			MaxMessageBytes: int(nc.MaxPayload()) - 16<<10,
			Logger:          log.With("component", "inbox"), Metrics: set,
		})
	}()

	// remote_write's finisher: one complete sample from the parts of a scrape.
	finisherCtx, stopFinisher := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFinisher()
	finisherDone := make(chan error, 1)
	go func() {
		finisherDone <- ingest.NewRemoteWriteFinisher(rwParts, pub, ingest.RemoteWriteFinisherConfig{
			FinishDelay: c.remoteWrite.finishDelay, MaxMessageBytes: int(nc.MaxPayload()) - 16<<10,
			Logger: log.With("component", "remote_write"), Metrics: set,
		}).Run(finisherCtx)
	}()

	// The deploy impact analysis.
	impactCtx, stopImpact := context.WithCancel(context.WithoutCancel(ctx))
	defer stopImpact()
	var impactDone <-chan error
	if c.impact.enabled {
		impactDone = startImpact(impactCtx, impactCfg, js, pub, conn, log.With("component", "impact"), set)
	}

	httpSrv := ingest.NewServer(c.listen, api.Handler())
	httpErr := make(chan error, 1)
	go func() { httpErr <- httpSrv.Serve(ln) }()
	if c.onReady != nil {
		c.onReady(ln.Addr().String())
	}
	log.Info("deploywatch is serving", "api", "http://"+ln.Addr().String(), "nats", natsURL, "clickhouse", redactDSN(dsn), "version", version)

	var failure error
	select {
	case <-ctx.Done():
		log.Info("shutting down: no new requests; writing and acking what the sink holds")
	case err := <-httpErr:
		failure = fmt.Errorf("the HTTP server stopped: %w", err)
	case err := <-sinkDone:
		failure = fmt.Errorf("the ClickHouse sink stopped: %w", err)
		sinkDone <- nil
	case err := <-inboxDone:
		failure = fmt.Errorf("the inbox processor stopped: %w", err)
		inboxDone <- nil
	case err := <-impactDone:
		failure = fmt.Errorf("the impact analysis stopped: %w", err)
		c.impact.enabled = false
	case err := <-alertsDone:
		failure = fmt.Errorf("the alert engine stopped: %w", err)
	case err := <-deliveryDone:
		failure = fmt.Errorf("the webhook delivery stopped: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = httpSrv.Shutdown(shutdownCtx)
	stopImpact()
	if c.impact.enabled {
		if err := <-impactDone; err != nil {
			log.Error("the impact analysis did not stop cleanly; JetStream redelivers what it did not ack", "err", err)
		}
	}
	stopAlerts()
	stopDelivery()
	stopInbox()
	if err := <-inboxDone; err != nil {
		log.Error("the inbox processor did not stop cleanly; JetStream redelivers what it did not ack", "err", err)
	}
	stopFinisher()
	<-finisherDone // the parts it did not finish stay in their bucket for the next start
	stopSink()
	if err := <-sinkDone; err != nil {
		log.Error("the ClickHouse sink did not stop cleanly; JetStream redelivers what it did not ack", "err", err)
	}
	if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		log.Warn("cannot drain the NATS connection", "err", err)
	}
	log.Info("stopped")
	return failure
}

// migrate brings the ClickHouse schema up to date.
func migrate(ctx context.Context, conn driver.Conn, dsn string, log *slog.Logger) error {
	database, err := chschema.DatabaseFromDSN(dsn)
	if err != nil {
		return err
	}
	applied, err := chschema.Migrate(ctx, conn, database, log)
	if err != nil {
		return err
	}
	if len(applied) > 0 {
		log.Info("ClickHouse schema migrated", "database", database, "applied", applied)
	}
	return nil
}

// localClickHouse is a clickhouse-server child process kept running by serve.
type localClickHouse struct {
	dsn  string
	stop func()
}

// startLocalClickHouse starts clickhouse-server with its data under the data
// directory and restarts it, with backoff, whenever it exits while serve runs.
func startLocalClickHouse(ctx context.Context, c serveConfig, log *slog.Logger) (*localClickHouse, error) {
	bin, err := chlocal.Find()
	if err != nil {
		return nil, err
	}
	host, port, err := splitHostPort(c.clickhouseListen)
	if err != nil {
		return nil, fmt.Errorf("--clickhouse-listen: %w", err)
	}
	srv, err := chlocal.New(chlocal.Options{
		Binary: bin, DataDir: filepath.Join(c.dataDir, "clickhouse"), ListenHost: host, TCPPort: port, HTTPPort: port + 1,
		Logger: log.With("component", "clickhouse"),
	})
	if err != nil {
		return nil, err
	}
	log.Info("starting the local clickhouse-server", "binary", bin, "data", filepath.Join(c.dataDir, "clickhouse"), "addr", srv.Addr())
	if err := srv.Start(ctx); err != nil {
		return nil, fmt.Errorf("cannot start the local clickhouse-server (or give --clickhouse-dsn): %w", err)
	}
	superviseCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := backoff.NewExponentialBackOff()
		b.MaxElapsedTime = 0
		b.MaxInterval = 30 * time.Second
		for {
			select {
			case <-superviseCtx.Done():
				return
			case <-srv.Exited():
			}
			log.Error("the local clickhouse-server exited; restarting it (the sink holds and retries meanwhile)")
			for superviseCtx.Err() == nil {
				if err := srv.Start(superviseCtx); err == nil {
					log.Info("the local clickhouse-server is back")
					b.Reset()
					break
				} else {
					log.Error("cannot restart the local clickhouse-server", "err", err)
				}
				select {
				case <-superviseCtx.Done():
				case <-time.After(b.NextBackOff()):
				}
			}
		}
	}()
	return &localClickHouse{
		dsn: srv.DSN(c.clickhouseDB),
		stop: func() {
			cancel()
			<-done
			if err := srv.Stop(); err != nil {
				log.Warn("cannot stop the local clickhouse-server", "err", err)
			}
		},
	}, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q has no valid port", addr)
	}
	return host, port, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// redactDSN hides the password of a DSN before it is logged.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

// webhookConfig checks and gathers the settings of /webhooks/github and
// /webhooks/gitlab, reporting every problem at once.
func webhookConfig(c serveConfig) (ingest.WebhookConfig, error) {
	w := ingest.WebhookConfig{
		GitHubSecret:          c.githubWebhookSecret,
		GitLabToken:           c.gitlabWebhookToken,
		GitHubDeployWorkflows: c.githubDeployWorkflows,
	}
	var errs []error
	for _, pair := range splitList(c.webhookServiceMap) {
		repo, service, ok := strings.Cut(pair, "=")
		repo, service = strings.TrimSpace(repo), strings.TrimSpace(service)
		if !ok || repo == "" || service == "" {
			errs = append(errs, fmt.Errorf("--webhook-service-map entry %q must be repo=service, e.g. acme/checkout-web=checkout", pair))
			continue
		}
		if w.ServiceMap == nil {
			w.ServiceMap = map[string]string{}
		}
		w.ServiceMap[repo] = service
	}
	return w, errors.Join(errs...)
}
