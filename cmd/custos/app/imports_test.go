package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// This file is the source of truth for docs/architecture.md's "Who may
// import whom": every rule there is a row of rules, checked against the
// module's real import graph by TestImportRules.

const module = "github.com/custos-pam/custos"

// rule forbids the packages of one tree to depend on the given prefixes.
// A prefix without a dot is a path inside this module.
type rule struct {
	// tree is the package tree the rule binds (the package and those
	// under it).
	tree string
	// forbidden are import path prefixes the tree may not reach, directly
	// or through any other package.
	forbidden []string
	// tests also checks what the tree's tests import, directly or
	// through other packages.
	tests bool
	// testsMayImport are forbidden prefixes the tree's tests may still
	// reach. Default: none.
	testsMayImport []string
	why            string
}

var rules = []rule{
	{tree: "broker", forbidden: []string{"protocols", "recorder", "approvals", "web", "cmd"}, tests: true,
		why: "the domain core knows no wire, recording, channel or HTTP; cmd/custos/app wires them to it"},
	{tree: "protocols", forbidden: []string{"approvals", "web", "cmd", "broker/creds/vault", "github.com/hashicorp/vault"}, tests: true,
		testsMayImport: []string{"github.com/hashicorp/vault"},
		why:            "a proxy declares the interfaces it needs (authorize, credentials, recording); cmd/custos/app passes the implementations (its tests record through a real recorder, whose key wrapping includes Vault Transit)"},
	{tree: "recorder", forbidden: []string{"broker/store", "broker/config", "approvals", "web", "protocols", "cmd"}, tests: true,
		testsMayImport: []string{"broker/store"},
		why:            "the recorder declares its audit and session index interfaces; cmd/custos/app reads the config and passes the store (its tests use a real store)"},
	{tree: "approvals", forbidden: []string{"web", "protocols", "recorder", "cmd"}, tests: true,
		why: "an approval channel calls the access service; cmd/custos/app mounts its HTTP handler"},
	{tree: "web", forbidden: []string{"approvals", "protocols", "cmd"}, tests: true,
		why: "the HTTP server calls broker services and the recorder; cmd/custos/app mounts other handlers and passes the terminator"},
}

// known are violations being removed, each allowed by name until it is
// gone; an entry that no longer matches fails the test, so the list only
// shrinks.
var known = []allowance{}

// allowance lets one package (and, for test imports, its tests) depend on
// one forbidden prefix.
type allowance struct{ pkg, dep string }

// pkg is a node of the import graph.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// violation is a forbidden dependency: chain leads from the package to
// the forbidden one; test marks one reached from the package's tests.
type violation struct {
	pkg, dep string
	chain    []string
	test     bool
	why      string
}

func (v violation) String() string {
	via := "imports"
	if v.test {
		via = "test imports"
	}
	s := fmt.Sprintf("%s %s %s", short(v.pkg), via, short(v.dep))
	if len(v.chain) > 2 {
		parts := make([]string, len(v.chain))
		for i, c := range v.chain {
			parts[i] = short(c)
		}
		s += " (" + strings.Join(parts, " → ") + ")"
	}
	return s + ": " + v.why
}

func short(p string) string { return strings.TrimPrefix(p, module+"/") }

// abs turns a module-relative prefix into an import path.
func abs(p string) string {
	if strings.Contains(strings.SplitN(p, "/", 2)[0], ".") {
		return p
	}
	return module + "/" + p
}

func under(path, prefix string) bool {
	prefix = abs(prefix)
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// check returns the violations of rules in graph, less the allowed ones,
// and the allowances that matched nothing.
func check(rules []rule, allowed []allowance, graph map[string]pkg) (bad []violation, stale []allowance) {
	used := make([]bool, len(allowed))
	allow := func(v violation) bool {
		for i, a := range allowed {
			if abs(a.pkg) == v.pkg && under(v.dep, a.dep) {
				used[i] = true
				return true
			}
		}
		return false
	}
	paths := make([]string, 0, len(graph))
	for p := range graph {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, r := range rules {
		for _, p := range paths {
			if !under(p, r.tree) {
				continue
			}
			n := graph[p]
			found := reach(graph, p, n.Imports, r.forbidden, nil)
			if r.tests {
				tests := slices.DeleteFunc(slices.Concat(n.TestImports, n.XTestImports), func(imp string) bool { return imp == p })
				for _, v := range reach(graph, p, tests, r.forbidden, r.testsMayImport) {
					v.test = true
					found = append(found, v)
				}
			}
			for _, v := range found {
				v.why = r.why
				if !allow(v) {
					bad = append(bad, v)
				}
			}
		}
	}
	for i, a := range allowed {
		if !used[i] {
			stale = append(stale, a)
		}
	}
	return bad, stale
}

func forbiddenBy(prefixes []string, path string) bool {
	return slices.ContainsFunc(prefixes, func(f string) bool { return under(path, f) })
}

// reach walks the imports from starts (the imports of from, or of its
// tests) breadth first, through the non-test imports of each package
// reached, and returns each forbidden package reached with the shortest
// chain to it. Packages under exempt are neither reported nor followed.
// The walk does not continue past a forbidden package.
func reach(graph map[string]pkg, from string, starts, forbidden, exempt []string) []violation {
	parent := map[string]string{from: ""}
	var queue, out []violation
	visit := func(imp, by string) {
		if _, seen := parent[imp]; seen || forbiddenBy(exempt, imp) {
			return
		}
		parent[imp] = by
		v := violation{pkg: from, dep: imp}
		if !forbiddenBy(forbidden, imp) {
			queue = append(queue, v)
			return
		}
		for c := imp; c != ""; c = parent[c] {
			v.chain = append(v.chain, c)
		}
		slices.Reverse(v.chain)
		out = append(out, v)
	}
	for _, imp := range starts {
		visit(imp, from)
	}
	for len(queue) > 0 {
		cur := queue[0].dep
		queue = queue[1:]
		for _, imp := range graph[cur].Imports {
			visit(imp, cur)
		}
	}
	return out
}

// moduleGraph lists every package of the module and everything it
// depends on, with their imports.
func moduleGraph(t *testing.T) map[string]pkg {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "list", "-deps", "-json=ImportPath,Imports,TestImports,XTestImports", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	graph := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		graph[p.ImportPath] = p
	}
	for _, want := range []string{"broker/access", "protocols/ssh", "recorder", "approvals/slack", "web/ui"} {
		if _, ok := graph[abs(want)]; !ok {
			t.Fatalf("go list did not see %s", want)
		}
	}
	return graph
}

// TestImportRules checks the module against rules.
func TestImportRules(t *testing.T) {
	bad, stale := check(rules, known, moduleGraph(t))
	for _, v := range bad {
		t.Error(v)
	}
	for _, a := range stale {
		t.Errorf("%s no longer depends on %s: delete its entry from known", a.pkg, a.dep)
	}
}

// TestImportRulesCatchNewImport: adding a forbidden import to the real
// graph, directly or through a package that is itself allowed, fails the
// check.
func TestImportRulesCatchNewImport(t *testing.T) {
	graph := moduleGraph(t)
	// Violations the module has already are TestImportRules' to report.
	before := map[string]bool{}
	bad, _ := check(rules, known, graph)
	for _, v := range bad {
		before[v.String()] = true
	}
	add := func(from, to string, test bool) map[string]pkg {
		g := maps.Clone(graph)
		n := g[abs(from)]
		if test {
			n.XTestImports = append(slices.Clone(n.XTestImports), abs(to))
		} else {
			n.Imports = append(slices.Clone(n.Imports), abs(to))
		}
		g[abs(from)] = n
		return g
	}
	for _, tc := range []struct {
		from, to string
		test     bool
		want     string
	}{
		{"broker/audit", "web", false, "broker/audit imports web"},
		{"protocols/ssh", "recorder/event", false, ""}, // allowed: nothing
		{"recorder/event", "broker/config", false, "recorder/event imports broker/config"},
		{"broker/policy", "recorder/event", false, "broker/policy imports recorder/event"},
		// recorder/spool is allowed to import recorder/event, which now
		// reaches approvals: every recorder package that imports it breaks
		// the rule, with the chain named.
		{"recorder/event", "approvals/slack", false, "recorder/spool imports approvals/slack (recorder/spool → recorder/event → approvals/slack)"},
		// A broker test that wires the recorder, as the break-glass suite
		// did before it moved to cmd/custos/app/e2e.
		{"broker/breakglass", "recorder", true, "broker/breakglass test imports recorder"},
		// A test helper outside the trees does not launder an import.
		{"deploy/devstack", "protocols/postgres", false, "broker/store test imports protocols/postgres (broker/store → deploy/devstack → protocols/postgres)"},
		// The recorder's tests may use a real store.
		{"recorder", "broker/store/sqlite", true, ""},
	} {
		bad, _ := check(rules, known, add(tc.from, tc.to, tc.test))
		var got []string
		for _, v := range bad {
			if !before[v.String()] {
				got = append(got, v.String())
			}
		}
		found := tc.want == "" && len(got) == 0
		for _, g := range got {
			found = found || (tc.want != "" && strings.HasPrefix(g, tc.want))
		}
		if !found {
			t.Errorf("%s → %s: violations %q, want one starting %q", tc.from, tc.to, got, tc.want)
		}
	}
}
