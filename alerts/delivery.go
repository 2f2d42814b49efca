package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cenkalti/backoff/v4"
	"github.com/deploywatch/deploywatch/schema"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes events and returns once JetStream acknowledged them
// all (eventlog.Publisher is one).
type Publisher interface {
	Publish(ctx context.Context, msgs []schema.Message) error
}

// AlertSubjects are the subjects of alert events on the signals stream.
const AlertSubjects = "deploywatch.signals.alert.>"

// DeliveryConfig tunes the webhook delivery.
type DeliveryConfig struct {
	// Receivers are where alerts go (ParseReceivers); required.
	Receivers *Receivers
	// ConsumerName is the durable JetStream consumer's name (default "webhook-delivery").
	ConsumerName string
	// AckWait is how long JetStream waits for a word about a message before
	// handing it out again (default 30s); while an alert is being delivered
	// it is told every AckWait/3 that work is in progress.
	AckWait time.Duration
	// MaxInFlight bounds the alert events being delivered (or waiting to be
	// handed out again) at once (default 256): alerts postponed for a receiver
	// that is down count against it, and beyond it new alerts wait.
	MaxInFlight int
	// Backlog: a consumer created for the first time starts with the alerts
	// of the last Backlog (default 10m), not with the whole stream, so that
	// turning delivery on does not send a year of old alerts. After that it
	// resumes where it was.
	Backlog time.Duration
	// UserAgent is sent with every request (default "deploywatch").
	UserAgent string
	Logger    *slog.Logger
	Metrics   *metrics.Set
}

func (c *DeliveryConfig) defaults() {
	if c.ConsumerName == "" {
		c.ConsumerName = "webhook-delivery"
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 256
	}
	if c.Backlog <= 0 {
		c.Backlog = 10 * time.Minute
	}
	if c.UserAgent == "" {
		c.UserAgent = "deploywatch"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
}

// RunDelivery delivers every alert event (firing and resolved, neither dry
// run nor silenced) to every receiver that matches it, until ctx is
// cancelled. An alert is acked only when every receiver got it or refused it
// for good (a 4xx other than 408 and 429); while a receiver fails it is
// retried with exponential backoff and jitter, the alert kept from being
// handed out again meanwhile; after Retry.MaxElapsedTime the alert is handed
// back to JetStream, which hands it out again after Retry.RedeliverAfter (or
// to the next process, after a restart). Every attempt is published as a
// delivery event on the signals stream through pub.
func RunDelivery(ctx context.Context, js jetstream.JetStream, pub Publisher, cfg DeliveryConfig) error {
	cfg.defaults()
	if cfg.Receivers == nil || len(cfg.Receivers.Receivers) == 0 {
		return errors.New("cannot deliver alerts: no receivers configured")
	}
	cons, err := ensureConsumer(ctx, js, schema.SignalsStream, jetstream.ConsumerConfig{
		Durable:       cfg.ConsumerName,
		Description:   "deploywatch: delivers alerts to webhook receivers",
		FilterSubject: AlertSubjects,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: cfg.MaxInFlight,
	}, cfg.Backlog)
	if err != nil {
		return err
	}
	d := newDeliverer(pub, cfg)
	defer d.client.CloseIdleConnections()
	iter, err := cons.Messages(jetstream.PullMaxMessages(cfg.MaxInFlight))
	if err != nil {
		return fmt.Errorf("cannot consume alerts from %s: %w", schema.SignalsStream, err)
	}
	defer iter.Stop()
	stopOnCancel := context.AfterFunc(ctx, iter.Stop)
	defer stopOnCancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("the webhook delivery consumer stopped: %w", err)
			}
			d.log.Warn("cannot fetch alerts from JetStream", "err", err)
			continue
		}
		j, ok := d.accept(msg)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.deliverAll(ctx, j)
		}()
	}
}

// ensureConsumer creates the durable consumer, or updates the one there. A
// new one starts with the messages of the last backlog (none: only new
// ones); an existing one keeps its start, which JetStream does not let change.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, backlog time.Duration) (jetstream.Consumer, error) {
	existing, err := js.Consumer(ctx, stream, cfg.Durable)
	switch {
	case err == nil:
		prev := existing.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartTime, cfg.OptStartSeq = prev.DeliverPolicy, prev.OptStartTime, prev.OptStartSeq
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		if backlog > 0 {
			start := time.Now().Add(-backlog)
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		} else {
			cfg.DeliverPolicy = jetstream.DeliverNewPolicy
		}
	default:
		return nil, fmt.Errorf("cannot look up the JetStream consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot create the JetStream consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return cons, nil
}

// WebhookID is the webhook-id of one logical delivery: the same for every
// attempt to deliver one alert event to one receiver, different for any other.
func WebhookID(alertEventID, receiver string) string {
	sum := sha256.Sum256([]byte(alertEventID + "\x00" + receiver))
	return "msg_" + hex.EncodeToString(sum[:16])
}

// Sign is the webhook-signature of a request, the Standard Webhooks way:
// "v1," and the base64 HMAC-SHA256, keyed with key, of id.timestamp.body.
func Sign(key []byte, webhookID string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(webhookID))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, timestamp, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

type deliverer struct {
	cfg    DeliveryConfig
	rs     *Receivers
	pub    Publisher
	client *http.Client
	log    *slog.Logger

	mu       sync.Mutex
	inFlight map[uint64]bool        // stream sequences being delivered
	progress map[string]*alertState // by alert event id, until acked
	order    keyedQueue             // one alert's status changes, in order

	attempts    *metrics.Counter
	delivered   *metrics.Counter
	rejected    *metrics.Counter
	failed      *metrics.Counter
	postponed   *metrics.Counter
	skipped     *metrics.Counter
	undecodable *metrics.Counter
	recordErrs  *metrics.Counter
	duration    *metrics.PrometheusHistogram
}

// alertState is what the deliveries of one alert event achieved so far:
// receivers that are done are not sent it again when JetStream hands it out again.
type alertState struct {
	attempts map[string]int
	done     map[string]bool
}

func newDeliverer(pub Publisher, cfg DeliveryConfig) *deliverer {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 4
	m := cfg.Metrics
	return &deliverer{
		cfg: cfg, rs: cfg.Receivers, pub: pub, log: cfg.Logger,
		client: &http.Client{
			Transport: transport,
			// A redirect is the receiver's url being wrong; following it
			// would turn the POST into a GET.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		inFlight:    map[uint64]bool{},
		progress:    map[string]*alertState{},
		order:       keyedQueue{tail: map[string]*ticket{}},
		attempts:    m.GetOrCreateCounter(`deploywatch_delivery_attempts_total`),
		delivered:   m.GetOrCreateCounter(`deploywatch_delivery_attempts_total{outcome="delivered"}`),
		rejected:    m.GetOrCreateCounter(`deploywatch_delivery_attempts_total{outcome="rejected"}`),
		failed:      m.GetOrCreateCounter(`deploywatch_delivery_attempts_total{outcome="retrying"}`),
		postponed:   m.GetOrCreateCounter(`deploywatch_delivery_attempts_total{outcome="postponed"}`),
		skipped:     m.GetOrCreateCounter(`deploywatch_delivery_skipped_alerts_total`),
		undecodable: m.GetOrCreateCounter(`deploywatch_delivery_undecodable_alerts_total`),
		recordErrs:  m.GetOrCreateCounter(`deploywatch_delivery_record_errors_total`),
		duration:    m.GetOrCreatePrometheusHistogram(`deploywatch_delivery_attempt_duration_seconds`),
	}
}

// decodeAlert decodes and validates an alert event.
func decodeAlert(raw []byte) (*schema.Alert, error) {
	ev, err := schema.DecodeSignal(raw)
	if err != nil {
		return nil, err
	}
	a, ok := ev.(*schema.Alert)
	if !ok {
		return nil, fmt.Errorf("a %s event on the alert subjects", ev.EventType())
	}
	return a, nil
}

// job is one alert event on its way to its receivers.
type job struct {
	msg     jetstream.Msg
	meta    *jetstream.MsgMetadata
	alert   *schema.Alert
	targets []*Receiver
	state   *alertState
	turn    *ticket
	stop    func() // stops the in-progress pings and frees the message
}

// accept takes a message in the order JetStream hands them out: it acks
// what goes to no receiver and queues the rest behind the earlier status
// changes of the same alert, so that a receiver gets firing before resolved.
func (d *deliverer) accept(msg jetstream.Msg) (*job, bool) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return nil, false
	}
	a, err := decodeAlert(msg.Data())
	if err != nil {
		// The sink dead-letters what does not decode; here it is only counted.
		d.undecodable.Inc()
		d.log.Warn("skipping a message on the alert subjects that is not a deliverable alert", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return nil, false
	}
	var targets []*Receiver
	if !a.DryRun && !a.Silenced {
		for i := range d.rs.Receivers {
			if d.rs.Receivers[i].Match.matches(a) {
				targets = append(targets, &d.rs.Receivers[i])
			}
		}
	}
	if len(targets) == 0 {
		d.skipped.Inc()
		_ = msg.Ack()
		return nil, false
	}
	seq := meta.Sequence.Stream
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inFlight[seq] {
		// Handed out again while its first copy is still being delivered
		// (an ack wait ran out): the first copy acks it.
		return nil, false
	}
	d.inFlight[seq] = true
	st := d.progress[a.ID]
	if st == nil {
		st = &alertState{attempts: map[string]int{}, done: map[string]bool{}}
		d.progress[a.ID] = st
	}
	stopKeepAlive := keepAlive(msg, d.cfg.AckWait/3)
	turn := d.order.enqueue(a.AlertID)
	return &job{msg: msg, meta: meta, alert: a, targets: targets, state: st, turn: turn, stop: func() {
		turn.release()
		stopKeepAlive()
		d.mu.Lock()
		delete(d.inFlight, seq)
		d.mu.Unlock()
	}}, true
}

// deliverAll delivers one alert event to its receivers, once the earlier
// status changes of the alert are through, and acks it when every receiver
// is done with it.
func (d *deliverer) deliverAll(ctx context.Context, j *job) {
	defer j.stop()
	if err := j.turn.wait(ctx); err != nil {
		return // shutting down: JetStream hands it out again
	}
	msg, meta, a, targets, st := j.msg, j.meta, j.alert, j.targets, j.state
	results := make([]result, len(targets))
	var wg sync.WaitGroup
	for i, r := range targets {
		d.mu.Lock()
		done := st.done[r.Name]
		d.mu.Unlock()
		if done {
			results[i].final = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = d.deliver(ctx, a, msg.Data(), r, meta, st)
		}()
	}
	wg.Wait()
	var wait time.Duration
	allDone := true
	for _, r := range results {
		allDone = allDone && r.final
		wait = max(wait, r.retryAfter)
	}
	if allDone {
		if err := msg.Ack(); err != nil {
			d.log.Warn("cannot ack a delivered alert; it will be handed out again and its receivers deduplicate by webhook-id", "alert_event_id", a.ID, "err", err)
		}
		d.mu.Lock()
		delete(d.progress, a.ID)
		d.mu.Unlock()
		return
	}
	if ctx.Err() != nil {
		_ = msg.Nak() // shutting down: to the next process, at once
		return
	}
	_ = msg.NakWithDelay(max(d.rs.Retry.RedeliverAfter, wait))
}

// result is what delivering to one receiver came to.
type result struct {
	final      bool          // delivered or refused for good
	retryAfter time.Duration // the receiver asked to wait this long
}

// deliver sends the alert to one receiver, retrying until it is delivered,
// refused for good, the round's time is up, or ctx ends.
func (d *deliverer) deliver(ctx context.Context, a *schema.Alert, raw []byte, r *Receiver, meta *jetstream.MsgMetadata, st *alertState) result {
	body, err := payload(r.Format, r.Name, d.rs.ExternalURL, a, raw)
	if err != nil {
		d.log.Error("cannot encode an alert for a receiver; skipping it", "receiver", r.Name, "alert_event_id", a.ID, "err", err)
		return result{final: true}
	}
	webhookID := WebhookID(a.ID, r.Name)
	retry := d.rs.Retry
	b := &backoff.ExponentialBackOff{
		InitialInterval:     retry.InitialInterval,
		RandomizationFactor: retry.Jitter,
		Multiplier:          retry.Multiplier,
		MaxInterval:         retry.MaxInterval,
		MaxElapsedTime:      retry.MaxElapsedTime,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	for {
		d.mu.Lock()
		st.attempts[r.Name]++
		attempt := st.attempts[r.Name]
		d.mu.Unlock()
		rec := schema.Delivery{
			ID:   fmt.Sprintf("%s:%d:%d:%d", webhookID, meta.Sequence.Stream, meta.NumDelivered, attempt),
			Type: schema.TypeDelivery, WebhookID: webhookID,
			AlertEventID: a.ID, AlertID: a.AlertID, AlertStatus: a.Status, Rule: a.Rule,
			Service: a.Service, Env: a.Env, Receiver: r.Name, URL: r.recordURL, Format: string(r.Format),
			Round: int(meta.NumDelivered), Attempt: attempt,
		}
		start := time.Now()
		res := d.post(ctx, r, webhookID, body)
		d.attempts.Inc()
		d.duration.UpdateDuration(start)
		rec.At, rec.DurationMs = schema.At(start), time.Since(start).Milliseconds()
		rec.StatusCode, rec.Error = res.status, truncate(res.err, 1024)
		log := d.log.With("receiver", r.Name, "url", r.recordURL, "alert_event_id", a.ID, "webhook_id", webhookID, "attempt", attempt)
		switch {
		case res.delivered:
			rec.Outcome, rec.Final = schema.DeliveryDelivered, true
			d.delivered.Inc()
		case res.permanent:
			rec.Outcome, rec.Final = schema.DeliveryRejected, true
			d.rejected.Inc()
			log.Warn("the receiver refused the alert for good; not retrying", "status", res.status, "err", res.err)
		}
		if rec.Final {
			d.record(&rec)
			d.mu.Lock()
			st.done[r.Name] = true
			d.mu.Unlock()
			return result{final: true}
		}
		wait := b.NextBackOff()
		if res.retryAfter > 0 && wait != backoff.Stop {
			wait = res.retryAfter
			if b.GetElapsedTime()+wait > retry.MaxElapsedTime {
				wait = backoff.Stop
			}
		}
		if wait == backoff.Stop || ctx.Err() != nil {
			rec.Outcome = schema.DeliveryPostponed
			again := max(retry.RedeliverAfter, res.retryAfter)
			if ctx.Err() != nil {
				again = 0
				if rec.Error == "" {
					rec.Error = "deploywatch is shutting down"
				}
			}
			rec.NextAttemptAt = schema.At(time.Now().Add(again))
			d.postponed.Inc()
			d.record(&rec)
			log.Warn("cannot deliver the alert yet; JetStream hands it out again later", "status", res.status, "err", res.err, "again_in", again)
			return result{retryAfter: res.retryAfter}
		}
		rec.Outcome = schema.DeliveryRetrying
		rec.NextAttemptAt = schema.At(time.Now().Add(wait))
		d.failed.Inc()
		d.record(&rec)
		log.Info("cannot deliver the alert; retrying", "status", res.status, "err", res.err, "retry_in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return result{}
		}
	}
}

// attemptResult is what one request came to.
type attemptResult struct {
	delivered  bool
	permanent  bool
	status     int
	err        string
	retryAfter time.Duration
}

// maxRetryAfter bounds how long a receiver's Retry-After is honoured.
const maxRetryAfter = time.Hour

// post makes one signed request.
func (d *deliverer) post(ctx context.Context, r *Receiver, webhookID string, body []byte) attemptResult {
	reqCtx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return attemptResult{permanent: true, err: "cannot build the request: check the receiver's url"}
	}
	ts := time.Now().Unix()
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	req.Header.Set("webhook-id", webhookID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	if len(r.key) > 0 {
		req.Header.Set("webhook-signature", Sign(r.key, webhookID, ts, body))
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return attemptResult{err: requestError(err, r.Timeout)}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	res := attemptResult{status: resp.StatusCode}
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		res.delivered = true
		return res
	case code >= 300 && code < 400:
		res.permanent = true
		res.err = fmt.Sprintf("answered %s (a redirect): set the receiver's url to where it points", resp.Status)
		return res
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
	case code >= 400:
		res.permanent = true
	}
	res.err = "answered " + resp.Status
	if s := strings.TrimSpace(string(snippet)); s != "" {
		res.err += ": " + s
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return res
}

// requestError says why a request got no answer, without the URL (which
// may hold a secret).
func requestError(err error, timeout time.Duration) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		return fmt.Sprintf("no answer within the receiver's timeout (%s)", timeout)
	}
	return "no answer: " + err.Error()
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// record publishes a delivery event. It does not hold up the delivery: a
// record that cannot be published is logged and counted.
func (d *deliverer) record(rec *schema.Delivery) {
	data, err := json.Marshal(rec)
	if err != nil {
		d.recordErrs.Inc()
		d.log.Error("cannot encode a delivery event", "id", rec.ID, "err", err)
		return
	}
	msg := schema.Message{Subject: schema.Subject(rec), ID: rec.ID, Data: data}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxElapsedTime = 10 * time.Second
	err = backoff.Retry(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return d.pub.Publish(ctx, []schema.Message{msg})
	}, b)
	if err != nil {
		d.recordErrs.Inc()
		d.log.Error("cannot record a delivery attempt on the signals stream", "id", rec.ID, "outcome", rec.Outcome, "err", err)
	}
}

// keepAlive tells JetStream every interval that msg is being worked on,
// until the returned function is called.
func keepAlive(msg jetstream.Msg, interval time.Duration) (stop func()) {
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
				_ = msg.InProgress()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// sleep waits for d or until ctx ends; it reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// keyedLock is a mutex per key.
type keyedLock struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

// lock takes key's lock, waiting until it is free or ctx ends.
func (l *keyedLock) lock(ctx context.Context, key string) (unlock func(), err error) {
	for {
		l.mu.Lock()
		ch, busy := l.held[key]
		if !busy {
			ch = make(chan struct{})
			l.held[key] = ch
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, key)
				l.mu.Unlock()
				close(ch)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// keyedQueue lets the holders of tickets of one key through one at a time,
// in the order the tickets were taken.
type keyedQueue struct {
	mu   sync.Mutex
	tail map[string]*ticket
}

type ticket struct {
	q    *keyedQueue
	key  string
	prev <-chan struct{} // closed when the ticket before this one is released
	done chan struct{}
}

func (q *keyedQueue) enqueue(key string) *ticket {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := &ticket{q: q, key: key, done: make(chan struct{})}
	if prev := q.tail[key]; prev != nil {
		t.prev = prev.done
	}
	q.tail[key] = t
	return t
}

// wait returns when it is the ticket's turn, or ctx ended.
func (t *ticket) wait(ctx context.Context) error {
	if t.prev == nil {
		return nil
	}
	select {
	case <-t.prev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release lets the next ticket through.
func (t *ticket) release() {
	t.q.mu.Lock()
	if t.q.tail[t.key] == t {
		delete(t.q.tail, t.key)
	}
	t.q.mu.Unlock()
	close(t.done)
}
