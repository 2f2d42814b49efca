package alerts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cenkalti/backoff/v4"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go/jetstream"
)

// The rollback agent takes the rollback signals of some services off the
// signals stream and undoes the deploy each names: it runs a command, or
// calls an HTTP endpoint, and reports the deploy rolled back.
//
// Exactly one successful run per signal id, whatever JetStream redelivers and
// however often the agent restarts, rests on a record per signal id in a
// JetStream key-value bucket, written before and after every run:
//
//	(none) ── create ──> running ── success ──> done ── report, ack
//	                        │ ├──── failure ──> retrying ── backoff ──> running
//	                        │ └─ attempts used up, or refused for good ──> failed ── ack
//	                        └─ found with a stale heartbeat (its agent died mid-run):
//	                             --idempotent ──> running again; else ──> interrupted ── ack
//
// A signal whose record is done is acked without running again (its deploy is
// reported again, which JetStream and the projection deduplicate); failed and
// interrupted ones are acked too: they wait for a person, not for a retry.
// Creating the record is atomic (JetStream KV Create), and every later change
// compares its revision, so two agents of the same name never run one signal
// at once.

// AgentConfig says what a rollback agent does.
type AgentConfig struct {
	// Name names the agent: agents of one name share one durable consumer
	// (each signal goes to one of them) and one bucket of run records.
	// Letters, digits, '_' and '-'; default "default".
	Name string
	// Services whose rollback signals this agent takes; required.
	Services []string
	// Command is a text/template run with sh -c (ParseCommand); or HTTPURL is
	// POSTed the signal's JSON. Exactly one of them.
	Command string
	HTTPURL string
	// HTTPHeaders are sent with the POST (e.g. Authorization).
	HTTPHeaders map[string]string
	// HTTPSecret, when set, signs the POST the Standard Webhooks way, with
	// the webhook-id derived from the signal id (the same on every retry).
	HTTPSecret []byte
	// Idempotent declares that running the command twice for a signal does
	// no harm: a run interrupted by the agent's death is then run again.
	// Otherwise it is recorded as interrupted, reported, and left to a person.
	Idempotent bool
	// Timeout bounds one run (default 5m); the command is killed after it.
	Timeout time.Duration
	// Attempts bounds the runs per signal (default 5); between them the
	// agent waits with exponential backoff and jitter from RetryInitial up
	// to RetryMax (defaults 5s and 1m).
	Attempts     int
	RetryInitial time.Duration
	RetryMax     time.Duration
	// AckWait is JetStream's wait for a word about a signal (default 30s);
	// StaleAfter how long a running record without a heartbeat counts as
	// its agent's death (default 1m; heartbeats come every StaleAfter/4).
	AckWait    time.Duration
	StaleAfter time.Duration
	// MaxSignalAge: a signal published longer ago than this is not acted on
	// (a rollback an hour late may undo a fix); 0 acts on any.
	MaxSignalAge time.Duration
	// Backlog: a consumer created for the first time starts with the
	// signals of the last Backlog; 0 (the default) with new ones only.
	Backlog time.Duration
	// Replicas of the bucket of run records (3 on a NATS cluster).
	Replicas int
	// Shell runs the command (default /bin/sh).
	Shell string
	// Env is the command's environment (cmd passes os.Environ()); variables
	// named DEPLOYWATCH_* are left out, the signal's values put in.
	Env []string
	// Instance names this process in run records (default: random).
	Instance string
	Logger   *slog.Logger
	Metrics  *metrics.Set

	// beforeRun and afterRun, when set by a test, run just before a command
	// starts (the record says running) and just after it succeeded (the
	// record says done, nothing is reported or acked yet); returning an
	// error stops the agent there, as a crash would.
	beforeRun func(signalID string) error
	afterRun  func(signalID string) error
}

var agentNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *AgentConfig) defaults() {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Minute
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.RetryInitial <= 0 {
		c.RetryInitial = 5 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Minute
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = time.Minute
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Shell == "" {
		c.Shell = "/bin/sh"
	}
	if c.Instance == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.Instance = "agent-" + hex.EncodeToString(b[:])
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
}

// Validate reports every problem of the configuration at once, and the
// parsed command template.
func (c *AgentConfig) Validate() (*template.Template, error) {
	var problems []string
	name := c.Name
	if name == "" {
		name = "default"
	}
	if !agentNameRE.MatchString(name) {
		problems = append(problems, fmt.Sprintf("--name must be 1-64 letters, digits, '_' or '-'; got %q", c.Name))
	}
	if len(c.Services) == 0 {
		problems = append(problems, "--service is required: the services whose rollback signals this agent acts on, e.g. checkout,search")
	}
	for _, s := range c.Services {
		if !servicePattern.MatchString(s) {
			problems = append(problems, fmt.Sprintf("--service: %q is not a service name (letters, digits, '.', '_' or '-')", s))
		}
	}
	var tmpl *template.Template
	switch {
	case c.Command == "" && c.HTTPURL == "":
		problems = append(problems, "give --command (a template run with sh -c) or --http-url (POSTed the signal)")
	case c.Command != "" && c.HTTPURL != "":
		problems = append(problems, "give --command or --http-url, not both")
	case c.Command != "":
		var err error
		if tmpl, err = ParseCommand(c.Command); err != nil {
			problems = append(problems, "--command: "+err.Error())
		}
	default:
		if u, err := url.Parse(c.HTTPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, "--http-url must be an http:// or https:// URL")
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return tmpl, nil
}

var servicePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// AgentConsumerName is the durable consumer of the agents named name.
func AgentConsumerName(name string) string { return "rollback-agent-" + name }

// AgentBucket is the key-value bucket of the run records of the agents named name.
func AgentBucket(name string) string { return "deploywatch_rollback_" + name }

// recordKey is a signal's key in the bucket: its id hashed, since ids hold
// characters keys may not.
func recordKey(signalID string) string {
	sum := sha256.Sum256([]byte(signalID))
	return hex.EncodeToString(sum[:])
}

// runState is where the run of one signal stands.
type runState string

const (
	stateRunning     runState = "running"     // a command is (or was about to be) running
	stateRetrying    runState = "retrying"    // the last attempt failed; none is running
	stateDone        runState = "done"        // a run succeeded
	stateFailed      runState = "failed"      // attempts used up, or refused for good
	stateInterrupted runState = "interrupted" // its agent died mid-run; not idempotent: for a person
	stateExpired     runState = "expired"     // older than MaxSignalAge when it came
)

// runRecord is the bucket's record of one signal.
type runRecord struct {
	SignalID   string    `json:"signal_id"`
	DeployID   string    `json:"deploy_id"`
	Service    string    `json:"service"`
	Env        string    `json:"env"`
	State      runState  `json:"state"`
	Instance   string    `json:"instance"`
	Attempts   int       `json:"attempts"`
	StartedAt  time.Time `json:"started_at"`
	Heartbeat  time.Time `json:"heartbeat_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	Output     string    `json:"output,omitempty"`
}

// RunAgent acts on the rollback signals of cfg.Services until ctx is
// cancelled; then it lets the commands under way finish (each within
// cfg.Timeout), records and acks them, and returns. pub reports the rolled
// back deploys to the changes stream.
func RunAgent(ctx context.Context, js jetstream.JetStream, pub Publisher, cfg AgentConfig) error {
	tmpl, err := cfg.Validate()
	if err != nil {
		return err
	}
	cfg.defaults()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      AgentBucket(cfg.Name),
		Description: "deploywatch rollback-agent " + cfg.Name + ": one record per rollback signal",
		History:     8,
		TTL:         recordTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("cannot open the JetStream key-value bucket %s: %w", AgentBucket(cfg.Name), err)
	}
	subjects := make([]string, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		subjects = append(subjects, schema.RollbackSubject(s))
	}
	slices.Sort(subjects)
	subjects = slices.Compact(subjects)
	consCfg := jetstream.ConsumerConfig{
		Durable:       AgentConsumerName(cfg.Name),
		Description:   "deploywatch rollback-agent " + cfg.Name + ": " + strings.Join(cfg.Services, ","),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 64,
	}
	if len(subjects) == 1 {
		consCfg.FilterSubject = subjects[0] // one service also works on NATS before 2.10
	} else {
		consCfg.FilterSubjects = subjects
	}
	cons, err := ensureConsumer(ctx, js, schema.SignalsStream, consCfg, cfg.Backlog)
	if err != nil {
		return err
	}
	a := newAgent(cfg, kv, pub, tmpl)
	defer a.client.CloseIdleConnections()
	runCtx, crash := context.WithCancelCause(ctx)
	defer crash(nil)
	a.crash = crash
	iter, err := cons.Messages(jetstream.PullMaxMessages(16))
	if err != nil {
		return fmt.Errorf("cannot consume rollback signals: %w", err)
	}
	defer iter.Stop()
	stopOnCancel := context.AfterFunc(runCtx, iter.Stop)
	defer stopOnCancel()
	a.log.Info("rollback agent started", "name", cfg.Name, "services", cfg.Services, "subjects", subjects, "instance", cfg.Instance)
	var wg sync.WaitGroup
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				break
			}
			a.log.Warn("cannot fetch rollback signals from JetStream", "err", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.handle(runCtx, msg)
		}()
	}
	wg.Wait()
	if cause := context.Cause(runCtx); a.crashed.Load() {
		return cause
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("the rollback signal consumer stopped")
}

// recordTTL is how long run records are kept. Signals older than that are
// refused by MaxSignalAge long before (with its default of 1h).
const recordTTL = 30 * 24 * time.Hour

type agent struct {
	cfg    AgentConfig
	kv     jetstream.KeyValue
	pub    Publisher
	tmpl   *template.Template
	client *http.Client
	log    *slog.Logger

	signals keyedLock // one signal id at a time in this process
	crash   context.CancelCauseFunc
	crashed atomic.Bool

	runs        *metrics.Counter
	succeeded   *metrics.Counter
	failed      *metrics.Counter
	interrupted *metrics.Counter
	repeated    *metrics.Counter
	expired     *metrics.Counter
	undecodable *metrics.Counter
	runTime     *metrics.PrometheusHistogram
}

// rollbackRunBuckets are the le bounds of the rollback run histogram: a
// rollback command or API call takes seconds to many minutes.
var rollbackRunBuckets = []float64{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600}

func newAgent(cfg AgentConfig, kv jetstream.KeyValue, pub Publisher, tmpl *template.Template) *agent {
	m := cfg.Metrics
	return &agent{
		cfg: cfg, kv: kv, pub: pub, tmpl: tmpl, log: cfg.Logger,
		client:      &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		signals:     keyedLock{held: map[string]chan struct{}{}},
		runs:        m.GetOrCreateCounter(`deploywatch_rollback_agent_attempts_total`),
		succeeded:   m.GetOrCreateCounter(`deploywatch_rollback_agent_signals_total{outcome="rolled_back"}`),
		failed:      m.GetOrCreateCounter(`deploywatch_rollback_agent_signals_total{outcome="failed"}`),
		interrupted: m.GetOrCreateCounter(`deploywatch_rollback_agent_signals_total{outcome="interrupted"}`),
		repeated:    m.GetOrCreateCounter(`deploywatch_rollback_agent_signals_total{outcome="already_handled"}`),
		expired:     m.GetOrCreateCounter(`deploywatch_rollback_agent_signals_total{outcome="expired"}`),
		undecodable: m.GetOrCreateCounter(`deploywatch_rollback_agent_signals_total{outcome="undecodable"}`),
		runTime:     m.GetOrCreatePrometheusHistogramExt(`deploywatch_rollback_agent_run_duration_seconds`, rollbackRunBuckets),
	}
}

// die stops the agent as a crash would: nothing more is acked.
func (a *agent) die(err error) {
	a.crashed.Store(true)
	a.crash(err)
}

// ack acks msg unless the agent is dying.
func (a *agent) ack(msg jetstream.Msg, log *slog.Logger) {
	if a.crashed.Load() {
		return
	}
	if err := msg.Ack(); err != nil {
		log.Warn("cannot ack the signal; it comes again and its record says what was done", "err", err)
	}
}

func (a *agent) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	ev, err := schema.DecodeSignal(msg.Data())
	sig, ok := ev.(*schema.RollbackSignal)
	if err != nil || !ok {
		a.undecodable.Inc()
		a.log.Error("a message on the rollback subjects is not a rollback signal; not acting on it", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	log := a.log.With("signal_id", sig.ID, "service", sig.Service, "env", sig.Env, "deploy_id", sig.DeployID)
	if !slices.Contains(a.cfg.Services, sig.Service) {
		// Subject tokens map '.' to '_': a.b and a_b share a subject.
		log.Info("skipping a rollback signal of a service this agent does not serve")
		a.ack(msg, log)
		return
	}
	stop := keepAlive(msg, min(a.cfg.AckWait, a.cfg.StaleAfter)/3)
	defer stop()
	unlock, err := a.signals.lock(ctx, sig.ID)
	if err != nil {
		return
	}
	defer unlock()
	a.process(ctx, msg, meta, sig, log)
}

// process claims the signal's record and acts on what it says.
func (a *agent) process(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, sig *schema.RollbackSignal, log *slog.Logger) {
	key := recordKey(sig.ID)
	tooOld := a.cfg.MaxSignalAge > 0 && time.Since(meta.Timestamp) > a.cfg.MaxSignalAge
	for ctx.Err() == nil {
		entry, err := a.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			rec := &runRecord{SignalID: sig.ID, DeployID: sig.DeployID, Service: sig.Service, Env: sig.Env,
				State: stateRunning, Attempts: 1, Instance: a.cfg.Instance, StartedAt: time.Now().UTC(), Heartbeat: time.Now().UTC()}
			if tooOld {
				rec.State, rec.LastError = stateExpired, fmt.Sprintf("published %s ago, more than --max-signal-age %s", time.Since(meta.Timestamp).Round(time.Second), a.cfg.MaxSignalAge)
			}
			rev, err := a.kv.Create(ctx, key, encodeRecord(rec))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // another copy got there first: read what it wrote
			}
			if err != nil {
				log.Warn("cannot record the start of a rollback; trying again later", "err", err)
				_ = msg.NakWithDelay(5 * time.Second)
				return
			}
			if tooOld {
				a.expired.Inc()
				log.Warn("not acting on a rollback signal this old", "published", meta.Timestamp, "max_signal_age", a.cfg.MaxSignalAge)
				a.ack(msg, log)
				return
			}
			a.run(ctx, msg, sig, &recordRef{kv: a.kv, key: key, rev: rev, rec: rec}, log)
			return
		}
		if err != nil {
			log.Warn("cannot read the signal's record; trying again later", "err", err)
			_ = msg.NakWithDelay(5 * time.Second)
			return
		}
		var rec runRecord
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			log.Error("the signal's record does not decode; leaving the signal for a person", "bucket", AgentBucket(a.cfg.Name), "key", key, "err", err)
			_ = msg.Term()
			return
		}
		ref := &recordRef{kv: a.kv, key: key, rev: entry.Revision(), rec: &rec}
		switch rec.State {
		case stateDone:
			a.repeated.Inc()
			log.Info("this rollback signal was acted on already; not running again", "finished_at", rec.FinishedAt, "by", rec.Instance)
			a.finish(ctx, msg, sig, &rec, log)
			return
		case stateFailed, stateInterrupted, stateExpired:
			a.repeated.Inc()
			log.Info("this rollback signal was given up on already; not running again", "state", rec.State, "last_error", rec.LastError)
			a.ack(msg, log)
			return
		case stateRetrying:
			if tooOld {
				if a.giveUp(ctx, ref, stateExpired, "the signal grew older than --max-signal-age between attempts", log) {
					a.ack(msg, log)
				}
				return
			}
		case stateRunning:
			if age := time.Since(rec.Heartbeat); age < a.cfg.StaleAfter {
				// Another agent of this name runs it (a second copy of the
				// signal went to it): ask again once its heartbeat would be stale.
				log.Info("another agent is running this rollback; waiting for it", "by", rec.Instance)
				_ = msg.NakWithDelay(a.cfg.StaleAfter - age + a.cfg.StaleAfter/4)
				return
			}
			if !a.cfg.Idempotent || tooOld {
				why := fmt.Sprintf("the agent %s stopped while its command ran (attempt %d, last heartbeat %s); the command is not declared idempotent, "+
					"so it is not run again: check whether the rollback happened", rec.Instance, rec.Attempts, rec.Heartbeat.Format(time.RFC3339))
				if a.giveUp(ctx, ref, stateInterrupted, why, log) {
					a.interrupted.Inc()
					log.Error("a rollback was interrupted and needs a person", "reason", why)
					a.ack(msg, log)
				}
				return
			}
			log.Warn("a rollback was interrupted by its agent's death; the command is idempotent: running it again", "by", rec.Instance, "attempts", rec.Attempts)
		default:
			log.Error("the signal's record is in a state this version does not know; leaving the signal for a person", "state", rec.State)
			_ = msg.Term()
			return
		}
		// Take it over (retrying, or running but stale and idempotent) for
		// its next attempt.
		err = ref.update(ctx, func(r *runRecord) {
			r.State, r.Instance, r.Heartbeat = stateRunning, a.cfg.Instance, time.Now().UTC()
			r.Attempts++
		})
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // changed under us: read again
		}
		if err != nil {
			log.Warn("cannot take the signal's record over; trying again later", "err", err)
			_ = msg.NakWithDelay(5 * time.Second)
			return
		}
		a.run(ctx, msg, sig, ref, log)
		return
	}
}

// run runs the signal's command (or HTTP call) until it succeeds, is refused
// for good, or the attempts are used up; the record says running, and its
// attempts count the one about to start.
func (a *agent) run(ctx context.Context, msg jetstream.Msg, sig *schema.RollbackSignal, ref *recordRef, log *slog.Logger) {
	stopHeartbeat := ref.heartbeat(ctx, a.cfg.StaleAfter/4, log)
	defer stopHeartbeat()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = a.cfg.RetryInitial, a.cfg.RetryMax, 0
	for first := true; ; first = false {
		if first {
			log.Info("rolling back", "version", sig.Version, "to", sig.PreviousVersion, "reason", sig.Reason, "attempt", ref.snapshot().Attempts)
		} else if err := ref.update(ctx, func(r *runRecord) {
			r.State, r.Heartbeat = stateRunning, time.Now().UTC()
			r.Attempts++
		}); err != nil {
			// The record still says retrying: the next copy goes on from there.
			log.Error("cannot record the next attempt; not running the command now (another agent may have taken the signal over)", "err", err)
			_ = msg.NakWithDelay(a.cfg.StaleAfter)
			return
		}
		attempt := ref.snapshot().Attempts
		if a.cfg.beforeRun != nil {
			if err := a.cfg.beforeRun(sig.ID); err != nil {
				a.die(err)
				return
			}
		}
		start := time.Now()
		out, permanent, err := a.execute(ctx, sig, msg.Data())
		a.runs.Inc()
		a.runTime.UpdateDuration(start)
		if err == nil {
			// Record done before anything else: from here on, no copy of
			// the signal runs the command again.
			if perr := ref.put(ctx, func(r *runRecord) {
				r.State, r.FinishedAt, r.Output, r.LastError = stateDone, time.Now().UTC(), out, ""
			}); perr != nil {
				log.Error("the rollback ran but cannot be recorded as done; its record says running, so no copy runs it again "+
					"(an idempotent agent would, after --stale-after)", "err", perr)
				return
			}
			a.succeeded.Inc()
			log.Info("rolled back", "attempt", attempt, "took", time.Since(start).Round(time.Millisecond), "output", out)
			if a.cfg.afterRun != nil {
				if err := a.cfg.afterRun(sig.ID); err != nil {
					a.die(err)
					return
				}
			}
			a.finish(ctx, msg, sig, ref.snapshot(), log)
			return
		}
		if permanent || attempt >= a.cfg.Attempts {
			why := fmt.Sprintf("gave up after %d attempt(s): %v", attempt, err)
			if permanent {
				why = fmt.Sprintf("refused for good at attempt %d: %v", attempt, err)
			}
			if a.giveUp(ctx, ref, stateFailed, why, log, out) {
				a.failed.Inc()
				log.Error("the rollback failed; a person must roll back by hand", "reason", why, "output", out)
				a.ack(msg, log)
			}
			return
		}
		wait := b.NextBackOff()
		if uerr := ref.update(ctx, func(r *runRecord) {
			r.State, r.LastError, r.Output = stateRetrying, err.Error(), out
		}); uerr != nil {
			log.Warn("cannot record the failed attempt", "err", uerr)
		}
		log.Warn("the rollback failed; trying again", "attempt", attempt, "of", a.cfg.Attempts, "retry_in", wait.Round(time.Millisecond), "err", err, "output", out)
		if !sleep(ctx, wait) {
			return // stopping: the record says retrying, the next agent resumes
		}
	}
}

// giveUp records a final state other than done; it reports whether it did.
func (a *agent) giveUp(ctx context.Context, ref *recordRef, state runState, why string, log *slog.Logger, output ...string) bool {
	err := ref.put(ctx, func(r *runRecord) {
		r.State, r.LastError, r.FinishedAt = state, why, time.Now().UTC()
		if len(output) > 0 {
			r.Output = output[0]
		}
	})
	if err != nil {
		log.Error("cannot record that the signal was given up on; it comes again", "state", state, "err", err)
		return false
	}
	return true
}

// execute runs the command, or calls the HTTP endpoint, once.
func (a *agent) execute(ctx context.Context, sig *schema.RollbackSignal, raw []byte) (output string, permanent bool, err error) {
	if a.tmpl != nil {
		out, err := runCommand(ctx, a.cfg.Shell, a.tmpl, a.cfg.Env, commandData(sig), a.cfg.Timeout)
		return out, false, err
	}
	return a.callHTTP(ctx, sig, raw)
}

// callHTTP POSTs the signal to the endpoint: 2xx is done, a 4xx other than
// 408 and 429 is refused for good, anything else is tried again.
func (a *agent) callHTTP(ctx context.Context, sig *schema.RollbackSignal, raw []byte) (string, bool, error) {
	reqCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, a.cfg.HTTPURL, bytes.NewReader(raw))
	if err != nil {
		return "", true, fmt.Errorf("cannot build the request: %w", err)
	}
	for k, v := range a.cfg.HTTPHeaders {
		req.Header.Set(k, v)
	}
	id := WebhookID(sig.ID, "rollback-agent/"+a.cfg.Name)
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "deploywatch-rollback-agent")
	req.Header.Set("Idempotency-Key", sig.ID)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	if len(a.cfg.HTTPSecret) > 0 {
		req.Header.Set("webhook-signature", Sign(a.cfg.HTTPSecret, id, ts, raw))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", false, errors.New(requestError(err, a.cfg.Timeout))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	out := strings.TrimSpace(string(body))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return out, false, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return out, false, fmt.Errorf("the endpoint answered %s", resp.Status)
	default:
		return out, true, fmt.Errorf("the endpoint answered %s", resp.Status)
	}
}

// finish reports the deploy rolled back and acks the signal. The report is
// the same every time (its time is the record's), so reporting again after a
// restart changes nothing: JetStream drops the copy by its Nats-Msg-Id, and
// the projection keeps one row per deploy and status.
func (a *agent) finish(ctx context.Context, msg jetstream.Msg, sig *schema.RollbackSignal, rec *runRecord, log *slog.Logger) {
	d := rolledBack(sig, rec, a.cfg.Name)
	if err := d.Validate(); err != nil {
		log.Error("cannot report the rollback as a deploy event: the signal lacks what a deploy needs", "err", err)
		a.ack(msg, log)
		return
	}
	data, err := json.Marshal(d)
	if err != nil {
		log.Error("cannot encode the rolled back deploy", "err", err)
		a.ack(msg, log)
		return
	}
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMaxElapsedTime(0)), pubCtx)
	err = backoff.Retry(func() error {
		return a.pub.Publish(pubCtx, []schema.Message{{Subject: schema.Subject(d), ID: d.EventID(), Data: data}})
	}, b)
	if err != nil {
		log.Warn("cannot report the rollback yet; the signal comes again and the report is sent then", "err", err)
		_ = msg.NakWithDelay(10 * time.Second)
		return
	}
	a.ack(msg, log)
}

// rolledBack is the deploy event that closes the loop: the deploy the signal
// named, rolled back to its previous version.
func rolledBack(sig *schema.RollbackSignal, rec *runRecord, agentName string) *schema.Deploy {
	labels := map[string]string{
		"rollback_signal_id": sig.ID,
		"rollback_agent":     agentName,
	}
	if sig.Rule != "" {
		labels["rollback_rule"] = sig.Rule
	}
	if sig.PreviousVersion != "" {
		labels["rolled_back_to"] = sig.PreviousVersion
	}
	return &schema.Deploy{
		ID: sig.DeployID, Type: schema.TypeDeploy, Service: sig.Service, Env: sig.Env,
		Version: sig.Version, PreviousVersion: sig.PreviousVersion,
		Status: schema.DeployRolledBack, FinishedAt: schema.At(rec.FinishedAt.Truncate(time.Millisecond)),
		Author: "deploywatch rollback-agent " + agentName, Labels: labels,
	}
}

func encodeRecord(r *runRecord) []byte {
	data, _ := json.Marshal(r) // plain fields: cannot fail
	return data
}

// recordRef is a record and the revision it was read or written at.
type recordRef struct {
	kv  jetstream.KeyValue
	key string

	mu  sync.Mutex
	rev uint64
	rec *runRecord
}

func (r *recordRef) snapshot() *runRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := *r.rec
	return &c
}

// update changes the record if nobody else did since we last read or wrote
// it; otherwise it returns an error wrapping jetstream.ErrKeyRevisionMismatch.
func (r *recordRef) update(ctx context.Context, change func(*runRecord)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := *r.rec
	change(&next)
	writeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rev, err := r.kv.Update(writeCtx, r.key, encodeRecord(&next), r.rev)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("the record changed under us: %w", err)
		}
		return err
	}
	r.rev, *r.rec = rev, next
	return nil
}

// put writes a final state whatever the record says now, retrying for a
// while: a run that happened is recorded even if another agent meanwhile
// thought it dead.
func (r *recordRef) put(ctx context.Context, change func(*runRecord)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := *r.rec
	change(&next)
	writeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var rev uint64
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxElapsedTime(0)), writeCtx)
	err := backoff.Retry(func() error {
		var err error
		rev, err = r.kv.Put(writeCtx, r.key, encodeRecord(&next))
		return err
	}, b)
	if err != nil {
		return err
	}
	r.rev, *r.rec = rev, next
	return nil
}

// heartbeat refreshes the record's heartbeat every interval until stopped,
// so that other agents of the name see the run is alive.
func (r *recordRef) heartbeat(ctx context.Context, interval time.Duration, log *slog.Logger) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(max(interval, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if err := r.update(ctx, func(rec *runRecord) { rec.Heartbeat = time.Now().UTC() }); err != nil {
				log.Warn("cannot refresh the run's heartbeat", "err", err)
				if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
					return // taken over: the next write says so again
				}
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
