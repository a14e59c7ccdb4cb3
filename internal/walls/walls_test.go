package walls

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/mamori-dev/mamori/"

// rule: no package matching from may depend (transitively) on a package
// with one of the forbidden prefixes. An entry ending in "$" matches that
// package exactly: database/sql (a database) is forbidden to the agent,
// database/sql/driver (interfaces that google/uuid implements) is not.
type rule struct {
	from      string
	forbidden []string
}

var rules = []rule{
	{"./agent/...", []string{mod + "server/", "modernc.org/sqlite", "github.com/jackc/pgx", "database/sql$"}},
	{"./server/...", []string{mod + "agent/", "golang.org/x/sys/windows/registry", "github.com/kardianos/service"}},
	{"./internal/...", []string{mod + "agent/", mod + "server/"}},
	{"./proto/...", []string{mod + "agent/", mod + "server/", mod + "internal/"}},
	// mamorictl talks to the server only over AdminService: it verifies the
	// audit chain with server/audit, never by linking the store.
	{"./server/ctl/...", []string{mod + "server/store"}},
	// The audit record and its verifier stand alone (mamorictl links them).
	{"./server/audit/...", []string{mod + "server/"}},
}

func TestPackageWalls(t *testing.T) {
	for _, goos := range []string{"linux", "windows"} {
		for _, r := range rules {
			t.Run(goos+" "+r.from, func(t *testing.T) {
				cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, r.from)
				cmd.Dir = "../.." // the module root
				cmd.Env = append(cmd.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
				out, err := cmd.CombinedOutput()
				if err != nil {
					if len(out) > 2000 {
						out = out[len(out)-2000:]
					}
					t.Fatalf("go list %s: %v\n…%s", r.from, err, out)
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if len(lines) == 0 || lines[0] == "" {
					t.Fatalf("go list %s listed no packages", r.from)
				}
				for _, line := range lines {
					fields := strings.Fields(line)
					for _, dep := range fields[1:] {
						for _, f := range r.forbidden {
							exact, isExact := strings.CutSuffix(f, "$")
							if isExact && dep == exact || !isExact && strings.HasPrefix(dep, f) {
								t.Errorf("%s depends on %s: that crosses a wall (%s must not reach %s)", fields[0], dep, r.from, f)
							}
						}
					}
				}
			})
		}
	}
}
