package alerts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// payload is the body a receiver of format f gets for alert a; raw is the
// alert event as published (what FormatDeploywatch sends unchanged).
func payload(f Format, receiver, externalURL string, a *schema.Alert, raw []byte) ([]byte, error) {
	switch f {
	case FormatAlertmanager:
		return json.Marshal(alertmanagerMessage(receiver, externalURL, a))
	case FormatSlack:
		return json.Marshal(slackMessage(externalURL, a))
	default:
		return raw, nil
	}
}

// amMessage is Alertmanager's webhook body, version 4
// (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
type amMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []amAlert         `json:"alerts"`
}

type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// alertmanagerMessage maps an alert to a group of one: the rule is the
// alertname, the service, env, severity and deploy become labels, the summary
// and the verdict annotations. A firing alert's endsAt is Go's zero time
// ("0001-01-01T00:00:00Z"), as Alertmanager sends it.
func alertmanagerMessage(receiver, externalURL string, a *schema.Alert) amMessage {
	labels := map[string]string{}
	maps.Copy(labels, a.Labels)
	labels["alertname"] = a.Rule
	labels["service"] = a.Service
	labels["env"] = a.Env
	setIf(labels, "severity", a.Severity)
	setIf(labels, "deploy_id", a.DeployID)
	setIf(labels, "version", a.Version)
	annotations := map[string]string{
		"summary":     a.Summary,
		"description": describe(a),
	}
	setIf(annotations, "verdict_id", a.VerdictID)
	setIf(annotations, "verdict_status", string(a.VerdictStatus))
	if len(a.Actions) > 0 {
		annotations["actions"] = strings.Join(a.Actions, ",")
	}
	setIf(annotations, "alert_id", a.AlertID)
	var ends time.Time
	if a.Status == schema.AlertResolved {
		ends = a.EndsAt.Time
	}
	group := map[string]string{"alertname": a.Rule, "service": a.Service, "env": a.Env}
	return amMessage{
		Version:           "4",
		GroupKey:          groupKey(group),
		Status:            string(a.Status),
		Receiver:          receiver,
		GroupLabels:       group,
		CommonLabels:      labels,
		CommonAnnotations: annotations,
		ExternalURL:       externalURL,
		Alerts: []amAlert{{
			Status:       string(a.Status),
			Labels:       labels,
			Annotations:  annotations,
			StartsAt:     a.StartsAt.Time,
			EndsAt:       ends,
			GeneratorURL: deployURL(externalURL, a),
			Fingerprint:  fingerprint(a.AlertID),
		}},
	}
}

func setIf(m map[string]string, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// groupKey is written the way Alertmanager writes one for a route without
// matchers: {}:{name="value", ...}.
func groupKey(labels map[string]string) string {
	var b strings.Builder
	b.WriteString("{}:{")
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteString("}")
	return b.String()
}

// fingerprint is 16 hex digits that are the same for every status change of
// one alert, as Alertmanager's fingerprints are.
func fingerprint(alertID string) string {
	sum := sha256.Sum256([]byte(alertID))
	return hex.EncodeToString(sum[:8])
}

// deployURL links to the deploy in deploywatch's API, or to deploywatch.
func deployURL(externalURL string, a *schema.Alert) string {
	if externalURL == "" {
		return ""
	}
	base := strings.TrimRight(externalURL, "/")
	if a.DeployID == "" {
		return base
	}
	return base + "/api/v1/deploys/" + url.PathEscape(a.DeployID)
}

// describe is one line for people: what fired, on what, with what evidence.
func describe(a *schema.Alert) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rule %s %s for %s in %s", a.Rule, a.Status, a.Service, a.Env)
	if a.DeployID != "" {
		fmt.Fprintf(&b, ", deploy %s", a.DeployID)
		if a.Version != "" {
			fmt.Fprintf(&b, " (%s", a.Version)
			if a.PreviousVersion != "" {
				fmt.Fprintf(&b, ", previously %s", a.PreviousVersion)
			}
			b.WriteString(")")
		}
	}
	if a.VerdictStatus != "" {
		fmt.Fprintf(&b, "; verdict %s, score %d", a.VerdictStatus, a.VerdictScore)
	}
	if len(a.Actions) > 0 {
		fmt.Fprintf(&b, "; actions: %s", strings.Join(a.Actions, ", "))
	}
	return b.String()
}

// slackMsg is a Slack incoming-webhook message: text is the notification's
// fallback, blocks what the channel shows.
type slackMsg struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func slackMessage(externalURL string, a *schema.Alert) slackMsg {
	icon, word := ":rotating_light:", "FIRING"
	if a.Status == schema.AlertResolved {
		icon, word = ":white_check_mark:", "RESOLVED"
	}
	title := fmt.Sprintf("[%s] %s: %s in %s", word, a.Rule, a.Service, a.Env)
	text := title
	if a.Summary != "" {
		text += ": " + a.Summary
	}
	headline := fmt.Sprintf("%s *%s*", icon, slackEscape(title))
	if a.Summary != "" {
		headline += "\n" + slackEscape(a.Summary)
	}
	var fields []slackText
	field := func(name, value string) {
		if value != "" {
			fields = append(fields, slackText{Type: "mrkdwn", Text: "*" + name + "*\n" + slackEscape(value)})
		}
	}
	field("Severity", a.Severity)
	field("Deploy", a.DeployID)
	if a.Version != "" {
		v := a.Version
		if a.PreviousVersion != "" {
			v = a.PreviousVersion + " → " + a.Version
		}
		field("Version", v)
	}
	if a.VerdictStatus != "" {
		field("Verdict", fmt.Sprintf("%s (score %d)", a.VerdictStatus, a.VerdictScore))
	}
	field("Actions", strings.Join(a.Actions, ", "))
	blocks := []slackBlock{{Type: "section", Text: &slackText{Type: "mrkdwn", Text: headline}}}
	if len(fields) > 0 {
		blocks = append(blocks, slackBlock{Type: "section", Fields: fields})
	}
	ctx := "alert " + slackEscape(a.AlertID)
	if link := deployURL(externalURL, a); link != "" {
		ctx += " · <" + link + "|open in deploywatch>"
	}
	blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: ctx}}})
	return slackMsg{Text: slackEscape(text), Blocks: blocks}
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func slackEscape(s string) string { return slackEscaper.Replace(s) }
