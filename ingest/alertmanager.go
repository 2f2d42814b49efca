package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deploywatch/deploywatch/schema"
)

// AlertmanagerSource is the source of the incidents that Alertmanager's
// notifications open and resolve.
const AlertmanagerSource = "alertmanager"

// DefaultAlertmanagerEnv is the env of an alert that has neither an env nor
// an environment label, unless Config.AlertmanagerEnv says otherwise.
const DefaultAlertmanagerEnv = "production"

// alertmanagerMessage is the body of Alertmanager's webhook notification
// (webhook_config, payload version "4"). Fields deploywatch does not use, and
// those other senders of the same format add (Grafana's orgId, values, …),
// are ignored.
type alertmanagerMessage struct {
	Version         string              `json:"version"`
	Receiver        string              `json:"receiver"`
	Status          string              `json:"status"`
	Alerts          []alertmanagerAlert `json:"alerts"`
	GroupKey        string              `json:"groupKey"`
	TruncatedAlerts uint64              `json:"truncatedAlerts"`
}

type alertmanagerAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     string            `json:"startsAt"`
	EndsAt       string            `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Which labels name an alert's service and env, in order of preference.
var (
	serviceLabels = []string{"service", "job", "app"}
	envLabels     = []string{"env", "environment"}
)

// maxTitleBytes is schema.Incident's limit on a title; longer summaries are cut.
const maxTitleBytes = 1024

func (a *API) postAlertmanager(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	var msg alertmanagerMessage
	if err := json.Unmarshal(body, &msg); err != nil {
		a.reject(w, alertmanagerDecodeError(err))
		return
	}
	events, ids, err := alertIncidents(&msg, a.cfg.AlertmanagerEnv)
	if err != nil {
		a.reject(w, err)
		return
	}
	if msg.TruncatedAlerts > 0 {
		a.log.Warn("Alertmanager left alerts out of a notification (max_alerts): they open no incident",
			"receiver", msg.Receiver, "group", msg.GroupKey, "truncated", msg.TruncatedAlerts)
	}
	a.publish(w, r, events, accepted{Accepted: len(msg.Alerts), IDs: ids})
}

// alertIncidents turns a notification into incident events: a firing alert
// opens an incident, a resolved one resolves it. A resolved alert also
// carries the opened change (the same event id as its firing notification's,
// so JetStream and the projection drop the copy), so an incident whose firing
// notification never arrived still has its opened_at. ids are the incidents'
// ids in the order of the alerts. Every bad alert field is reported at once.
func alertIncidents(msg *alertmanagerMessage, defaultEnv string) (events []schema.Event, ids []string, err error) {
	if defaultEnv == "" {
		defaultEnv = DefaultAlertmanagerEnv
	}
	var problems []schema.FieldError
	if len(msg.Alerts) == 0 {
		problems = append(problems, schema.FieldError{Field: "alerts", Problem: "is empty or missing: send Alertmanager's webhook notification (version 4), which lists the alerts"})
	}
	seenIDs, seenEvents := map[string]bool{}, map[string]bool{}
	for i := range msg.Alerts {
		changes, fieldErrs := alertIncident(&msg.Alerts[i], "alerts["+strconv.Itoa(i)+"]", defaultEnv)
		if len(fieldErrs) > 0 {
			problems = append(problems, fieldErrs...)
			continue
		}
		if id := changes[0].ID; !seenIDs[id] {
			seenIDs[id] = true
			ids = append(ids, id)
		}
		for _, in := range changes {
			if !seenEvents[in.EventID()] {
				seenEvents[in.EventID()] = true
				events = append(events, in)
			}
		}
	}
	if len(problems) > 0 {
		return nil, nil, &schema.ValidationError{Fields: problems}
	}
	return events, ids, nil
}

// alertIncident maps one alert (at is its path in the body, alerts[3]) to
// its incident changes.
func alertIncident(al *alertmanagerAlert, at, defaultEnv string) ([]*schema.Incident, []schema.FieldError) {
	var problems []schema.FieldError
	add := func(field, problem string) {
		problems = append(problems, schema.FieldError{Field: at + "." + field, Problem: problem})
	}
	var status schema.IncidentStatus
	switch al.Status {
	case "firing":
		status = schema.IncidentOpened
	case "resolved":
		status = schema.IncidentResolved
	case "":
		add("status", "is required: firing or resolved")
	default:
		add("status", fmt.Sprintf("must be firing or resolved; got %q", al.Status))
	}
	serviceLabel, service := firstLabel(al.Labels, serviceLabels)
	if serviceLabel == "" {
		serviceLabel = "service"
		add("labels.service", "is missing: deploywatch needs to know which service the alert is about; "+
			"add a service label to the alerting rule (labels: {service: checkout}), or a job or app label, "+
			"e.g. with alert_relabel_configs in Prometheus")
	}
	envLabel, env := firstLabel(al.Labels, envLabels)
	if envLabel == "" {
		env = defaultEnv
	}
	startsAt, ok := alertTime(al.StartsAt)
	if !ok {
		add("startsAt", "must be an RFC 3339 time such as 2026-11-22T10:04:05Z; got "+strconv.Quote(al.StartsAt))
	}
	endsAt, endsOK := alertTime(al.EndsAt)
	if status == schema.IncidentResolved && ok {
		switch {
		case !endsOK:
			add("endsAt", "must be the RFC 3339 time the alert resolved, such as 2026-11-22T10:04:05Z, for a resolved alert; got "+strconv.Quote(al.EndsAt))
		case endsAt.Before(startsAt):
			add("endsAt", fmt.Sprintf("is before startsAt (%s): a resolved alert ends after it started", al.StartsAt))
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}

	opened := &schema.Incident{
		ID:       alertIncidentID(al.Fingerprint, al.Labels, startsAt),
		Type:     schema.TypeIncident,
		Service:  service,
		Env:      env,
		Status:   schema.IncidentOpened,
		Time:     schema.At(startsAt),
		Title:    alertTitle(al),
		Source:   AlertmanagerSource,
		DeployID: strings.TrimSpace(al.Labels["deploy_id"]),
	}
	changes := []*schema.Incident{opened}
	if status == schema.IncidentResolved {
		resolved := *opened
		resolved.Status, resolved.Time = schema.IncidentResolved, schema.At(endsAt)
		changes = append(changes, &resolved)
	}
	// The schema's own rules (names, id, times), reported at the alert's fields.
	where := map[string]string{
		"service":   "labels." + serviceLabel,
		"env":       "labels." + envLabel,
		"deploy_id": "labels.deploy_id",
		"id":        "fingerprint",
	}
	if envLabel == "" {
		where["env"] = "labels.env" // the configured default was used: the label would override it
	}
	for _, in := range changes {
		where["time"] = "startsAt"
		if in.Status == schema.IncidentResolved {
			where["time"] = "endsAt"
		}
		var verr *schema.ValidationError
		if err := in.Validate(); errors.As(err, &verr) {
			for _, fe := range verr.Fields {
				field, ok := where[fe.Field]
				if !ok {
					field = fe.Field
				}
				if fe.Field == "env" && envLabel == "" {
					fe.Problem = "is missing, and the default env for Alertmanager alerts is not valid either: " + fe.Problem
				}
				if !slices.ContainsFunc(problems, func(p schema.FieldError) bool { return p.Field == at+"."+field }) {
					add(field, fe.Problem)
				}
			}
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return changes, nil
}

// firstLabel returns the first of names that labels has with a non-blank
// value, and that value.
func firstLabel(labels map[string]string, names []string) (name, value string) {
	for _, n := range names {
		if v := strings.TrimSpace(labels[n]); v != "" {
			return n, v
		}
	}
	return "", ""
}

// alertTime parses an alert's startsAt or endsAt; Alertmanager writes Go's
// zero time (0001-01-01T00:00:00Z) for the endsAt of a firing alert, which
// counts as absent.
func alertTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// fingerprintPattern is what Alertmanager's fingerprints look like (16 hex
// digits) and anything else safe to put into an id unchanged.
var fingerprintPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

// alertIncidentID names the incident of one firing of an alert:
// "am-<fingerprint>-<startsAt in Unix seconds>". The fingerprint identifies
// the alert (a hash of its labels) and startsAt the firing, so re-sent
// notifications (repeat_interval, a retry, both members of an HA pair) and
// the resolved notification all give the same id, while the alert firing
// again later gives a new one. Whole seconds, because a Prometheus restart
// restores an alert's active-since time with second precision and
// Alertmanager then keeps the earlier of the two. Without a usable
// fingerprint (a sender other than Alertmanager), a hash of the labels
// stands in for it.
func alertIncidentID(fingerprint string, labels map[string]string, startsAt time.Time) string {
	if !fingerprintPattern.MatchString(fingerprint) {
		fingerprint = labelsHash(labels)
	}
	return "am-" + fingerprint + "-" + strconv.FormatInt(startsAt.Unix(), 10)
}

// labelsHash is 16 hex digits of the SHA-256 of the sorted labels.
func labelsHash(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0xff})
		h.Write([]byte(labels[n]))
		h.Write([]byte{0xff})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// alertTitle is the alert's summary, else its description, else its name,
// cut to the incident title's limit.
func alertTitle(al *alertmanagerAlert) string {
	title := ""
	for _, s := range []string{al.Annotations["summary"], al.Annotations["description"], al.Labels["alertname"]} {
		if s = strings.TrimSpace(s); s != "" {
			title = s
			break
		}
	}
	if len(title) > maxTitleBytes {
		cut := maxTitleBytes - len("…")
		for cut > 0 && !utf8.RuneStart(title[cut]) {
			cut--
		}
		title = title[:cut] + "…"
	}
	return title
}

// alertmanagerDecodeError says which field of the notification had the
// wrong kind of value, or that the body is not JSON.
func alertmanagerDecodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return &schema.ValidationError{Fields: []schema.FieldError{{
			Field:   typeErr.Field,
			Problem: fmt.Sprintf("must be %s, not a JSON %s: send Alertmanager's webhook notification (version 4) unchanged", kindOf(typeErr.Type.Kind().String()), typeErr.Value),
		}}}
	}
	return fmt.Errorf("the body is not an Alertmanager webhook notification (JSON): %v", err)
}

func kindOf(goKind string) string {
	switch goKind {
	case "slice":
		return "an array"
	case "map", "struct":
		return "an object"
	case "string":
		return "a string"
	default:
		return "a number"
	}
}
