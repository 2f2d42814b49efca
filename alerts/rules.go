package alerts

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deploywatch/deploywatch/schema"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// Rules are decided beforehand, in a YAML file:
//
//	defaults:            # optional: what every rule has unless it says otherwise
//	  severity: warning  # critical | warning | info
//	  actions: [notify]  # rollback and/or notify
//	  for: 0s
//	  dry_run: false
//	rules:
//	  - name: bad-deploy-in-production
//	    match:           # optional; a missing key matches everything
//	      service: "*"   # glob (path.Match: * ? [a-z]), or a list of them
//	      env: production
//	      labels: {team: payments}   # every label named must be there and match
//	    condition: verdict.status == "bad" && (verdict.final || verdict.early)
//	    for: 2m          # the condition must hold over verdicts spanning this much event time
//	    severity: critical
//	    actions: [rollback, notify]
//	    dry_run: false   # record what the rule would do, send nothing
//
// ParseRules decodes each rule onto the file's defaults (themselves on top
// of the built-in ones), then validates the whole file, reporting every
// problem with the rule's name and line, and compiles every condition with
// its types checked.

// Rule is one rule, compiled.
type Rule struct {
	Name        string       `yaml:"name"`
	Description string       `yaml:"description"`
	Match       RuleMatch    `yaml:"match"`
	Condition   string       `yaml:"condition"`
	For         RuleDuration `yaml:"for"`
	Severity    string       `yaml:"severity"`
	Actions     []string     `yaml:"actions"`
	DryRun      bool         `yaml:"dry_run"`

	// Line is where the rule starts in its file (0 for built-in rules made in Go).
	Line int `yaml:"-"`

	lines   map[string]int // field → line of its key
	program *vm.Program
}

// RuleMatch selects the verdicts a rule looks at. Empty patterns match all.
type RuleMatch struct {
	Service Patterns `yaml:"service"`
	Env     Patterns `yaml:"env"`
	// Labels are the deploy's labels: every key listed must be present with
	// a value that matches.
	Labels map[string]Patterns `yaml:"labels"`
}

// Patterns are globs (path.Match syntax: *, ?, [a-z], \ to escape); a value
// matches when it matches any of them. A pattern without those characters
// is an exact match. In YAML: one string or a list.
type Patterns []string

// UnmarshalYAML takes a string or a list of strings.
func (p *Patterns) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*p = nil
			return nil
		}
		*p = Patterns{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(Patterns, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a pattern must be a string", c.Line)}}
			}
			out = append(out, c.Value)
		}
		*p = out
		return nil
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a glob or a list of globs", n.Line)}}
}

// Matches reports whether value matches any pattern, or there are none.
func (p Patterns) Matches(value string) bool {
	if len(p) == 0 {
		return true
	}
	for _, pat := range p {
		if ok, _ := path.Match(pat, value); ok {
			return true
		}
	}
	return false
}

// Matches reports whether a verdict of service in env, about a deploy with
// labels, is for the rule to judge.
func (m RuleMatch) Matches(service, env string, labels map[string]string) bool {
	if !m.Service.Matches(service) || !m.Env.Matches(env) {
		return false
	}
	for key, pats := range m.Labels {
		v, ok := labels[key]
		if !ok || !pats.Matches(v) {
			return false
		}
	}
	return true
}

// RuleDuration is a time.Duration written as in Go: 90s, 5m, 1h30m.
type RuleDuration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *RuleDuration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a duration such as 90s, 5m or 1h30m", n.Line)}}
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: must be a duration such as 90s, 5m or 1h30m; got %q", n.Line, n.Value)}}
	}
	*d = RuleDuration(v)
	return nil
}

// MarshalYAML writes the duration as Go does.
func (d RuleDuration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func (d RuleDuration) String() string { return time.Duration(d).String() }

// RuleDefaults are what every rule of a file has unless it sets its own.
type RuleDefaults struct {
	Severity string       `yaml:"severity"`
	Actions  []string     `yaml:"actions"`
	For      RuleDuration `yaml:"for"`
	DryRun   bool         `yaml:"dry_run"`
}

// builtinRuleDefaults are the defaults under a file's own.
func builtinRuleDefaults() RuleDefaults {
	return RuleDefaults{Severity: schema.SeverityWarning, Actions: []string{schema.ActionNotify}}
}

// Rules is a validated, compiled rule set.
type Rules struct {
	// Source is the file the rules came from, or "built-in".
	Source   string
	Defaults RuleDefaults
	List     []*Rule
}

// Rule returns the rule of that name, or nil.
func (rs *Rules) Rule(name string) *Rule {
	for _, r := range rs.List {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// RuleProblem is one problem of a rules file.
type RuleProblem struct {
	// Rule is the rule's name; empty for a problem outside the rules or a
	// rule without a name, which Index then identifies.
	Rule  string
	Index int // position in rules:, from 0; -1 outside the rules
	Line  int
	// Field is the rule's field (condition, match.env, ...), empty for the rule itself.
	Field   string
	Problem string
}

func (p RuleProblem) String() string {
	var b strings.Builder
	switch {
	case p.Index < 0:
	case p.Rule != "":
		fmt.Fprintf(&b, "rule %q", p.Rule)
	default:
		fmt.Fprintf(&b, "rules[%d]", p.Index)
	}
	if p.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "(line %d)", p.Line)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Problem)
	return b.String()
}

// RulesError lists every problem of a rules file.
type RulesError struct {
	Source   string
	Problems []RuleProblem
}

func (e *RulesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid rules in %s: ", e.Source)
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// LoadRules reads, validates and compiles a rules file.
func LoadRules(file string) (*Rules, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read the rules file: %w", err)
	}
	return ParseRules(data, file)
}

// ParseRules decodes, validates and compiles rules; source names them in errors.
func ParseRules(data []byte, source string) (*Rules, error) {
	rs, probs := decodeRules(data, source)
	// The values are checked too, but for the fields whose shape was wrong:
	// those were left at their defaults, and one problem is enough.
	shaped := map[string]bool{}
	for _, p := range probs {
		shaped[strconv.Itoa(p.Index)+"\x00"+p.Field] = true
	}
	if shaped["-1\x00"] {
		// Not even the file's shape was right: there is nothing to check.
		return nil, &RulesError{Source: source, Problems: probs}
	}
	for _, p := range rs.check() {
		if !shaped[strconv.Itoa(p.Index)+"\x00"+p.Field] && !shaped["-1\x00rules"] {
			probs = append(probs, p)
		}
	}
	if len(probs) > 0 {
		return nil, &RulesError{Source: source, Problems: sortProblems(probs)}
	}
	return rs, nil
}

// sortProblems orders problems as the file reads: the file's own first,
// then rule by rule, line by line.
func sortProblems(probs []RuleProblem) []RuleProblem {
	slices.SortStableFunc(probs, func(a, b RuleProblem) int {
		if c := cmp.Compare(a.Index, b.Index); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
	return probs
}

// Validate reports every problem of the rule set at once (and compiles the
// conditions of rules made in Go).
func (rs *Rules) Validate() error {
	if probs := rs.check(); len(probs) > 0 {
		return &RulesError{Source: rs.Source, Problems: probs}
	}
	return nil
}

var (
	ruleFileKeys     = []string{"defaults", "rules"}
	ruleDefaultsKeys = ruleStructTags(RuleDefaults{}, "yaml")
	ruleKeys         = ruleStructTags(Rule{}, "yaml")
	ruleMatchKeys    = ruleStructTags(RuleMatch{}, "yaml")
)

// decodeRules decodes the file onto the defaults; it reports the problems of
// its shape (unknown keys, values of the wrong kind), rule by rule.
func decodeRules(data []byte, source string) (*Rules, []RuleProblem) {
	rs := &Rules{Source: source, Defaults: builtinRuleDefaults()}
	var probs []RuleProblem
	outside := func(line int, field, problem string) {
		probs = append(probs, RuleProblem{Index: -1, Line: line, Field: field, Problem: problem})
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		outside(0, "", "is not valid YAML: "+strings.TrimPrefix(err.Error(), "yaml: "))
		return rs, probs
	}
	if len(doc.Content) == 0 {
		outside(0, "", "is empty: write `rules:` with at least one rule (see deployments/rules.example.yaml)")
		return rs, probs
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		outside(root.Line, "", "must be a mapping with `rules:` (and optionally `defaults:`)")
		return rs, probs
	}
	var defaultsNode, rulesNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		switch key.Value {
		case "defaults":
			defaultsNode = val
		case "rules":
			rulesNode = val
		default:
			outside(key.Line, key.Value, "is not a known key (known: "+strings.Join(ruleFileKeys, ", ")+")")
		}
	}
	if defaultsNode != nil {
		for _, p := range ruleUnknownKeys(defaultsNode, ruleDefaultsKeys, "defaults.") {
			outside(p.line, p.field, p.problem)
		}
		if err := defaultsNode.Decode(&rs.Defaults); err != nil {
			for _, msg := range ruleYAMLErrors(err) {
				line, text := ruleSplitYAMLLine(msg)
				outside(line, "defaults", text)
			}
		}
	}
	if rulesNode == nil || (rulesNode.Kind == yaml.ScalarNode && rulesNode.Tag == "!!null") {
		outside(root.Line, "rules", "is missing or empty: a rules file needs at least one rule (to run without alerts, give serve --alerts=false)")
		return rs, probs
	}
	if rulesNode.Kind != yaml.SequenceNode {
		outside(rulesNode.Line, "rules", "must be a list of rules")
		return rs, probs
	}
	for i, n := range rulesNode.Content {
		r := &Rule{
			Severity: rs.Defaults.Severity, Actions: slices.Clone(rs.Defaults.Actions),
			For: rs.Defaults.For, DryRun: rs.Defaults.DryRun,
			Line: n.Line, lines: map[string]int{},
		}
		rs.List = append(rs.List, r)
		add := func(line int, field, problem string) {
			probs = append(probs, RuleProblem{Rule: r.Name, Index: i, Line: line, Field: field, Problem: problem})
		}
		if n.Kind != yaml.MappingNode {
			add(n.Line, "", "must be a mapping with name, condition, ...")
			continue
		}
		for j := 0; j+1 < len(n.Content); j += 2 {
			key, val := n.Content[j], n.Content[j+1]
			r.lines[key.Value] = key.Line
			if key.Value == "name" && val.Kind == yaml.ScalarNode {
				r.Name = val.Value // for the messages below
			}
			if key.Value == "match" && val.Kind == yaml.MappingNode {
				for k := 0; k+1 < len(val.Content); k += 2 {
					r.lines["match."+val.Content[k].Value] = val.Content[k].Line
					if labels := val.Content[k+1]; val.Content[k].Value == "labels" && labels.Kind == yaml.MappingNode {
						for l := 0; l+1 < len(labels.Content); l += 2 {
							r.lines["match.labels."+labels.Content[l].Value] = labels.Content[l].Line
						}
					}
				}
			}
		}
		for _, p := range ruleUnknownKeys(n, ruleKeys, "") {
			add(p.line, p.field, p.problem)
		}
		if m, ok := ruleMappingValue(n, "match"); ok {
			for _, p := range ruleUnknownKeys(m, ruleMatchKeys, "match.") {
				add(p.line, p.field, p.problem)
			}
		}
		if err := n.Decode(r); err != nil {
			for _, msg := range ruleYAMLErrors(err) {
				line, text := ruleSplitYAMLLine(msg)
				add(line, ruleFieldAt(r.lines, line), text)
			}
		}
	}
	return rs, probs
}

type ruleKeyProblem struct {
	line           int
	field, problem string
}

// ruleUnknownKeys names the keys of mapping n that are not in known: yaml.v3's
// KnownFields does not reach into a Node decoded on its own.
func ruleUnknownKeys(n *yaml.Node, known []string, prefix string) []ruleKeyProblem {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var out []ruleKeyProblem
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i]
		if !slices.Contains(known, key.Value) {
			out = append(out, ruleKeyProblem{key.Line, prefix + key.Value, "is not a known field (known: " + strings.Join(known, ", ") + ")"})
		}
	}
	return out
}

func ruleMappingValue(n *yaml.Node, key string) (*yaml.Node, bool) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1], true
		}
	}
	return nil, false
}

// ruleYAMLErrors splits a decoding error into its messages.
func ruleYAMLErrors(err error) []string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return te.Errors
	}
	return []string{err.Error()}
}

var ruleYAMLLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// ruleSplitYAMLLine takes "line 12: cannot unmarshal ..." apart.
func ruleSplitYAMLLine(msg string) (int, string) {
	m := ruleYAMLLineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, msg
	}
	line, _ := strconv.Atoi(m[1])
	return line, ruleFriendlyYAML(m[2])
}

// ruleFriendlyYAML says "must be a list" where yaml.v3 says "cannot unmarshal !!str `x` into []string".
func ruleFriendlyYAML(msg string) string {
	switch {
	case strings.Contains(msg, "into []string"):
		return "must be a list of strings, such as [rollback, notify]: " + msg
	case strings.Contains(msg, "into bool"):
		return "must be true or false: " + msg
	case strings.Contains(msg, "into string"):
		return "must be a string: " + msg
	}
	return msg
}

// ruleFieldAt is the field whose key is on line, if any.
func ruleFieldAt(lines map[string]int, line int) string {
	best := ""
	for f, l := range lines {
		if l == line && (best == "" || len(f) > len(best)) {
			best = f
		}
	}
	return best
}

// check validates the rules and compiles their conditions, reporting every problem.
func (rs *Rules) check() []RuleProblem {
	var probs []RuleProblem
	if len(rs.List) == 0 {
		probs = append(probs, RuleProblem{Index: -1, Field: "rules", Problem: "is empty: a rules file needs at least one rule (to run without alerts, give serve --alerts=false)"})
	}
	checkRuleDefaults(rs.Defaults, func(field, problem string) {
		probs = append(probs, RuleProblem{Index: -1, Field: "defaults." + field, Problem: problem})
	})
	seen := map[string]int{}
	for i, r := range rs.List {
		add := func(field, problem string) {
			line := r.Line
			for f := field; f != ""; {
				if l, ok := r.lines[f]; ok {
					line = l
					break
				}
				dot := strings.LastIndexByte(f, '.')
				if dot < 0 {
					break
				}
				f = f[:dot]
			}
			probs = append(probs, RuleProblem{Rule: r.Name, Index: i, Line: line, Field: field, Problem: problem})
		}
		// A field the rule takes from the defaults is checked there, once.
		own := func(field string, problem string) {
			if _, set := r.lines[field]; set || r.lines == nil {
				add(field, problem)
			}
		}
		switch {
		case r.Name == "":
			add("name", "is required: a name of 1-64 letters, digits, '.', '_' or '-' (it is part of the alerts' ids)")
		case !schema.RuleNamePattern.MatchString(r.Name):
			add("name", fmt.Sprintf("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit; got %q", r.Name))
		}
		if first, dup := seen[r.Name]; dup && r.Name != "" {
			add("name", fmt.Sprintf("is used by rules[%d] too: every rule needs its own name", first))
		} else {
			seen[r.Name] = i
		}
		if len(r.Description) > 1024 {
			add("description", fmt.Sprintf("is %d bytes long; the limit is 1024", len(r.Description)))
		}
		checkRuleMatch(r.Match, add)
		checkRuleFields(r.Severity, r.Actions, r.For, own)
		if strings.TrimSpace(r.Condition) == "" {
			add("condition", `is required: an expression over the verdict, such as verdict.status == "bad" && verdict.final`)
			continue
		}
		program, err := compileCondition(r.Condition)
		if err != nil {
			add("condition", err.Error())
			continue
		}
		r.program = program
	}
	return probs
}

func checkRuleDefaults(d RuleDefaults, add func(field, problem string)) {
	checkRuleFields(d.Severity, d.Actions, d.For, add)
}

// maxRuleFor bounds `for`: verdicts stop coming once a deploy's analysis is over.
const maxRuleFor = 24 * time.Hour

func checkRuleFields(severity string, actions []string, forDur RuleDuration, add func(field, problem string)) {
	switch severity {
	case schema.SeverityCritical, schema.SeverityWarning, schema.SeverityInfo:
	default:
		add("severity", fmt.Sprintf("must be critical, warning or info; got %q", severity))
	}
	if len(actions) == 0 {
		add("actions", "needs at least one of rollback, notify (a rule that only records is dry_run: true)")
	}
	for i, a := range actions {
		switch {
		case a != schema.ActionRollback && a != schema.ActionNotify:
			add("actions", fmt.Sprintf("must be rollback or notify; got %q", a))
		case slices.Index(actions, a) != i:
			add("actions", fmt.Sprintf("names %q twice", a))
		}
	}
	if forDur < 0 || time.Duration(forDur) > maxRuleFor {
		add("for", fmt.Sprintf("must be from 0 to %s; got %s", maxRuleFor, forDur))
	}
}

func checkRuleMatch(m RuleMatch, add func(field, problem string)) {
	pats := func(field string, ps Patterns) {
		for _, p := range ps {
			if p == "" {
				add(field, "has an empty pattern: leave the key out to match everything")
			} else if _, err := path.Match(p, ""); err != nil {
				add(field, fmt.Sprintf("%q is not a valid glob (use *, ?, [a-z], and \\ to escape)", p))
			}
		}
	}
	pats("match.service", m.Service)
	pats("match.env", m.Env)
	keys := make([]string, 0, len(m.Labels))
	for k := range m.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" {
			add("match.labels", "has an empty label name")
		}
		if len(m.Labels[k]) == 0 {
			add("match.labels."+k, "needs a pattern (\"*\" for any value, the label being present)")
		}
		pats("match.labels."+k, m.Labels[k])
	}
}

// compileCondition compiles a condition against the verdict's environment
// with its types checked; it must give a bool.
func compileCondition(src string) (*vm.Program, error) {
	program, err := expr.Compile(src, expr.Env(exprRuleEnv{}), expr.AsBool())
	if err != nil {
		return nil, errors.New(explainExprError(err.Error()))
	}
	// metric("eror_rate") would type-check and never match: refuse names no verdict has.
	v := &exprMetricCalls{}
	node := program.Node()
	ast.Walk(&node, v)
	if len(v.unknown) > 0 {
		return nil, fmt.Errorf("metric(%q): verdicts have no such metric (they have %s)", v.unknown[0], strings.Join(verdictMetricNames, ", "))
	}
	return program, nil
}

// exprMetricCalls finds metric("name") calls with names no verdict has.
type exprMetricCalls struct{ unknown []string }

func (v *exprMetricCalls) Visit(n *ast.Node) {
	call, ok := (*n).(*ast.CallNode)
	if !ok || len(call.Arguments) != 1 {
		return
	}
	if id, ok := call.Callee.(*ast.IdentifierNode); !ok || id.Value != "metric" {
		return
	}
	if s, ok := call.Arguments[0].(*ast.StringNode); ok && !slices.Contains(verdictMetricNames, s.Value) {
		v.unknown = append(v.unknown, s.Value)
	}
}

// eval runs the rule's condition over a verdict and what is known of its deploy.
func (r *Rule) eval(env exprRuleEnv) (bool, error) {
	if r.program == nil {
		return false, fmt.Errorf("rule %q is not compiled: validate its rules first", r.Name)
	}
	out, err := expr.Run(r.program, env)
	if err != nil {
		return false, fmt.Errorf("cannot evaluate the condition of rule %q: %w", r.Name, err)
	}
	b, _ := out.(bool)
	return b, nil
}

// EvalVerdict runs the rule's condition over a verdict and, when known, its
// deploy's latest event (nil: unknown), as the engine would.
func (r *Rule) EvalVerdict(v *schema.Verdict, d *schema.Deploy) (bool, error) {
	var rec *engDeploy
	if d != nil {
		st := newEngineState(0)
		st.deploy(d)
		rec = st.deploys[d.ID]
	}
	if !r.Match.Matches(v.Service, v.Env, engLabelsOf(rec)) {
		return false, nil
	}
	return r.eval(newExprRuleEnv(v, rec))
}

func engLabelsOf(rec *engDeploy) map[string]string {
	if rec == nil {
		return nil
	}
	return rec.Labels
}

// Has reports whether the rule takes action a.
func (r *Rule) Has(action string) bool { return slices.Contains(r.Actions, action) }

// ruleStructTags lists the names a struct's fields have under tag.
func ruleStructTags(v any, tag string) []string {
	t := reflect.TypeOf(v)
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get(tag), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// defaultRulesYAML is the built-in rule set: what serve uses without --rules.
const defaultRulesYAML = `# deploywatch's built-in rules: used when serve is given no --rules file.
defaults:
  severity: warning
  actions: [notify]
rules:
  - name: bad-deploy-in-production
    description: A deploy to production judged bad, at the end of its window or early on strong evidence, is rolled back.
    match:
      env: production
    condition: verdict.status == "bad" && (verdict.final || verdict.early)
    severity: critical
    actions: [rollback, notify]
  - name: bad-deploy
    description: A deploy judged bad anywhere but production is reported.
    condition: verdict.env != "production" && verdict.status == "bad" && (verdict.final || verdict.early)
    severity: warning
    actions: [notify]
  - name: marginal-deploy
    description: A deploy whose final verdict is marginal is reported.
    condition: verdict.status == "marginal" && verdict.final
    severity: warning
    actions: [notify]
`

// DefaultRules returns the built-in rule set.
func DefaultRules() *Rules {
	rs, err := ParseRules([]byte(defaultRulesYAML), "built-in")
	if err != nil {
		panic(err) // part of the program; the package's tests catch it
	}
	return rs
}

// DefaultRulesYAML returns the built-in rules as YAML, to start a file from.
func DefaultRulesYAML() []byte { return bytes.Clone([]byte(defaultRulesYAML)) }
