package credprov

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mamori-dev/mamori/internal/testenv"
)

// sdkTable is testdata/sdk_credentialprovider.txt, parsed.
type sdkTable struct {
	ifaces  []sdkIface
	enums   [][2]string // name, value
	structs [][3]string // struct, field, offset
}

type sdkIface struct {
	name, iid string
	methods   []string
}

func readSDKTable(t *testing.T) sdkTable {
	t.Helper()
	f, err := os.Open("testdata/sdk_credentialprovider.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tab sdkTable
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		w := strings.Fields(line)
		switch {
		case len(w) == 0 || strings.HasPrefix(w[0], "#"):
		case w[0] == "interface" && len(w) == 3:
			tab.ifaces = append(tab.ifaces, sdkIface{name: w[1], iid: w[2]})
		case w[0] == "enum" && len(w) == 3:
			tab.enums = append(tab.enums, [2]string{w[1], w[2]})
		case w[0] == "struct" && len(w) == 4:
			tab.structs = append(tab.structs, [3]string{w[1], w[2], w[3]})
		case strings.HasPrefix(line, "  ") && len(tab.ifaces) > 0:
			i := &tab.ifaces[len(tab.ifaces)-1]
			i.methods = append(i.methods, w...)
		default:
			t.Fatalf("sdk table: cannot read %q", line)
		}
	}
	if len(tab.ifaces) != 5 || len(tab.enums) == 0 || len(tab.structs) == 0 {
		t.Fatalf("sdk table incomplete: %d interfaces", len(tab.ifaces))
	}
	return tab
}

// TestVtableLayout pins src/cpdefs.h to the SDK's ABI: every method's
// vtable slot (offsetof in the vtable struct = index × pointer size), no
// slot more or less (sizeof), the enum values and the structures' field
// offsets — checked by the mingw compiler itself on a generated file of
// _Static_asserts, so a method declared out of order fails here, not in
// LogonUI.
func TestVtableLayout(t *testing.T) {
	tab := readSDKTable(t)
	cc := testenv.LookPath(t, CC, "gcc-mingw-w64-x86-64")
	var b strings.Builder
	b.WriteString("#include <stddef.h>\n#include \"cpdefs.h\"\n")
	n := 0
	for _, i := range tab.ifaces {
		for slot, m := range i.methods {
			fmt.Fprintf(&b, "_Static_assert(offsetof(%sVtbl, %s) == %d * sizeof(void *), \"%s::%s is not slot %d\");\n",
				i.name, m, slot, i.name, m, slot)
			n++
		}
		fmt.Fprintf(&b, "_Static_assert(sizeof(%sVtbl) == %d * sizeof(void *), \"%s has not %d slots\");\n",
			i.name, len(i.methods), i.name, len(i.methods))
	}
	for _, e := range tab.enums {
		fmt.Fprintf(&b, "_Static_assert(%s == %s, \"%s\");\n", e[0], e[1], e[0])
	}
	for _, s := range tab.structs {
		fmt.Fprintf(&b, "_Static_assert(offsetof(%s, %s) == %s, \"%s.%s\");\n", s[0], s[1], s[2], s[0], s[1])
	}
	src := filepath.Join(t.TempDir(), "layout.c")
	if err := os.WriteFile(src, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	inc, _ := filepath.Abs("src")
	out, err := exec.CommandContext(context.Background(), cc, "-fsyntax-only", "-Wall", "-Werror", "-I", inc, src).CombinedOutput()
	if err != nil {
		t.Fatalf("cpdefs.h does not match the SDK's layout:\n%s", out)
	}
	t.Logf("%d vtable slots in %d interfaces, %d enum values, %d structure fields match the SDK", n, len(tab.ifaces), len(tab.enums), len(tab.structs))
}

var guidRE = regexp.MustCompile(`MAMORI_GUID\((\w+),\s*0x([0-9a-fA-F]{8}),\s*0x([0-9a-fA-F]{4}),\s*0x([0-9a-fA-F]{4}),((?:\s*0x[0-9a-fA-F]{2},?){8})\)`)

// declaredGUIDs reads every MAMORI_GUID in a C file as name → canonical
// lower-case GUID string.
func declaredGUIDs(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range guidRE.FindAllStringSubmatch(string(b), -1) {
		var bs []string
		for _, x := range strings.Split(m[5], ",") {
			x = strings.TrimSpace(x)
			if x == "" {
				continue
			}
			v, err := strconv.ParseUint(strings.TrimPrefix(x, "0x"), 16, 8)
			if err != nil {
				t.Fatalf("%s: %v", m[1], err)
			}
			bs = append(bs, fmt.Sprintf("%02x", v))
		}
		if len(bs) != 8 {
			t.Fatalf("%s: %d bytes", m[1], len(bs))
		}
		out[m[1]] = strings.ToLower(fmt.Sprintf("%s-%s-%s-%s-%s", m[2], m[3], m[4], strings.Join(bs[:2], ""), strings.Join(bs[2:], "")))
	}
	if got := strings.Count(string(b), "\nMAMORI_GUID("); got != len(out) {
		t.Fatalf("%s: %d MAMORI_GUID lines but %d readable ones", file, got, len(out))
	}
	return out
}

// TestIIDs: each interface's IID in cpdefs.h is the SDK's.
func TestIIDs(t *testing.T) {
	tab := readSDKTable(t)
	got := declaredGUIDs(t, "src/cpdefs.h")
	for _, i := range tab.ifaces {
		if g := got["MAMORI_IID_"+i.name]; g != i.iid {
			t.Errorf("IID of %s: cpdefs.h has %q, the SDK %q", i.name, g, i.iid)
		}
	}
}
