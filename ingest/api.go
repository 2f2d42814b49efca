package ingest

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/deploywatch/deploywatch/schema"
)

// Publisher writes messages to the event log and returns only after every one
// was acknowledged.
type Publisher interface {
	Publish(ctx context.Context, msgs []schema.Message) error
}

// DeployReader reads deploys' folded state from the projection.
type DeployReader interface {
	ListDeploys(ctx context.Context, f schema.DeployFilter) ([]schema.DeployState, error)
	// GetDeploy returns schema.ErrNotFound for an unknown id.
	GetDeploy(ctx context.Context, id string) (schema.DeployState, error)
}

// VerdictReader reads the impact analysis' latest verdict of deploys.
type VerdictReader interface {
	// Latest returns schema.ErrNotFound when the deploy has no verdict yet.
	Latest(ctx context.Context, deployID string) (*schema.Verdict, error)
	// LatestFor returns the verdicts of those deploys that have one.
	LatestFor(ctx context.Context, deployIDs []string) (map[string]*schema.Verdict, error)
}

// Check tells whether a dependency is reachable, for /readyz.
type Check func(ctx context.Context) error

// Config holds the API's settings.
type Config struct {
	// MaxBodyBytes bounds a request body after decompression; 0 means 10 MiB.
	MaxBodyBytes int64
	// APITokens, when any are set, are required as bearer tokens on /api/
	// routes and /webhooks/alertmanager.
	APITokens []string
	// MaxSamplesPerMessage splits large metric batches into event log messages.
	MaxSamplesPerMessage int
	// MaxMessageBytes bounds the encoded size of one event log message: a
	// metrics batch is split into more messages until each fits, any other
	// event above it is answered 413. 0 means 960 KiB, which with the
	// headers fits NATS' default max_payload of 1 MiB.
	MaxMessageBytes int
	// RetryAfter is what a 503 tells the sender to wait.
	RetryAfter time.Duration
	// Checks are run by /readyz, by name.
	Checks map[string]Check
	// Verdicts, when set, fills in the "verdict" of the deploys the read
	// routes return; without it every verdict is null.
	Verdicts VerdictReader
	// Incidents serves GET /api/v1/incidents[/{id}]; without it those routes answer 503.
	Incidents IncidentReader
	// Dora serves GET /api/v1/dora; without it that route answers 503.
	Dora DoraReader
	// Alerts serves the alert, acknowledgement and silence routes; without
	// it the read routes and acks answer 503.
	Alerts AlertReader
	// AlertmanagerEnv is the env of alerts posted to /webhooks/alertmanager
	// that have neither an env nor an environment label; "" means production.
	AlertmanagerEnv string
	// RemoteWrite maps Prometheus remote_write series to samples.
	RemoteWrite RemoteWriteConfig
	// Webhooks configures /webhooks/github and /webhooks/gitlab.
	Webhooks WebhookConfig
	Logger   *slog.Logger
	Metrics  *metrics.Set
}

// API serves the HTTP routes.
type API struct {
	cfg     Config
	pub     Publisher
	deploys DeployReader
	log     *slog.Logger
	metrics *metrics.Set
	tokens  tokenSet

	samplesPerRequest *metrics.Histogram
	rejected          *metrics.Counter
	rw                *remoteWriter
}

// New builds the API. deploys may be nil when no projection is wired (the read
// routes then answer 503).
func New(cfg Config, pub Publisher, deploys DeployReader) *API {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 10 << 20
	}
	if cfg.MaxSamplesPerMessage <= 0 {
		cfg.MaxSamplesPerMessage = 1000
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 960 << 10
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	return &API{
		cfg:               cfg,
		pub:               pub,
		deploys:           deploys,
		log:               cfg.Logger,
		metrics:           cfg.Metrics,
		tokens:            newTokenSet(cfg.APITokens),
		samplesPerRequest: cfg.Metrics.GetOrCreateHistogram(`deploywatch_ingest_samples_per_request`),
		rejected:          cfg.Metrics.GetOrCreateCounter(`deploywatch_ingest_rejected_requests_total`),
		rw:                newRemoteWriter(cfg.RemoteWrite, cfg.Metrics),
	}
}

// Handler returns the routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.handle(mux, "POST /api/v1/events", true, a.postEvents)
	a.handle(mux, "POST /api/v1/deploys", true, a.postDeploy)
	a.handle(mux, "POST /api/v1/metrics", true, a.postMetrics)
	a.handle(mux, "POST /api/v1/write", true, a.postRemoteWrite)
	a.handle(mux, "GET /api/v1/deploys", true, a.listDeploys)
	a.handle(mux, "GET /api/v1/deploys/{id}", true, a.getDeploy)
	a.handle(mux, "GET /api/v1/incidents", true, a.listIncidents)
	a.handle(mux, "GET /api/v1/incidents/{id}", true, a.getIncident)
	a.handle(mux, "GET /api/v1/dora", true, a.getDora)
	a.handle(mux, "GET /api/v1/alerts", true, a.listAlerts)
	a.handle(mux, "GET /api/v1/alerts/{alert_id}", true, a.getAlert)
	a.handle(mux, "POST /api/v1/alerts/{alert_id}/ack", true, a.ackAlert)
	a.handle(mux, "GET /api/v1/silences", true, a.listSilences)
	a.handle(mux, "POST /api/v1/silences", true, a.postSilence)
	// Alertmanager sends the token as http_config.authorization.credentials.
	a.handle(mux, "POST /webhooks/alertmanager", true, a.postAlertmanager)
	a.handle(mux, "POST /webhooks/github", false, a.postGitHubWebhook) // verified by its X-Hub-Signature-256
	a.handle(mux, "POST /webhooks/gitlab", false, a.postGitLabWebhook) // verified by its X-Gitlab-Token
	a.handle(mux, "GET /api/v1/schemas/{name}", false, a.getSchema)
	a.handle(mux, "GET /healthz", false, a.healthz)
	a.handle(mux, "GET /readyz", false, a.readyz)
	a.handle(mux, "GET /metrics", false, a.writeMetrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route "+r.Method+" "+r.URL.Path+": see the README for the API", nil)
	})
	return mux
}

// requestLatencyBuckets are the le bounds of the request latency
// histograms: from a 400 in microseconds to a large batch in seconds.
var requestLatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// handle registers h under pattern with metrics and, when protected, authentication.
func (a *API) handle(mux *http.ServeMux, pattern string, protected bool, h http.HandlerFunc) {
	route := pattern
	requests := func(code int) *metrics.Counter {
		return a.metrics.GetOrCreateCounter(`deploywatch_http_requests_total{route="` + route + `",code="` + itoa(code) + `"}`)
	}
	duration := a.metrics.GetOrCreatePrometheusHistogramExt(`deploywatch_http_request_duration_seconds{route="`+route+`"}`, requestLatencyBuckets)
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		if protected && !a.tokens.allows(r) {
			rec.Header().Set("WWW-Authenticate", `Bearer realm="deploywatch"`)
			writeError(rec, http.StatusUnauthorized, "missing or wrong API token: send Authorization: Bearer <token> with one of the configured --api-tokens", nil)
		} else {
			h(rec, r)
		}
		requests(rec.code).Inc()
		duration.UpdateDuration(start)
	})
}

// NewServer wraps h in an http.Server with timeouts, so slow or stuck clients
// cannot hold connections for ever.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}
