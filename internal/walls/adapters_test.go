package walls

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The front ends are adapters: every operator action, and every append to
// the audit log, goes through server/admin, so the console and
// AdminService cannot drift apart again. This test holds them to it by
// type-checking their (non-test) source and listing every method of a
// server/store interface they reference: each must be a read, or one of
// the few writes named below with the reason it is not an operator action.
// A new store method is neither until it is listed here, so a write cannot
// slip in as an unclassified name.

// storeReads are the store methods that only read.
var storeReads = set(
	"CheckToken", "ControlHistory", "CountByControl", "CountEvents", "CountFleet", "CountFleetByGroup", "CountOperators",
	"CountSent", "CurrentPolicy", "DailySnapshots", "DeviceCredential", "DeviceFacets", "DeviceGroup", "EKApproved", "FindDevice",
	"GetDevice", "GetIncident", "GetOperator", "HistoryForDevices", "Incidents", "Ledger", "AuditHead", "ListAudit", "ListAuditPage",
	"ListApprovedEKs", "ListDevicePage", "ListDevices", "ListEvents", "ListExceptions", "ListFileLog", "ListOperators", "MFAGeneration", "MFALoginStates", "MFATempCodes",
	"MFAUnlocks", "MFAUsers", "OperatorByTokenHash", "OperatorLogin", "PolicyHistory", "SearchDevices", "ListOperatorTokens",
	"SearchTerms", "Session",
)

// storeWrites are the rest of the store's methods: only server/admin, the
// ingest and incident pipelines and the backends call them, except as
// adapterWrites allows.
var storeWrites = set(
	"AppendAudit", "ApproveClone", "ApproveEK", "ClaimNotifications", "ConsumeMFACodes", "CreateException", "CreateOperator",
	"CreateSession", "CreateToken", "DeleteMFAUser", "DeleteSession", "DisableOperator", "EndSessions",
	"Enroll", "FinishNotification", "ImportMFAUsers", "IngestReports", "LoginFailed", "LoginSucceeded",
	"PutDailySnapshot", "PutMFATempCode", "PutMFAUser", "RecordEnrollFailure", "RecordMFALogins", "Renew", "ReplaceLedger", "ResetLockout",
	"RevokeDevice", "RevokeException", "SetDeviceGroup", "SetOperatorLogin", "SetPolicy", "TouchSession",
	"TouchDevices", "TransitionIncident", "UnlockMFAUser", "Watch", "CreateOperatorToken", "RevokeOperatorToken", "UseOperatorToken",
)

// adapterWrites are the writes an adapter may make itself, and why.
var adapterWrites = map[string]map[string]bool{
	// The agent service's own writes: what a terminal does (enrol, renew
	// its certificate, report one-time codes it accepted and the steps,
	// failures and lock-outs of its logins) and the record of an
	// enrolment refused for its token (admission), not an operator's
	// action. Their audit records still go through admin.
	// UseOperatorToken: the authentication of an admin call records the
	// token's last use (at most once a minute), as the console's session
	// bookkeeping does; the bootstrap token's single use is spent through
	// admin (CreateOperatorToken), audited.
	mod + "server/api": set("Enroll", "Renew", "ConsumeMFACodes", "RecordMFALogins", "RecordEnrollFailure", "UseOperatorToken"),
	// The console's sign-in bookkeeping: sessions and failed-login
	// counters are the console's authentication, not operator actions
	// (their audit records go through admin).
	mod + "server/web": set("CreateSession", "TouchSession", "DeleteSession", "LoginFailed", "LoginSucceeded"),
}

// storeFuncs are server/store functions the adapters must not call: an
// audit record rides into a transaction only through admin (the agent
// service may still amend the record admin attached: AmendAudit,
// AuditField).
var storeFuncs = set("WithAudit", "ClaimAudit")

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

type listed struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Export     string
}

func TestAdaptersWriteThroughAdmin(t *testing.T) {
	adapters := []string{mod + "server/api", mod + "server/web"}
	cmd := exec.Command("go", append([]string{"list", "-export", "-deps", "-json"}, adapters...)...)
	cmd.Dir = "../.."
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	for name := range storeReads {
		if storeWrites[name] {
			t.Errorf("%s is listed as a read and as a write", name)
		}
	}
	for _, path := range adapters {
		t.Run(strings.TrimPrefix(path, mod), func(t *testing.T) {
			refs := storeRefs(t, pkgs, path)
			if len(refs) == 0 {
				t.Fatal("found no store method at all: the check is broken")
			}
			names := make([]string, 0, len(refs))
			for n := range refs {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				where := refs[n]
				fn, isFunc := strings.CutPrefix(n, "store.")
				switch {
				case isFunc && storeFuncs[fn]:
					t.Errorf("%s calls %s (%s): audit records go through server/admin", path, n, where)
				case isFunc:
				case storeReads[n], adapterWrites[path][n]:
				case storeWrites[n]:
					t.Errorf("%s calls the store's %s (%s): operator actions write through server/admin", path, n, where)
				default:
					t.Errorf("%s calls the store's %s (%s), which this test does not know: list it as a read or a write", path, n, where)
				}
			}
		})
	}
}

// storeRefs type-checks the package at path from source, its imports from
// export data, and returns every method of the store.Store interface (on
// any of its smaller interfaces, or on a type that has it) and every
// function of server/store that it references, with one place each.
func storeRefs(t *testing.T, pkgs map[string]listed, path string) map[string]string {
	p, ok := pkgs[path]
	if !ok {
		t.Fatalf("go list did not list %s", path)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, f := range p.GoFiles {
		af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, af)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		dep, ok := pkgs[path]
		if !ok || dep.Export == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(dep.Export)
	})
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
	if _, err := (&types.Config{Importer: imp}).Check(path, fset, files, info); err != nil {
		t.Fatalf("type-check %s: %v", path, err)
	}
	storePkg := mod + "server/store"
	var storeMethods map[string]bool
	for _, imp := range pkgImports(info) {
		if imp.Path() != storePkg {
			continue
		}
		iface, ok := imp.Scope().Lookup("Store").Type().Underlying().(*types.Interface)
		if !ok {
			t.Fatal("store.Store is not an interface")
		}
		storeMethods = map[string]bool{}
		for m := range iface.Methods() {
			storeMethods[m.Name()] = true
		}
	}
	if storeMethods == nil {
		t.Fatalf("%s does not import server/store", path)
	}
	refs := map[string]string{}
	note := func(name string, pos token.Pos) {
		if _, ok := refs[name]; !ok {
			refs[name] = fset.Position(pos).String()
		}
	}
	for sel, s := range info.Selections {
		fn, ok := s.Obj().(*types.Func)
		if !ok || !storeMethods[fn.Name()] {
			continue
		}
		// A method named like one of the store's, on an interface or type
		// of server/store or of the adapter itself (its Store interface).
		if p := fn.Pkg(); p != nil && (p.Path() == storePkg || p.Path() == path) {
			note(fn.Name(), sel.Sel.Pos())
		}
	}
	for id, obj := range info.Uses {
		fn, ok := obj.(*types.Func)
		if !ok || fn.Pkg() == nil || fn.Pkg().Path() != storePkg || fn.Type().(*types.Signature).Recv() != nil {
			continue
		}
		note("store."+fn.Name(), id.Pos())
	}
	return refs
}

// pkgImports are the packages the checked package's files refer to.
func pkgImports(info *types.Info) []*types.Package {
	seen := map[*types.Package]bool{}
	var out []*types.Package
	for _, obj := range info.Uses {
		if pn, ok := obj.(*types.PkgName); ok && !seen[pn.Imported()] {
			seen[pn.Imported()] = true
			out = append(out, pn.Imported())
		}
	}
	return out
}
