package loginmfa

import (
	"fmt"
	"path"
	"strings"
)

// The stack rule.
//
// pam_mamori.so is "required" in a service's auth stack when no way
// through the stack ends in PAM_SUCCESS while pam_mamori.so fails. The
// check runs libpam's own dispatch algorithm (pam_dispatch.c,
// _pam_dispatch_aux: impression and status, ok/done/bad/die/ignore/reset,
// jumps that count a substack as one module and fail the stack when they
// run past its end, done and die that end only the current substack) over every combination of return values: every
// other module may return anything, and pam_mamori.so may return any
// failure code (we do not rely on which one it uses; it never returns
// PAM_IGNORE, which `required` would ignore). If any
// combination authenticates, the verdict names it.
//
// So `required`, `requisite` and `[success=ok default=die]` count;
// `sufficient`/`optional` do not; a `sufficient` module earlier in the
// stack that can end it with success (pam_rootok in su, for one) makes the
// service not covered; a `[success=N]` jump over the module, a `-auth`
// line, a `reset` after it — all are caught by the same search, not by a
// list of patterns.
//
// One module's behaviour is taken as known: pam_deny.so returns
// PAM_AUTH_ERR and nothing else (that is all it does). RHEL's authselect
// profiles end every way that is not a first factor's success in
// `required pam_deny.so`, so without this every such profile has a way
// through "if pam_deny.so succeeded". A `-auth` pam_deny.so line (which
// libpam skips when the module is missing) is not taken as known.

// Verdict is the rule's answer for one stack.
type Verdict struct {
	Present  bool   // pam_mamori.so is in the auth stack
	Required bool   // no way through the stack succeeds unless it does
	Bypass   string // when Present and not Required: a way around it
}

const (
	impUndef uint8 = iota
	impPositive
	impNegative
)

const (
	stSuccess uint8 = iota
	stIgnore
	stFail
)

// maxStates bounds the search; a stack that needs more is reported as
// not covered rather than searched without end.
const maxStates = 1 << 16

type evalState struct {
	pos, prev   int
	imp, status uint8
	saved       [MaxLevel + 2]uint8 // impression*3+status on entering each substack level
}

type step struct {
	entry  int
	retval int
	action Action
}

type evaluator struct {
	entries []Entry
	seen    map[evalState]bool
	path    []step
	tooBig  bool
}

// Evaluate applies the stack rule to a stack's entries.
func Evaluate(entries []Entry) Verdict {
	v := Verdict{}
	for _, e := range entries {
		if e.Mamori() {
			v.Present = true
		}
	}
	if !v.Present {
		return v
	}
	ev := &evaluator{entries: entries, seen: map[evalState]bool{}}
	start := evalState{imp: impUndef, status: stFail}
	start.saved[0] = impUndef*3 + stFail // libpam's substates[0]: the initial state
	if ev.run(start) {
		v.Bypass = ev.describe()
		return v
	}
	if ev.tooBig {
		v.Bypass = "the stack is too complex to check"
		return v
	}
	v.Required = true
	return v
}

func class(retval int) uint8 {
	switch retval {
	case pamSuccess:
		return stSuccess
	case pamIgnore:
		return stIgnore
	}
	return stFail
}

// outcomes lists the (return value, action) pairs an entry can produce,
// one per distinct effect.
func (ev *evaluator) outcomes(e Entry) []step {
	var out []step
	seen := map[[2]int]bool{}
	for r := range numReturnValues {
		if r == pamIncomplete {
			continue
		}
		if e.Mamori() && (r == pamSuccess || r == pamIgnore) {
			continue // the module is assumed to refuse: any failure code
		}
		a := e.Actions[r]
		if e.Denies() && r != pamAuthErr {
			continue // pam_deny.so returns PAM_AUTH_ERR, nothing else
		}
		if e.AlwaysFails {
			if r != 6 { // PAM_MUST_FAIL_CODE is PAM_PERM_DENIED
				continue
			}
			a = ActBad
		}
		k := [2]int{int(class(r)), int(a)}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, step{retval: r, action: a})
	}
	return out
}

// endOfLevel is the last entry at or below level from pos on.
func (ev *evaluator) endOfLevel(pos, level int) int {
	h := pos
	for h+1 < len(ev.entries) && ev.entries[h+1].Level >= level {
		h++
	}
	return h
}

// run reports whether a success is reachable from st.
func (ev *evaluator) run(st evalState) bool {
	if st.pos >= len(ev.entries) {
		return st.imp == impPositive && st.status == stSuccess
	}
	e := ev.entries[st.pos]
	lv := e.Level
	if lv > MaxLevel {
		ev.tooBig = true
		return false
	}
	if st.prev < lv {
		st.saved[lv] = st.imp*3 + st.status
	}
	if ev.seen[st] {
		return false
	}
	if len(ev.seen) >= maxStates {
		ev.tooBig = true
		return false
	}
	ev.seen[st] = true
	if e.Substack {
		n := st
		n.prev, n.pos = lv, st.pos+1
		return ev.run(n)
	}
	for _, o := range ev.outcomes(e) {
		n := st
		n.prev = lv
		n.pos = st.pos + 1
		switch a := o.action; {
		case a == ActReset:
			n.imp, n.status = st.saved[lv]/3, st.saved[lv]%3
		case a == ActOK || a == ActDone:
			// libpam skips PAM_IGNORE here only when replaying a cached
			// chain (setcred); authentication defines the chain, so an
			// ignored-as-ok module makes the status PAM_IGNORE.
			if n.imp == impUndef || (n.imp == impPositive && n.status == stSuccess) {
				n.imp, n.status = impPositive, class(o.retval)
			}
			if n.imp != impNegative && a == ActDone {
				n.pos = ev.endOfLevel(st.pos, lv) + 1
			}
		case a == ActBad || a == ActDie:
			if n.imp != impNegative {
				n.imp, n.status = impNegative, stFail
			}
			if a == ActDie {
				n.pos = ev.endOfLevel(st.pos, lv) + 1
			}
		case a == ActIgnore:
		case a > 0:
			h, k := st.pos, int(a)
			for ; h+1 < len(ev.entries) && ev.entries[h+1].Level >= lv && k > 0; k-- {
				h++
				for h+1 < len(ev.entries) && ev.entries[h+1].Level > lv {
					h++
				}
			}
			n.pos = h + 1
			if k > 0 {
				// A jump past the end of its (sub)stack is a "bad jump":
				// libpam fails the stack.
				n.imp, n.status = impNegative, stFail
			}
		}
		o.entry = st.pos
		ev.path = append(ev.path, o)
		if ev.run(n) {
			return true
		}
		ev.path = ev.path[:len(ev.path)-1]
	}
	return false
}

func actionName(a Action) string {
	switch a {
	case ActIgnore:
		return "ignore"
	case ActOK:
		return "ok"
	case ActDone:
		return "done"
	case ActBad:
		return "bad"
	case ActDie:
		return "die"
	case ActReset:
		return "reset"
	}
	return fmt.Sprintf("jump %d", int(a))
}

// describe renders the succeeding path: the steps that decide it.
func (ev *evaluator) describe() string {
	var parts []string
	for _, s := range ev.path {
		e := ev.entries[s.entry]
		if !e.Mamori() && s.action == ActIgnore {
			continue
		}
		if !e.Mamori() && s.action == ActOK && s.retval == pamSuccess {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s:%d %s %s→%s", path.Base(e.File), e.Line, path.Base(e.Module),
			returnNames[s.retval], actionName(s.action)))
	}
	if len(parts) == 0 {
		return "succeeds without pam_mamori.so"
	}
	if len(parts) > 6 {
		parts = append(parts[:6], "…")
	}
	return "succeeds without pam_mamori.so: " + strings.Join(parts, "; ")
}
