package alerts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/deploywatch/deploywatch/schema"
)

// CommandData is what a rollback agent's --command template sees. The same
// values are in the command's environment as DEPLOYWATCH_SIGNAL_<NAME>
// (DEPLOYWATCH_SIGNAL_SERVICE, ..._PREVIOUS_VERSION, ..._DEPLOY_ID, ..._ID,
// ..._REASON, ...).
type CommandData struct {
	Service         string
	Env             string
	Version         string
	PreviousVersion string
	DeployID        string
	SignalID        string
	Reason          string
	Rule            string
	AlertID         string
	Severity        string
}

func commandData(sig *schema.RollbackSignal) CommandData {
	return CommandData{
		Service: sig.Service, Env: sig.Env, Version: sig.Version, PreviousVersion: sig.PreviousVersion,
		DeployID: sig.DeployID, SignalID: sig.ID, Reason: sig.Reason, Rule: sig.Rule, AlertID: sig.AlertID,
		Severity: sig.Severity,
	}
}

// env lists the values as environment variables.
func (d CommandData) env() []string {
	return []string{
		"DEPLOYWATCH_SIGNAL_ID=" + d.SignalID,
		"DEPLOYWATCH_SIGNAL_SERVICE=" + d.Service,
		"DEPLOYWATCH_SIGNAL_ENV=" + d.Env,
		"DEPLOYWATCH_SIGNAL_VERSION=" + d.Version,
		"DEPLOYWATCH_SIGNAL_PREVIOUS_VERSION=" + d.PreviousVersion,
		"DEPLOYWATCH_SIGNAL_DEPLOY_ID=" + d.DeployID,
		"DEPLOYWATCH_SIGNAL_REASON=" + d.Reason,
		"DEPLOYWATCH_SIGNAL_RULE=" + d.Rule,
		"DEPLOYWATCH_SIGNAL_ALERT_ID=" + d.AlertID,
		"DEPLOYWATCH_SIGNAL_SEVERITY=" + d.Severity,
	}
}

// ParseCommand parses a --command template for `sh -c`. The values come from
// events, so that none of them can run a command of its own, every {{...}}
// that prints something is shell-quoted: {{.Reason}} becomes one word
// whatever the reason says ('it'\”s $(bad)'), plain values such as
// checkout or v1.4.2 stay as they are. A {{...}} inside '...' or "..." of
// the template is refused (in "..." the shell would still expand $(...)
// inside the value): write it outside quotes, or use the environment
// variables ("$DEPLOYWATCH_SIGNAL_REASON") in quotes of your own.
// {{template}} and {{define}} are refused.
func ParseCommand(text string) (*template.Template, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("the command is empty")
	}
	t, err := template.New("command").Option("missingkey=error").Funcs(template.FuncMap{"shellquote": ShellQuote}).Parse(text)
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("{{define}} and {{block}} are not supported in a command")
	}
	q := quoteState{}
	if err := quoteActions(text, t.Tree.Root, &q); err != nil {
		return nil, err
	}
	if q.open != 0 {
		return nil, fmt.Errorf("the command leaves a %c quote open", q.open)
	}
	// Misspelt fields show now, not at the first rollback.
	sample := CommandData{Service: "checkout", Env: "production", Version: "v2", PreviousVersion: "v1",
		DeployID: "d", SignalID: "d:rollback", Reason: "r", Rule: "r", AlertID: "a", Severity: "critical"}
	if err := t.Execute(io.Discard, sample); err != nil {
		return nil, fmt.Errorf("%w (a command may use .Service, .Env, .Version, .PreviousVersion, .DeployID, .SignalID, .Reason, .Rule, .AlertID, .Severity)", err)
	}
	return t, nil
}

// quoteState follows the shell's quoting through the template's text.
type quoteState struct {
	open    byte // 0, '\'' or '"'
	escaped bool // the last character was a backslash outside single quotes
}

func (q *quoteState) scan(text string) {
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case q.escaped:
			q.escaped = false
		case q.open == '\'':
			if c == '\'' {
				q.open = 0
			}
		case c == '\\':
			q.escaped = true
		case q.open == '"':
			if c == '"' {
				q.open = 0
			}
		case c == '\'' || c == '"':
			q.open = c
		}
	}
}

// quoteActions pipes every printing action of list into shellquote, and
// refuses one that stands inside quotes.
func quoteActions(text string, list *parse.ListNode, q *quoteState) error {
	if list == nil {
		return nil
	}
	for _, n := range list.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			q.scan(string(n.Text))
		case *parse.ActionNode:
			if len(n.Pipe.Decl) > 0 {
				continue // {{$x := ...}} prints nothing
			}
			if q.open != 0 || q.escaped {
				return fmt.Errorf("%s stands inside %c quotes of the command: deploywatch quotes every value itself, "+
					"so write it outside quotes (or use \"$DEPLOYWATCH_SIGNAL_<NAME>\" in your own quotes)", n, q.open)
			}
			cmds := n.Pipe.Cmds
			if last := cmds[len(cmds)-1]; len(last.Args) == 1 {
				if id, ok := last.Args[0].(*parse.IdentifierNode); ok && id.Ident == "shellquote" {
					continue
				}
			}
			n.Pipe.Cmds = append(cmds, &parse.CommandNode{
				NodeType: parse.NodeCommand, Pos: n.Pos,
				Args: []parse.Node{parse.NewIdentifier("shellquote").SetPos(n.Pos)},
			})
		case *parse.IfNode:
			if err := quoteBranches(text, q, n.List, n.ElseList); err != nil {
				return err
			}
		case *parse.RangeNode:
			if err := quoteBranches(text, q, n.List, n.ElseList); err != nil {
				return err
			}
		case *parse.WithNode:
			if err := quoteBranches(text, q, n.List, n.ElseList); err != nil {
				return err
			}
		case *parse.TemplateNode:
			return errors.New("{{template}} is not supported in a command")
		}
	}
	return nil
}

// quoteBranches walks both branches from the same state; they must end in the same one.
func quoteBranches(text string, q *quoteState, branches ...*parse.ListNode) error {
	start := *q
	var end *quoteState
	for _, b := range branches {
		s := start
		if err := quoteActions(text, b, &s); err != nil {
			return err
		}
		if b == nil {
			continue
		}
		if end != nil && *end != s {
			return errors.New("a quote opened in one branch of {{if}}, {{range}} or {{with}} must be closed in it")
		}
		end = &s
	}
	if end != nil {
		if len(branches) > 1 && branches[1] == nil && *end != start {
			return errors.New("a quote opened in {{if}}, {{range}} or {{with}} must be closed in it")
		}
		*q = *end
	}
	return nil
}

// plainWord is what needs no quoting in sh.
var plainWord = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)

// ShellQuote makes v one word for sh: as it is when it has nothing the shell
// would interpret, else in single quotes (a ' inside becomes '\”).
func ShellQuote(v any) string {
	s := fmt.Sprint(v)
	if s == "" {
		return "''"
	}
	if plainWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandEnv is the command's environment: base without deploywatch's own
// settings (DEPLOYWATCH_*, which may hold the agent's credentials), and the
// signal's values.
func commandEnv(base []string, d CommandData) []string {
	out := make([]string, 0, len(base)+10)
	for _, kv := range base {
		if !strings.HasPrefix(kv, "DEPLOYWATCH_") {
			out = append(out, kv)
		}
	}
	return append(out, d.env()...)
}

// runCommand renders the command for the signal and runs it with sh -c,
// keeping the tail of its output. It is not stopped by ctx ending (a
// rollback cut in half is worse than one that finishes); only by timeout.
func runCommand(ctx context.Context, shell string, tmpl *template.Template, base []string, d CommandData, timeout time.Duration) (string, error) {
	var script bytes.Buffer
	if err := tmpl.Execute(&script, d); err != nil {
		return "", fmt.Errorf("cannot render the command: %w", err)
	}
	runCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, shell, "-c", script.String())
	cmd.Env = commandEnv(base, d)
	out := &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	setProcessGroup(cmd)
	err := cmd.Run()
	if runCtx.Err() == context.DeadlineExceeded {
		return out.String(), fmt.Errorf("the command did not finish within %s and was killed", timeout)
	}
	if err != nil {
		return out.String(), fmt.Errorf("the command failed: %w", err)
	}
	return out.String(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
	cut bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.cut = true
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(string(b.buf))
	if b.cut {
		s = "…" + s
	}
	return s
}
