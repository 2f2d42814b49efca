package alerts

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
	"gopkg.in/yaml.v3"
)

// Receivers is the webhook receivers file (serve's --receivers): where alert
// events are delivered, how they are signed, and how failures are retried.
type Receivers struct {
	// ExternalURL is where people reach deploywatch; messages link to it.
	ExternalURL string `yaml:"external_url"`
	// Retry applies to every receiver.
	Retry     Retry      `yaml:"retry"`
	Receivers []Receiver `yaml:"receivers"`
}

// Retry says how failed deliveries are retried: exponential backoff with
// jitter, each wait at most MaxInterval. After MaxElapsedTime of failures the
// round ends: the alert stays unacked and JetStream hands it out again after
// RedeliverAfter, so a receiver that is down for longer loses nothing.
type Retry struct {
	InitialInterval time.Duration `yaml:"initial_interval"`
	MaxInterval     time.Duration `yaml:"max_interval"`
	MaxElapsedTime  time.Duration `yaml:"max_elapsed_time"`
	Multiplier      float64       `yaml:"multiplier"`
	// Jitter is the randomization factor: each wait is drawn from
	// [w*(1-Jitter), w*(1+Jitter)].
	Jitter         float64       `yaml:"jitter"`
	RedeliverAfter time.Duration `yaml:"redeliver_after"`
}

// DefaultRetry is what a receivers file gets unless it says otherwise.
func DefaultRetry() Retry {
	return Retry{
		InitialInterval: time.Second,
		MaxInterval:     time.Minute,
		MaxElapsedTime:  15 * time.Minute,
		Multiplier:      2,
		Jitter:          0.5,
		RedeliverAfter:  time.Minute,
	}
}

// Format is the body a receiver gets.
type Format string

const (
	// FormatDeploywatch is the alert event as published on the signals stream.
	FormatDeploywatch Format = "deploywatch"
	// FormatAlertmanager is Alertmanager's webhook body (version 4), so that
	// receivers written for Alertmanager work unchanged.
	FormatAlertmanager Format = "alertmanager"
	// FormatSlack is a Slack incoming-webhook message: text and blocks.
	FormatSlack Format = "slack"
)

// Receiver is one webhook endpoint.
type Receiver struct {
	Name string `yaml:"name"`
	// URL may be "env:NAME" (a Slack webhook URL is a secret): then only its
	// origin is ever recorded or logged.
	URL    string `yaml:"url"`
	Format Format `yaml:"format"`
	// Secret signs the requests the Standard Webhooks way: "whsec_<base64>"
	// (the key is the decoded bytes, as the spec says), "env:NAME" (read from
	// the environment, in either form), or any other text (its bytes are the
	// key). Empty: no webhook-signature header.
	Secret string `yaml:"secret"`
	// Headers are sent with every request, e.g. Authorization; a value may be
	// "env:NAME". They are never logged.
	Headers map[string]string `yaml:"headers"`
	Match   Match             `yaml:"match"`
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration `yaml:"timeout"`

	// Resolved by ParseReceivers.
	url       string
	recordURL string
	key       []byte
	headers   map[string]string
}

// Match selects the alerts a receiver gets; an empty list matches all, and
// a value of the list must equal the alert's.
type Match struct {
	Service  StringList `yaml:"service"`
	Env      StringList `yaml:"env"`
	Severity StringList `yaml:"severity"`
	Rule     StringList `yaml:"rule"`
	// Action: alerts whose rule has at least one of these actions
	// ("rollback", "notify").
	Action StringList `yaml:"action"`
}

// StringList is a YAML list of strings that may also be written as one string.
type StringList []string

func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = StringList{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*l = list
	return nil
}

func (m Match) matches(a *schema.Alert) bool {
	in := func(list StringList, v string) bool { return len(list) == 0 || slices.Contains(list, v) }
	if !in(m.Service, a.Service) || !in(m.Env, a.Env) || !in(m.Severity, a.Severity) || !in(m.Rule, a.Rule) {
		return false
	}
	if len(m.Action) == 0 {
		return true
	}
	for _, act := range a.Actions {
		if slices.Contains(m.Action, act) {
			return true
		}
	}
	return false
}

// defaultReceiverTimeout bounds one attempt unless the receiver says otherwise.
const defaultReceiverTimeout = 10 * time.Second

var receiverNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ParseReceivers reads a receivers file: the defaults, then the file (unknown
// keys are refused), then every problem reported at once, naming the
// receiver and the key. lookupEnv resolves "env:NAME" references (cmd passes
// os.LookupEnv); a reference to an unset variable is a problem.
func ParseReceivers(data []byte, lookupEnv func(string) (string, bool)) (*Receivers, error) {
	rs := &Receivers{Retry: DefaultRetry()}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file decodes to io.EOF: it has no receivers, which resolve reports.
	if err := dec.Decode(rs); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := rs.resolve(lookupEnv); err != nil {
		return nil, err
	}
	return rs, nil
}

// resolve fills in the defaults, resolves references and validates.
func (rs *Receivers) resolve(lookupEnv func(string) (string, bool)) error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	if rs.ExternalURL != "" {
		if u, err := url.Parse(rs.ExternalURL); err != nil || u.Scheme == "" || u.Host == "" {
			add("external_url: must be an absolute URL such as https://deploywatch.example.com; got %q", rs.ExternalURL)
		}
	}
	r := rs.Retry
	if r.InitialInterval <= 0 {
		add("retry.initial_interval: must be more than 0, such as 1s")
	}
	if r.MaxInterval < r.InitialInterval {
		add("retry.max_interval: must be at least retry.initial_interval (%s)", r.InitialInterval)
	}
	if r.MaxElapsedTime <= 0 {
		add("retry.max_elapsed_time: must be more than 0, such as 15m (after it, JetStream hands the alert out again after retry.redeliver_after)")
	}
	if r.Multiplier < 1 {
		add("retry.multiplier: must be 1 or more; got %g", r.Multiplier)
	}
	if r.Jitter < 0 || r.Jitter >= 1 {
		add("retry.jitter: must be from 0 to below 1; got %g", r.Jitter)
	}
	if r.RedeliverAfter <= 0 {
		add("retry.redeliver_after: must be more than 0, such as 1m")
	}
	if len(rs.Receivers) == 0 {
		add("receivers: none given: list at least one receiver with a name and a url")
	}
	seen := map[string]bool{}
	for i := range rs.Receivers {
		rc := &rs.Receivers[i]
		where := fmt.Sprintf("receivers[%d]", i)
		if rc.Name != "" {
			where = fmt.Sprintf("receiver %q", rc.Name)
		}
		switch {
		case rc.Name == "":
			add("%s: name is required", where)
		case !receiverNameRE.MatchString(rc.Name):
			add("%s: name must be 1-128 letters, digits, '.', '_' or '-'", where)
		case seen[rc.Name]:
			add("%s: the name is used twice; webhook ids are derived from it, so it must be unique", where)
		}
		seen[rc.Name] = true

		rawURL, fromEnv, err := resolveRef(rc.URL, lookupEnv)
		switch {
		case err != nil:
			add("%s: url: %v", where, err)
		case rawURL == "":
			add("%s: url is required", where)
		default:
			u, err := url.Parse(rawURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				// Do not quote a URL that came from the environment: it may be a secret.
				shown := fmt.Sprintf("%q", rawURL)
				if fromEnv {
					shown = "the value of " + rc.URL
				}
				add("%s: url must be an http:// or https:// URL; got %s", where, shown)
				break
			}
			rc.url = rawURL
			rc.recordURL = recordableURL(u, fromEnv)
		}

		switch rc.Format {
		case "":
			rc.Format = FormatDeploywatch
		case FormatDeploywatch, FormatAlertmanager, FormatSlack:
		default:
			add("%s: format must be deploywatch, alertmanager or slack; got %q", where, rc.Format)
		}

		secret, _, err := resolveRef(rc.Secret, lookupEnv)
		if err != nil {
			add("%s: secret: %v", where, err)
		} else if secret != "" {
			if rc.key, err = SecretKey(secret); err != nil {
				add("%s: secret: %v", where, err)
			}
		}

		rc.headers = map[string]string{}
		for name, value := range rc.Headers {
			v, _, err := resolveRef(value, lookupEnv)
			if err != nil {
				add("%s: headers.%s: %v", where, name, err)
				continue
			}
			if reservedHeader(name) {
				add("%s: headers.%s: is set by deploywatch itself", where, name)
				continue
			}
			rc.headers[name] = v
		}

		if rc.Timeout == 0 {
			rc.Timeout = defaultReceiverTimeout
		} else if rc.Timeout < 0 {
			add("%s: timeout must be more than 0, such as 10s", where)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("the receivers file has %d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}

// resolveRef returns value, or the environment variable it names as "env:NAME".
func resolveRef(value string, lookupEnv func(string) (string, bool)) (string, bool, error) {
	name, ok := strings.CutPrefix(value, "env:")
	if !ok {
		return value, false, nil
	}
	if name == "" {
		return "", true, errors.New(`"env:" names no variable: write env:NAME`)
	}
	v, ok := lookupEnv(name)
	if !ok || v == "" {
		return "", true, fmt.Errorf("the environment variable %s is not set", name)
	}
	return v, true, nil
}

// SecretKey is the HMAC key of a signing secret: the base64-decoded rest of a
// "whsec_" secret, as the Standard Webhooks spec defines it; otherwise the
// secret's own bytes.
func SecretKey(secret string) ([]byte, error) {
	rest, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, errors.New(`a "whsec_" secret must be followed by standard base64, such as the output of: echo whsec_$(openssl rand -base64 32)`)
	}
	if len(key) == 0 {
		return nil, errors.New(`"whsec_" is followed by nothing`)
	}
	return key, nil
}

// recordableURL is the URL as delivery events and logs show it: without user
// info and query, and only the origin for one that came from the environment.
func recordableURL(u *url.URL, fromEnv bool) string {
	if fromEnv {
		return u.Scheme + "://" + u.Host + "/…"
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		c.RawQuery = ""
		c.ForceQuery = false
		return c.String() + "?…"
	}
	c.Fragment = ""
	return c.String()
}

func reservedHeader(name string) bool {
	switch strings.ToLower(name) {
	case "webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length", "host":
		return true
	}
	return false
}
