package app_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// tests also checks the direct imports of the tree's tests.
	tests bool
	// testsMayImport are forbidden prefixes the tree's tests may still
	// import directly. Default: none.
	testsMayImport []string
	why            string
}

var rules = []rule{
	{tree: "broker", forbidden: []string{"protocols", "recorder", "approvals", "web", "cmd"}, tests: true,
		why: "the domain core knows no wire, recording, channel or HTTP; cmd/custos/app wires them to it"},
	{tree: "protocols", forbidden: []string{"approvals", "web", "cmd", "broker/creds/vault", "github.com/hashicorp/vault"}, tests: true,
		why: "a proxy declares the interfaces it needs (authorize, credentials, recording); cmd/custos/app passes the implementations"},
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
var known = []allowance{
	// approvals/slack mounts its interaction endpoint on web.Server; the
	// endpoint moves to cmd/custos/app (issue 13).
	{pkg: "approvals/slack", dep: "web"},
}

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
// the forbidden one; test marks a test's direct import.
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
			for _, v := range reach(graph, p, r) {
				if !allow(v) {
					bad = append(bad, v)
				}
			}
			if !r.tests {
				continue
			}
			n := graph[p]
			for _, imp := range slices.Concat(n.TestImports, n.XTestImports) {
				if imp == p || !forbiddenBy(r.forbidden, imp) || forbiddenBy(r.testsMayImport, imp) {
					continue
				}
				v := violation{pkg: p, dep: imp, chain: []string{p, imp}, test: true, why: r.why}
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

// reach walks the non-test imports of from breadth first and returns each
// forbidden package reached, with the shortest chain to it. The walk does
// not continue past a forbidden package.
func reach(graph map[string]pkg, from string, r rule) []violation {
	parent := map[string]string{from: ""}
	queue := []string{from}
	var out []violation
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, imp := range graph[cur].Imports {
			if _, seen := parent[imp]; seen {
				continue
			}
			parent[imp] = cur
			if forbiddenBy(r.forbidden, imp) {
				chain := []string{imp}
				for c := cur; c != ""; c = parent[c] {
					chain = append(chain, c)
				}
				slices.Reverse(chain)
				out = append(out, violation{pkg: from, dep: imp, chain: chain, why: r.why})
				continue
			}
			queue = append(queue, imp)
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
	if bad, _ := check(rules, known, graph); len(bad) > 0 {
		t.Skip("the module already breaks a rule; TestImportRules reports it")
	}
	add := func(from, to string) map[string]pkg {
		g := maps(graph)
		n := g[abs(from)]
		n.Imports = append(slices.Clone(n.Imports), abs(to))
		g[abs(from)] = n
		return g
	}
	for _, tc := range []struct{ from, to, want string }{
		{"broker/audit", "web", "broker/audit imports web"},
		{"protocols/ssh", "recorder/event", ""}, // allowed: nothing
		{"recorder/event", "broker/config", "recorder/event imports broker/config"},
		{"broker/policy", "recorder/event", "broker/policy imports recorder/event"},
		// recorder/spool is allowed to import recorder/event, which now
		// reaches approvals: every recorder package that imports it breaks
		// the rule, with the chain named.
		{"recorder/event", "approvals/slack", "recorder/spool imports approvals/slack (recorder/spool → recorder/event → approvals/slack)"},
	} {
		bad, _ := check(rules, known, add(tc.from, tc.to))
		var got []string
		for _, v := range bad {
			got = append(got, v.String())
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

func maps(g map[string]pkg) map[string]pkg {
	out := make(map[string]pkg, len(g))
	for k, v := range g {
		out[k] = v
	}
	return out
}

// TestCheck is the checker's own table: direct and transitive imports,
// prefix boundaries, test imports, exceptions for tests, known violations
// and stale ones.
func TestCheck(t *testing.T) {
	rs := []rule{
		{tree: "a", forbidden: []string{"b", "example.com/x"}, tests: true, testsMayImport: []string{"b/fixture"}, why: "w"},
		{tree: "c", forbidden: []string{"b"}, why: "w"},
	}
	g := func(nodes ...pkg) map[string]pkg {
		m := map[string]pkg{}
		for _, n := range nodes {
			n.ImportPath = abs(n.ImportPath)
			for _, l := range []*[]string{&n.Imports, &n.TestImports, &n.XTestImports} {
				for i, p := range *l {
					(*l)[i] = abs(p)
				}
			}
			m[n.ImportPath] = n
		}
		return m
	}
	tests := []struct {
		name  string
		graph map[string]pkg
		known []allowance
		want  []string
		stale int
	}{
		{"clean", g(pkg{ImportPath: "a/x", Imports: []string{"fmt", "c"}}, pkg{ImportPath: "c"}), nil, nil, 0},
		{"direct", g(pkg{ImportPath: "a/x", Imports: []string{"b/y"}}), nil, []string{"a/x imports b/y: w"}, 0},
		{"the tree's root", g(pkg{ImportPath: "a", Imports: []string{"b"}}), nil, []string{"a imports b: w"}, 0},
		{"transitive", g(pkg{ImportPath: "a/x", Imports: []string{"d"}}, pkg{ImportPath: "d", Imports: []string{"e"}},
			pkg{ImportPath: "e", Imports: []string{"example.com/x/v2"}}),
			nil, []string{"a/x imports example.com/x/v2 (a/x → d → e → example.com/x/v2): w"}, 0},
		{"prefix boundary", g(pkg{ImportPath: "a/x", Imports: []string{"bb", "example.com/xy"}}, pkg{ImportPath: "ab", Imports: []string{"b"}}), nil, nil, 0},
		{"test import", g(pkg{ImportPath: "a/x", TestImports: []string{"b/y"}, XTestImports: []string{"a/x", "b/fixture/z"}}),
			nil, []string{"a/x test imports b/y: w"}, 0},
		{"tests not checked", g(pkg{ImportPath: "c/x", XTestImports: []string{"b"}}), nil, nil, 0},
		{"known", g(pkg{ImportPath: "c/x", Imports: []string{"b/y"}}, pkg{ImportPath: "c/z", Imports: []string{"b/y"}}),
			[]allowance{{pkg: "c/x", dep: "b"}}, []string{"c/z imports b/y: w"}, 0},
		{"stale", g(pkg{ImportPath: "c/x"}), []allowance{{pkg: "c/x", dep: "b"}}, nil, 1},
	}
	for _, tc := range tests {
		bad, stale := check(rs, tc.known, tc.graph)
		var got []string
		for _, v := range bad {
			got = append(got, v.String())
		}
		if !slices.Equal(got, tc.want) || len(stale) != tc.stale {
			t.Errorf("%s: violations %q, stale %v; want %q, %d stale", tc.name, got, stale, tc.want, tc.stale)
		}
	}
}
