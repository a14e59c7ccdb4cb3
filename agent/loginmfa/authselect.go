package loginmfa

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing/fstest"
)

// authselect profiles: password first, then the code.
//
// An authselect profile file (system-auth, password-auth) is a template:
// operators in braces keep or drop a line or substitute text according to
// the features selected (authselect-profiles(5), "CONDITIONAL LINES").
// RHEL's profiles let a user in through one of several `sufficient` (or
// `[success=done …]`) modules — pam_unix for local users, pam_sss or
// pam_winbind for directory users, pam_fprintd, pam_u2f, smart cards —
// and steer users between them with `[default=N]` jumps that count
// lines (pam_localuser skips pam_unix for a directory user, for one).
//
// The code must be asked only after one of those first factors succeeded:
// asked before, anyone can make any user's failures count (lock them out,
// or spend the TPM lock-out every PIN user of the terminal shares). And
// every way to success must pass both factors: a line inserted inside a
// run of jumps moves their targets, which (tried) lets a directory user in
// with the code alone.
//
// RewriteAuthselect therefore rewrites the template so that, with the
// feature "with-mamori":
//
//   - every first factor F (a line whose success action is `done`) becomes
//     `[success=ok …]`, its other outcomes that were `ignore` become a
//     jump over the next line, and that next line is
//     `auth [success=done default=die] pam_mamori.so`, kept or dropped
//     with F (it carries F's include/exclude operators);
//   - every jump that crosses such lines is lengthened by the number it
//     crosses, so it lands where it landed before. The number is computed
//     for every combination of the features the auth lines mention; when
//     it differs between combinations the profile is refused (the agent
//     reports why) rather than guessed.
//
// Without "with-mamori" the rendered file is the original, line for line:
// changed lines keep their original beside them with {exclude if
// "with-mamori"}. Before the result is used it is proved, again for every
// feature combination: rendered with the feature the stack rule
// (Evaluate) finds no way to success without pam_mamori.so, and each
// pam_mamori.so line is reached only by falling through from its first
// factor's success (no jump lands on it; every other outcome of the first
// factor jumps over it or ends the stack); rendered without the feature
// the file equals the original rendering.

// authselectFeature is the feature the rewritten lines hang on.
const authselectFeatureOp = `{include if "` + AuthselectFeature + `"}`

// mamoriAuthselectLine is the second factor after a first factor.
const mamoriAuthselectLine = "auth        [success=done default=die]                   pam_mamori.so"

// Bounds of the rewrite: the feature combinations it enumerates.
const maxTemplateFeatures = 14

// template operators, as authselect matches them (src/lib/util/template.c).
var templateOp = regexp.MustCompile(`\{(?:(continue if|stop if|include if|exclude if) ([^{}|:\n]+)|(if) ([^{}|:\n]+):([^{}|\n]*)(?:\|([^{}|\n]*))?|(imply) "([^{}"|\n]+)" if ([^{}|:\n]+))\}`)

var templateFeature = regexp.MustCompile(`"([^{}"|\n]+)"`)

// renderedLine is one line of a rendered template and the template line
// it came from.
type renderedLine struct {
	src  int
	text string
}

// RenderAuthselect renders an authselect template with the features
// selected, as `authselect select` does: operators are applied left to
// right through the file, an include/exclude that fails drops its line,
// `continue if` / `stop if` end the file, `imply` adds a feature for the
// lines after it, `if` substitutes its text, and trailing blanks are
// trimmed. A malformed expression is an error, as in authselect.
func RenderAuthselect(tmpl []byte, features []string) ([]byte, error) {
	if len(tmpl) > MaxFileSize {
		return nil, fmt.Errorf("template of %d bytes; at most %d", len(tmpl), MaxFileSize)
	}
	lines, err := renderTemplate(strings.Split(string(tmpl), "\n"), features)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.text
	}
	return []byte(strings.Join(out, "\n")), nil
}

func renderTemplate(lines []string, features []string) ([]renderedLine, error) {
	on := map[string]bool{}
	for _, f := range features {
		on[f] = true
	}
	var out []renderedLine
	for i, l := range lines {
		var b strings.Builder
		keep, stop := true, false
		rest := l
		for keep && !stop {
			m := templateOp.FindStringSubmatchIndex(rest)
			if m == nil {
				b.WriteString(rest)
				break
			}
			b.WriteString(rest[:m[0]])
			sub := func(k int) string {
				if m[2*k] < 0 {
					return ""
				}
				return rest[m[2*k]:m[2*k+1]]
			}
			var op, expr string
			switch {
			case sub(1) != "":
				op, expr = sub(1), sub(2)
			case sub(3) != "":
				op, expr = "if", sub(4)
			default:
				op, expr = "imply", sub(9)
			}
			v, err := evalTemplateExpr(expr, on)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			switch op {
			case "include if":
				keep = v
			case "exclude if":
				keep = !v
			case "continue if":
				if v {
					keep = false
				} else {
					stop = true
				}
			case "stop if":
				if v {
					stop = true
				} else {
					keep = false
				}
			case "imply":
				if v {
					on[sub(8)] = true
				}
				keep = false
			case "if":
				if v {
					b.WriteString(sub(5))
				} else {
					b.WriteString(sub(6))
				}
			}
			rest = rest[m[1]:]
		}
		if keep {
			out = append(out, renderedLine{src: i, text: strings.TrimRight(b.String(), " \t\r")})
		}
		if stop {
			break
		}
	}
	return out, nil
}

// evalTemplateExpr evaluates an authselect expression: quoted feature
// names, and, or, not, parentheses. Like authselect's evaluator it reads
// left to right without precedence between and and or.
func evalTemplateExpr(expr string, on map[string]bool) (bool, error) {
	toks, err := exprTokens(expr)
	if err != nil {
		return false, err
	}
	pos := 0
	v, err := evalSeq(toks, &pos, on, 0)
	if err != nil {
		return false, err
	}
	if pos != len(toks) {
		return false, fmt.Errorf("expression %q: unexpected %q", expr, toks[pos])
	}
	return v, nil
}

func exprTokens(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')':
			toks = append(toks, string(c))
			i++
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 1 {
				return nil, fmt.Errorf("expression %q: unterminated or empty feature name", s)
			}
			toks = append(toks, s[i:i+j+2])
			i += j + 2
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '(' && s[j] != ')' && s[j] != '"' {
				j++
			}
			w := s[i:j]
			if w != "and" && w != "or" && w != "not" {
				return nil, fmt.Errorf("expression %q: unknown word %q", s, w)
			}
			toks = append(toks, w)
			i = j
		}
	}
	if len(toks) == 0 {
		return nil, errors.New("empty expression")
	}
	return toks, nil
}

func evalOperand(toks []string, pos *int, on map[string]bool, depth int) (bool, error) {
	if depth > 32 {
		return false, errors.New("expression nested too deeply")
	}
	if *pos >= len(toks) {
		return false, errors.New("expression ends where an operand is expected")
	}
	t := toks[*pos]
	*pos++
	switch {
	case t == "not":
		v, err := evalOperand(toks, pos, on, depth+1)
		return !v, err
	case t == "(":
		v, err := evalSeq(toks, pos, on, depth+1)
		if err != nil {
			return false, err
		}
		if *pos >= len(toks) || toks[*pos] != ")" {
			return false, errors.New("expression: missing )")
		}
		*pos++
		return v, nil
	case strings.HasPrefix(t, `"`):
		return on[strings.Trim(t, `"`)], nil
	}
	return false, fmt.Errorf("expression: %q where an operand is expected", t)
}

func evalSeq(toks []string, pos *int, on map[string]bool, depth int) (bool, error) {
	v, err := evalOperand(toks, pos, on, depth)
	if err != nil {
		return false, err
	}
	for *pos < len(toks) && (toks[*pos] == "and" || toks[*pos] == "or") {
		op := toks[*pos]
		*pos++
		w, err := evalOperand(toks, pos, on, depth)
		if err != nil {
			return false, err
		}
		if op == "and" {
			v = v && w
		} else {
			v = v || w
		}
	}
	return v, nil
}

// tmplInfo is what the rewrite knows of one template line.
type tmplInfo struct {
	auth     bool
	actions  Actions
	ctlStart int // byte offsets of the control field in the line
	ctlEnd   int
	factor   bool     // success ends the stack: a first factor
	lineOps  []string // its include/exclude operators, verbatim
	otherOps bool     // continue/stop/imply on the line
}

// stripOps removes the template operators of a line (for parsing).
func stripOps(l string) string { return templateOp.ReplaceAllString(l, "") }

func analyseTemplateLine(l string) (tmplInfo, error) {
	var ti tmplInfo
	for _, m := range templateOp.FindAllStringSubmatch(l, -1) {
		switch {
		case m[1] == "include if" || m[1] == "exclude if":
			ti.lineOps = append(ti.lineOps, m[0])
		case m[1] != "" || m[7] != "":
			ti.otherOps = true
		}
	}
	pl, ok := parseLine(stripOps(l))
	if !ok || pl.Type != "auth" && pl.Type != "" {
		return ti, nil
	}
	if pl.Kind == KindAtInclude {
		return ti, fmt.Errorf("%q: an @include line (its auth lines cannot be counted here)", strings.TrimSpace(l))
	}
	if pl.Err != nil || pl.Type == "" {
		return ti, fmt.Errorf("%q: %v", strings.TrimSpace(l), pl.Err)
	}
	if pl.Kind != KindModule {
		return ti, fmt.Errorf("%q: an auth include or substack in the profile (its lines cannot be counted here)", strings.TrimSpace(l))
	}
	ti.auth, ti.actions = true, pl.Actions
	// The control field: the token after the type.
	// Template operators may sit between the fields, so the type token of
	// the raw line is not always followed by a blank: such a line is
	// refused, never cut at a guessed offset.
	i := len(l) - len(strings.TrimLeft(l, pamBlanks))
	j := strings.IndexAny(l[i:], pamBlanks)
	if j < 0 || strings.ContainsAny(l[i:i+j], "{}") {
		return ti, fmt.Errorf("%q: control field not understood", strings.TrimSpace(l))
	}
	i += j
	i += len(l[i:]) - len(strings.TrimLeft(l[i:], pamBlanks))
	ti.ctlStart = i
	if strings.HasPrefix(l[i:], "[") {
		j := strings.IndexByte(l[i:], ']')
		if j < 0 || strings.Contains(l[i:i+j], `\`) {
			return ti, fmt.Errorf("%q: control field not understood", strings.TrimSpace(l))
		}
		ti.ctlEnd = i + j + 1
	} else {
		j := strings.IndexAny(l[i:], pamBlanks)
		if j < 0 {
			j = len(l) - i
		}
		ti.ctlEnd = i + j
	}
	if strings.ContainsAny(l[ti.ctlStart:ti.ctlEnd], "{}") {
		return ti, fmt.Errorf("%q: a template operator inside the control field", strings.TrimSpace(l))
	}
	ti.factor = pl.Actions[pamSuccess] == ActDone
	return ti, nil
}

const newAuthtokReqd = 12

// formatControl writes actions in the [value=action …] form, the most
// frequent action as default.
func formatControl(a Actions) string {
	count := map[Action]int{}
	for _, x := range a {
		count[x]++
	}
	def := a[len(a)-1]
	for x, n := range count {
		if n > count[def] || n == count[def] && x > def {
			def = x
		}
	}
	var parts []string
	for r, x := range a {
		if x != def {
			parts = append(parts, returnNames[r]+"="+actionWord(x))
		}
	}
	parts = append(parts, "default="+actionWord(def))
	return "[" + strings.Join(parts, " ") + "]"
}

func actionWord(a Action) string {
	if a > 0 {
		return fmt.Sprint(int(a))
	}
	return actionName(a)
}

// templateFeatures lists the features that decide the auth lines: those
// named by the auth lines' include/exclude operators and by continue,
// stop and imply lines. Features only substituted into arguments ({if})
// or used by other stacks do not change the auth stack's shape.
func templateFeatures(lines []string, infos []tmplInfo) []string {
	var fs []string
	add := func(s string) {
		for _, m := range templateFeature.FindAllStringSubmatch(s, -1) {
			if !slices.Contains(fs, m[1]) {
				fs = append(fs, m[1])
			}
		}
	}
	for i, l := range lines {
		if infos[i].auth {
			for _, op := range infos[i].lineOps {
				add(op)
			}
		}
		if infos[i].otherOps {
			for _, m := range templateOp.FindAllStringSubmatch(l, -1) {
				if m[1] == "continue if" || m[1] == "stop if" || m[7] != "" {
					add(m[0])
				}
			}
		}
	}
	return fs
}

// forEachCombination calls fn with every subset of fs.
func forEachCombination(fs []string, fn func([]string) error) error {
	for mask := 0; mask < 1<<len(fs); mask++ {
		var on []string
		for i, f := range fs {
			if mask&(1<<i) != 0 {
				on = append(on, f)
			}
		}
		if err := fn(on); err != nil {
			return err
		}
	}
	return nil
}

// RewriteAuthselect rewrites an authselect profile file so that, with the
// feature with-mamori, pam_mamori.so follows every first factor (see the
// comment at the top of this file). It reports whether it changed
// anything. A file already rewritten is left alone; the line an earlier
// agent put before the first jump (code before password) is taken out
// and the file rewritten. A profile whose jumps cannot be kept right for
// every feature combination is refused with the reason.
func RewriteAuthselect(b []byte) ([]byte, bool, error) {
	if len(b) > MaxFileSize {
		return nil, false, fmt.Errorf("%d bytes; at most %d", len(b), MaxFileSize)
	}
	lines := strings.Split(string(b), "\n")
	old := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == authselectLine })
	if old >= 0 {
		lines = slices.Delete(lines, old, old+1)
	} else if strings.Contains(string(b), ModuleMamori) {
		return b, false, nil
	}
	if strings.Contains(strings.Join(lines, "\n"), `"`+AuthselectFeature+`"`) {
		return nil, false, fmt.Errorf("the profile already uses the feature %s", AuthselectFeature)
	}
	infos := make([]tmplInfo, len(lines))
	for i, l := range lines {
		ti, err := analyseTemplateLine(l)
		if err != nil {
			return nil, false, fmt.Errorf("line %d: %w", i+1, err)
		}
		if ti.auth && ti.otherOps {
			return nil, false, fmt.Errorf("line %d: continue/stop/imply on an auth line", i+1)
		}
		if ti.factor {
			for r, a := range ti.actions {
				switch {
				case r == pamSuccess, a == ActIgnore, a == ActDie, a > 0:
				case a == ActDone && r == newAuthtokReqd:
				default:
					return nil, false, fmt.Errorf("line %d (%s): a first factor whose %s is %s would fall through to the code prompt without succeeding",
						i+1, strings.TrimSpace(stripOps(lines[i])), returnNames[r], actionName(a))
				}
			}
		}
		infos[i] = ti
	}
	fs := templateFeatures(lines, infos)
	if len(fs) > maxTemplateFeatures {
		return nil, false, fmt.Errorf("the auth lines depend on %d features; at most %d are checked", len(fs), maxTemplateFeatures)
	}
	// need[i][r]: how many pam_mamori.so lines the jump of line i for
	// return value r crosses, the same in every combination or refused.
	need := make([][numReturnValues]int, len(lines))
	seen := make([][numReturnValues]bool, len(lines))
	err := forEachCombination(fs, func(on []string) error {
		rl, err := renderTemplate(lines, on)
		if err != nil {
			return err
		}
		var auth []int // template line of each auth entry, in order
		for _, l := range rl {
			if infos[l.src].auth {
				auth = append(auth, l.src)
			}
		}
		for p, src := range auth {
			for r, a := range infos[src].actions {
				if a <= 0 {
					continue
				}
				// The jump from p skips the entries p+1 … p+a; each first
				// factor q in p … p+a has its pam_mamori.so line right
				// after it, before the target, so the jump must skip that
				// line too.
				n := 0
				for q := p; q <= p+int(a) && q < len(auth); q++ {
					if infos[auth[q]].factor {
						n++
					}
				}
				if seen[src][r] && need[src][r] != n {
					return fmt.Errorf("line %d (%s): its jump for %s crosses %d or %d first factors depending on the features (%s): cannot keep it right; use pam_config=manual",
						src+1, strings.TrimSpace(stripOps(lines[src])), returnNames[r], need[src][r], n, strings.Join(on, ","))
				}
				seen[src][r], need[src][r] = true, n
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	var out []string
	for i, l := range lines {
		ti := infos[i]
		changed := ti.factor
		a := ti.actions
		for r := range a {
			if a[r] > 0 && need[i][r] > 0 {
				a[r] += Action(need[i][r])
				changed = true
			}
		}
		if !changed {
			out = append(out, l)
			continue
		}
		if ti.factor {
			for r := range a {
				switch {
				case r == pamSuccess || a[r] == ActDone:
					a[r] = ActOK
				case a[r] == ActIgnore:
					a[r] = 1
				}
			}
		}
		ctl := formatControl(a)
		pad := ti.ctlEnd - ti.ctlStart
		if w := 45 - ti.ctlStart; pad < w {
			pad = w
		}
		newLine := l[:ti.ctlStart] + fmt.Sprintf("%-*s", pad, ctl) + l[ti.ctlEnd:]
		if !strings.HasPrefix(l[ti.ctlEnd:], " ") && !strings.HasPrefix(l[ti.ctlEnd:], "\t") {
			newLine = l[:ti.ctlStart] + ctl + " " + l[ti.ctlEnd:]
		}
		out = append(out, strings.TrimRight(l, " \t")+` {exclude if "`+AuthselectFeature+`"}`,
			strings.TrimRight(newLine, " \t")+" "+authselectFeatureOp)
		if ti.factor {
			ops := strings.Join(ti.lineOps, " ")
			if ops != "" {
				ops += " "
			}
			out = append(out, mamoriAuthselectLine+" "+ops+authselectFeatureOp)
		}
	}
	res := []byte(strings.Join(out, "\n"))
	if err := proveAuthselect(lines, res, fs); err != nil {
		return nil, false, fmt.Errorf("the rewritten profile failed its own check (%w): not using it; use pam_config=manual", err)
	}
	return res, true, nil
}

// proveAuthselect checks a rewritten template against the original for
// every combination of fs (see the comment at the top of this file).
func proveAuthselect(orig []string, rewritten []byte, fs []string) error {
	newLines := strings.Split(string(rewritten), "\n")
	return forEachCombination(fs, func(on []string) error {
		a, err := renderTemplate(orig, on)
		if err != nil {
			return err
		}
		b, err := renderTemplate(newLines, on)
		if err != nil {
			return err
		}
		if !slices.EqualFunc(a, b, func(x, y renderedLine) bool { return x.text == y.text }) {
			return fmt.Errorf("without %s the profile renders differently (features %v)", AuthselectFeature, on)
		}
		c, err := renderTemplate(newLines, append(slices.Clone(on), AuthselectFeature))
		if err != nil {
			return err
		}
		var text strings.Builder
		for _, l := range c {
			text.WriteString(l.text)
			text.WriteByte('\n')
		}
		st, err := LoadStack(fstest.MapFS{ConfDir + "/x": {Data: []byte(text.String())}}, "x")
		if err != nil {
			return err
		}
		if len(st.Problems) > 0 {
			return fmt.Errorf("features %v: %s", on, st.Problems[0])
		}
		if err := codeAfterFirstFactor(st.Entries); err != nil {
			return fmt.Errorf("features %v: %w", on, err)
		}
		if v := Evaluate(st.Entries); !v.Required {
			return fmt.Errorf("features %v: %s", on, v.Bypass)
		}
		return nil
	})
}

// codeAfterFirstFactor checks a flat stack: every pam_mamori.so entry
// follows a module that reaches it only on success (every other outcome
// jumps over it or ends the stack), and no jump lands on it.
func codeAfterFirstFactor(es []Entry) error {
	n := 0
	for i, e := range es {
		if e.Level != 0 || e.Substack {
			return errors.New("not a flat stack")
		}
		for r, a := range e.Actions {
			if a > 0 && i+int(a)+1 < len(es) && es[i+int(a)+1].Mamori() {
				return fmt.Errorf("line %d jumps (%s) onto pam_mamori.so: the code would be asked without a first factor", e.Line, returnNames[r])
			}
		}
		if !e.Mamori() {
			continue
		}
		n++
		if i == 0 || es[i-1].Mamori() {
			return fmt.Errorf("line %d: pam_mamori.so without a first factor before it", e.Line)
		}
		for r, a := range es[i-1].Actions {
			fallsThrough := a == ActOK || a == ActIgnore || a == ActBad || a == ActReset || a == ActDone
			if r != pamSuccess && r != newAuthtokReqd && fallsThrough {
				return fmt.Errorf("line %d: %s of line %d (%s) reaches pam_mamori.so", e.Line, returnNames[r], es[i-1].Line, actionName(a))
			}
		}
		if es[i-1].Actions[pamSuccess] != ActOK {
			return fmt.Errorf("line %d: success of line %d does not continue to pam_mamori.so", e.Line, es[i-1].Line)
		}
	}
	if n == 0 {
		return errors.New("no pam_mamori.so line")
	}
	return nil
}
