package loginmfa

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// Limits of the pam.d reader. libpam has none this strict, but a service
// file this large or this deep is not something an administrator wrote;
// the reader refuses it (and the control reports the service FAILED)
// rather than spend unbounded time or memory on it.
const (
	MaxFileSize  = 1 << 20 // bytes in one pam.d file
	MaxLineLen   = 64 << 10
	MaxEntries   = 1024 // auth entries in one service's expanded stack
	MaxLevel     = 16   // include/substack depth (libpam's PAM_SUBSTACK_MAX_LEVEL)
	ModuleMamori = "pam_mamori.so"
)

// PAM return values (security/_pam_types.h), the indices of an action
// table. Only the names the stack rule needs are spelled out.
const (
	pamSuccess      = 0
	pamAuthErr      = 7
	pamIgnore       = 25
	pamIncomplete   = 31
	numReturnValues = 32
)

// returnNames are the "value" words of the [value=action] syntax, indexed
// by PAM return value (pam.conf(5)); "default" is handled separately.
var returnNames = [numReturnValues]string{
	"success", "open_err", "symbol_err", "service_err", "system_err", "buf_err",
	"perm_denied", "auth_err", "cred_insufficient", "authinfo_unavail", "user_unknown",
	"maxtries", "new_authtok_reqd", "acct_expired", "session_err", "cred_unavail",
	"cred_expired", "cred_err", "no_module_data", "conv_err", "authtok_err",
	"authtok_recover_err", "authtok_lock_busy", "authtok_disable_aging", "try_again",
	"ignore", "abort", "authtok_expired", "module_unknown", "bad_item", "conv_again",
	"incomplete",
}

// Action is what libpam does with a module's return value. Positive
// values are jumps over that many following modules.
type Action int

// Actions (libpam's _PAM_ACTION_*).
const (
	ActIgnore Action = 0
	ActOK     Action = -1
	ActDone   Action = -2
	ActBad    Action = -3
	ActDie    Action = -4
	ActReset  Action = -5
	actUndef  Action = -6
)

// Actions maps every PAM return value to an action.
type Actions [numReturnValues]Action

// The four keywords, as libpam expands them (pam_handlers.c).
func keywordActions(k string) (Actions, bool) {
	var a Actions
	set := func(def Action, m map[int]Action) Actions {
		for i := range a {
			a[i] = def
		}
		for k, v := range m {
			a[k] = v
		}
		return a
	}
	const newAuthtokReqd = 12
	switch strings.ToLower(k) {
	case "required":
		return set(ActBad, map[int]Action{pamSuccess: ActOK, newAuthtokReqd: ActOK, pamIgnore: ActIgnore}), true
	case "requisite":
		return set(ActDie, map[int]Action{pamSuccess: ActOK, newAuthtokReqd: ActOK, pamIgnore: ActIgnore}), true
	case "sufficient":
		return set(ActIgnore, map[int]Action{pamSuccess: ActDone, newAuthtokReqd: ActDone}), true
	case "optional":
		return set(ActIgnore, map[int]Action{pamSuccess: ActOK, newAuthtokReqd: ActOK}), true
	}
	return a, false
}

// ParseControl parses a control field: a keyword or "[value=action …]".
// Like libpam, an unnamed value falls back to "default", and an absent
// "default" means bad.
func ParseControl(s string) (Actions, error) {
	if !strings.HasPrefix(s, "[") {
		if a, ok := keywordActions(s); ok {
			return a, nil
		}
		return Actions{}, fmt.Errorf("unknown control %q", s)
	}
	if !strings.HasSuffix(s, "]") {
		return Actions{}, fmt.Errorf("control %q: no closing ]", s)
	}
	var a Actions
	for i := range a {
		a[i] = actUndef
	}
	def := ActBad
	for _, tok := range strings.Fields(s[1 : len(s)-1]) {
		k, v, ok := strings.Cut(tok, "=")
		if !ok {
			return Actions{}, fmt.Errorf("control %q: %q is not value=action", s, tok)
		}
		var act Action
		switch strings.ToLower(v) {
		case "ignore":
			act = ActIgnore
		case "ok":
			act = ActOK
		case "done":
			act = ActDone
		case "bad":
			act = ActBad
		case "die":
			act = ActDie
		case "reset":
			act = ActReset
		default:
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > MaxEntries {
				return Actions{}, fmt.Errorf("control %q: unknown action %q", s, v)
			}
			act = Action(n)
		}
		k = strings.ToLower(k)
		if k == "default" {
			def = act
			continue
		}
		i := returnIndex(k)
		if i < 0 {
			return Actions{}, fmt.Errorf("control %q: unknown value %q", s, k)
		}
		a[i] = act
	}
	for i := range a {
		if a[i] == actUndef {
			a[i] = def
		}
	}
	return a, nil
}

func returnIndex(name string) int {
	for i, n := range returnNames {
		if n == name {
			return i
		}
	}
	return -1
}

// LineKind says what a pam.d line does.
type LineKind int

// Line kinds.
const (
	KindModule    LineKind = iota // TYPE CONTROL MODULE [ARGS]
	KindInclude                   // TYPE include FILE
	KindSubstack                  // TYPE substack FILE
	KindAtInclude                 // @include FILE (every type)
)

// Line is one logical line of a pam.d file.
type Line struct {
	No       int // first physical line, from 1
	Kind     LineKind
	Type     string // lower case: auth, account, password, session; "" for @include
	Dash     bool   // "-auth": libpam does not log a module it cannot load (it still counts)
	Control  string
	Actions  Actions
	Module   string // module path or name, or the included file
	Args     []string
	Err      error // the line does not parse; libpam makes it a module that always fails
	TooLarge bool  // the line was longer than MaxLineLen
}

// ParseFile parses the bytes of one pam.d file: comments ('#' to the end
// of the line), backslash-newline continuations, '[…]' groups (control
// and arguments) that may hold spaces and '\]'. Unparsable lines come back
// with Err set rather than dropped: libpam turns them into entries that
// always fail, so they matter for the stack rule.
func ParseFile(b []byte) ([]Line, error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%d bytes; at most %d", len(b), MaxFileSize)
	}
	var out []Line
	no, next := 0, 1
	var logical []byte
	tooLarge := false
	flush := func() {
		start := next
		defer func() { logical, tooLarge = logical[:0], false }()
		if tooLarge {
			out = append(out, Line{No: start, TooLarge: true, Err: fmt.Errorf("line longer than %d bytes", MaxLineLen)})
			return
		}
		if l, ok := parseLine(string(logical)); ok {
			l.No = start
			out = append(out, l)
		}
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		var phys []byte
		if i < 0 {
			phys, b = b, nil
		} else {
			phys, b = b[:i], b[i+1:]
		}
		no++
		// libpam handles lines as C strings: a NUL ends the line.
		if j := bytes.IndexByte(phys, 0); j >= 0 {
			phys = phys[:j]
		}
		if len(logical) == 0 {
			next = no
		}
		cont := bytes.HasSuffix(phys, []byte{'\\'})
		if cont {
			phys = phys[:len(phys)-1]
		}
		if len(logical)+len(phys) > MaxLineLen {
			tooLarge = true
		} else if !tooLarge {
			if len(logical) > 0 {
				logical = append(logical, ' ')
			}
			logical = append(logical, phys...)
		}
		if !cont {
			flush()
		}
	}
	if len(logical) > 0 || tooLarge {
		flush()
	}
	return out, nil
}

// parseLine parses one logical line; ok is false for blank lines and
// comments.
func parseLine(s string) (Line, bool) {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	toks, err := tokenize(s)
	if len(toks) == 0 && err == nil {
		return Line{}, false
	}
	var l Line
	if err != nil {
		l.Err = err
		return l, true
	}
	if strings.EqualFold(toks[0], "@include") {
		l.Kind = KindAtInclude
		if len(toks) < 2 {
			l.Err = errors.New("@include without a file")
		} else {
			l.Module = toks[1]
		}
		return l, true
	}
	t := strings.ToLower(toks[0])
	if strings.HasPrefix(t, "-") {
		l.Dash, t = true, t[1:]
	}
	l.Type = t
	switch t {
	case "auth", "account", "password", "session":
	default:
		// libpam installs a line of unknown type as an auth entry that
		// always fails (the most sensitive type).
		l.Type = ""
		l.Err = fmt.Errorf("unknown type %q", toks[0])
		return l, true
	}
	if len(toks) < 3 {
		l.Err = errors.New("too few fields (want TYPE CONTROL MODULE)")
		return l, true
	}
	l.Control, l.Module, l.Args = toks[1], toks[2], toks[3:]
	switch strings.ToLower(l.Control) {
	case "include":
		l.Kind = KindInclude
		return l, true
	case "substack":
		l.Kind = KindSubstack
		return l, true
	}
	l.Actions, l.Err = ParseControl(l.Control)
	return l, true
}

// pamBlanks separate the fields of a PAM line. Every offset computed on a
// line (the rewrite finds the control field by bytes) must use this same set,
// or a line that tokenizes one way is cut another way.
const pamBlanks = " \t\r\v\f"

// tokenize splits on blanks, keeping "[…]" groups whole ("\]" inside a
// group is a literal "]").
func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		if strings.IndexByte(pamBlanks, c) >= 0 {
			i++
			continue
		}
		start := i
		if c == '[' {
			var sb strings.Builder
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\\' && i+1 < len(s) && s[i+1] == ']' {
					sb.WriteByte(']')
					i += 2
					continue
				}
				if s[i] == ']' {
					closed = true
					i++
					break
				}
				sb.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("unclosed [ at column %d", start+1)
			}
			// A control group keeps its brackets so ParseControl sees it.
			if len(toks) == 1 {
				toks = append(toks, "["+sb.String()+"]")
			} else {
				toks = append(toks, sb.String())
			}
			continue
		}
		for i < len(s) && strings.IndexByte(pamBlanks, s[i]) < 0 {
			i++
		}
		toks = append(toks, s[start:i])
	}
	return toks, nil
}

// Entry is one element of a service's expanded auth stack, as libpam
// builds it: included files are flattened at the same level, a substack
// is a marker at the parent's level followed by its entries one level
// deeper.
type Entry struct {
	Level       int
	Substack    bool // marker only
	Actions     Actions
	Module      string
	Args        []string
	Dash        bool
	AlwaysFails bool // the line did not parse, or its include is missing
	File        string
	Line        int
	Problem     string // why AlwaysFails
}

// Denies reports whether the entry is pam_deny.so (not a -auth line).
func (e Entry) Denies() bool {
	return !e.Substack && !e.Dash && !e.AlwaysFails && path.Base(e.Module) == "pam_deny.so"
}

// Mamori reports whether the entry is pam_mamori.so.
func (e Entry) Mamori() bool { return !e.Substack && path.Base(e.Module) == ModuleMamori }

// Stack is one service's auth stack.
type Stack struct {
	Service  string
	File     string // the file that was read (the service's, or "other")
	Entries  []Entry
	Problems []string // unreadable includes, unparsable lines, loops
}

// ConfDir is where services live, relative to the root. libpam also
// reads DistConfDir (its PAM_CONFIG_DIST_D) for a name /etc/pam.d lacks.
const (
	ConfDir     = "etc/pam.d"
	DistConfDir = "usr/lib/pam.d"
)

// LoadStack reads service's auth stack from fsys (a root directory, e.g.
// os.DirFS("/")), following include, substack and @include. A service
// without a file uses "other", as libpam does. Problems do not stop the
// reading: each becomes an entry that always fails, as in libpam, and is
// listed in Problems. err is set only when nothing could be read.
func LoadStack(fsys fs.FS, service string) (*Stack, error) {
	if !validName(service) {
		return nil, fmt.Errorf("service name %q is not a file name", service)
	}
	st := &Stack{Service: service}
	f, ok := lookupConf(fsys, service)
	if !ok {
		if f, ok = lookupConf(fsys, "other"); !ok {
			return nil, fmt.Errorf("no /%s/%s and no /%s/other: libpam refuses every login", ConfDir, service, ConfDir)
		}
	}
	st.File = f
	if err := st.load(fsys, st.File, 0, 0, nil); err != nil {
		return nil, err
	}
	return st, nil
}

// lookupConf finds a service or include name the way libpam does:
// /etc/pam.d first, then /usr/lib/pam.d.
func lookupConf(fsys fs.FS, name string) (string, bool) {
	for _, d := range []string{ConfDir, DistConfDir} {
		p := path.Join(d, name)
		if _, err := fs.Stat(fsys, p); err == nil {
			return p, true
		}
	}
	return path.Join(ConfDir, name), false
}

func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00") && fs.ValidPath(s)
}

// resolveInclude maps an include argument to a path in fsys: absolute
// paths are taken under the root, others are looked up like a service.
// Unlike libpam, a name with "/" or ".." in it is refused (reported as a
// broken line) rather than followed out of the PAM directory.
func resolveInclude(fsys fs.FS, name string) (string, bool) {
	var p string
	if strings.HasPrefix(name, "/") {
		p = path.Clean(strings.TrimLeft(name, "/"))
	} else {
		if !validName(name) {
			return "", false
		}
		p, _ = lookupConf(fsys, name)
	}
	return p, fs.ValidPath(p) && p != "."
}

func (st *Stack) load(fsys fs.FS, file string, include, level int, chain []string) error {
	for _, c := range chain {
		if c == file {
			return fmt.Errorf("include loop: %s → %s", strings.Join(chain, " → "), file)
		}
	}
	chain = append(chain, file)
	if include > MaxLevel || level > MaxLevel {
		return fmt.Errorf("includes nested deeper than %d: %s", MaxLevel, strings.Join(chain, " → "))
	}
	b, err := readLimited(fsys, file)
	if err != nil {
		return err
	}
	lines, err := ParseFile(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	fail := func(l Line, why string) {
		st.Problems = append(st.Problems, fmt.Sprintf("%s:%d: %s", file, l.No, why))
		var bad Actions
		for i := range bad {
			bad[i] = ActBad
		}
		st.add(Entry{Level: level, Actions: bad, AlwaysFails: true, File: file, Line: l.No, Problem: why})
	}
	for _, l := range lines {
		if len(st.Entries) > MaxEntries {
			return fmt.Errorf("more than %d auth entries", MaxEntries)
		}
		if l.Err != nil {
			// libpam ignores lines of other types only when it can tell
			// their type; an unknown line makes a failing entry.
			if l.Type == "" || l.Type == "auth" || l.TooLarge {
				fail(l, l.Err.Error())
			}
			continue
		}
		if l.Kind != KindAtInclude && l.Type != "auth" {
			continue
		}
		switch l.Kind {
		case KindModule:
			st.add(Entry{Level: level, Actions: l.Actions, Module: l.Module, Args: l.Args, Dash: l.Dash, File: file, Line: l.No})
		case KindInclude, KindAtInclude, KindSubstack:
			p, ok := resolveInclude(fsys, l.Module)
			if !ok {
				fail(l, fmt.Sprintf("include %q is not a usable path", l.Module))
				continue
			}
			lv := level
			if l.Kind == KindSubstack {
				st.add(Entry{Level: level, Substack: true, Module: l.Module, File: file, Line: l.No})
				lv++
			}
			if err := st.load(fsys, p, include+1, lv, chain); err != nil {
				fail(l, err.Error())
			}
		}
	}
	return nil
}

func (st *Stack) add(e Entry) { st.Entries = append(st.Entries, e) }

func readLimited(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileSize+1)); err != nil {
		return nil, err
	}
	if buf.Len() > MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, MaxFileSize)
	}
	return buf.Bytes(), nil
}
